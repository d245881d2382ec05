package whatsappcalls

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// directory lists the provisioned whatsapp_calls handlers of the process,
// so that the control API (a separate handler, possibly in another site)
// finds their calls. A handler is added at the end of Provision and removed
// in Cleanup.
var directory = &handlerDirectory{}

type handlerDirectory struct {
	mu       sync.Mutex
	handlers []*Handler
}

func (d *handlerDirectory) add(h *Handler) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handlers = append(d.handlers, h)
}

func (d *handlerDirectory) remove(h *Handler) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handlers = slices.DeleteFunc(d.handlers, func(x *Handler) bool { return x == h })
}

// registries returns the distinct call registries of the handlers.
func (d *handlerDirectory) registries() []*registry {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*registry
	for _, h := range d.handlers {
		if h.calls != nil && !slices.Contains(out, h.calls) {
			out = append(out, h.calls)
		}
	}
	return out
}

// errNoHandler means no whatsapp_calls handler serves the number asked for.
var errNoHandler = errors.New("no whatsapp_calls handler serves this phone number")

// pick returns the registry and the current call config of the handler
// that serves phoneNumberID: the newest handler naming it in
// phone_number_ids, else one that serves any number. With no number given,
// the only handler's only number is meant, if there is exactly one.
func (d *handlerDirectory) pick(phoneNumberID string) (*registry, callConfig, error) {
	d.mu.Lock()
	handlers := slices.Clone(d.handlers)
	d.mu.Unlock()
	var any *Handler
	for _, h := range slices.Backward(handlers) {
		if h.calls == nil {
			continue
		}
		if phoneNumberID == "" {
			if any != nil && any.calls != h.calls {
				return nil, callConfig{}, fmt.Errorf("phone_number_id is required: several whatsapp_calls handlers are configured")
			}
			if any == nil {
				any = h
			}
			continue
		}
		if h.phoneNumbers == nil {
			if any == nil {
				any = h
			}
			continue
		}
		if _, ok := h.phoneNumbers[phoneNumberID]; ok {
			return h.calls, h.calls.config(), nil
		}
	}
	if any == nil {
		return nil, callConfig{}, errNoHandler
	}
	return any.calls, any.calls.config(), nil
}

// config returns the config new calls of r use.
func (r *registry) config() callConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg
}

// callView is one live call in the control API's list.
type callView struct {
	CallID        string     `json:"call_id"`
	Direction     string     `json:"direction"`
	State         string     `json:"state"`
	Started       time.Time  `json:"started"`
	Answered      *time.Time `json:"answered,omitempty"`
	PhoneNumberID string     `json:"phone_number_id"`
	Bot           string     `json:"bot"`
	TwilioCallSID string     `json:"twilio_call_sid"`
	// The user's number and ids, only when asked for (numbers=true).
	From      string `json:"from,omitempty"`
	To        string `json:"to,omitempty"`
	Recipient string `json:"recipient,omitempty"`
}

// list returns the live calls, oldest first; with numbers, also the
// users' numbers and ids.
func (r *registry) list(numbers bool) []callView {
	r.mu.Lock()
	calls := make([]*call, 0, len(r.live))
	for _, c := range r.live {
		calls = append(calls, c)
	}
	r.mu.Unlock()
	out := make([]callView, 0, len(calls))
	for _, c := range calls {
		v := callView{
			CallID:        c.ev.Call.ID,
			Direction:     c.direction,
			State:         c.stateName(),
			Started:       c.received.UTC(),
			PhoneNumberID: c.ev.PhoneNumberID,
			Bot:           c.botURL,
			TwilioCallSID: bot.TwilioCallSID(c.ev.Call.ID),
		}
		if ns := c.answeredAt.Load(); ns != 0 {
			t := time.Unix(0, ns).UTC()
			v.Answered = &t
		}
		if numbers {
			v.From, v.To, v.Recipient = c.ev.Call.From, c.ev.Call.To, c.ev.Call.ToUserID
			if c.direction == directionInbound && v.From == "" {
				v.From = c.ev.Call.FromUserID
			}
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b callView) int { return a.Started.Compare(b.Started) })
	return out
}

// hangupCall ends the live call id with cause and returns its view, or
// false if no such call is live.
func (r *registry) hangupCall(id string, cause error) (callView, bool) {
	r.mu.Lock()
	c := r.live[id]
	r.mu.Unlock()
	if c == nil {
		return callView{}, false
	}
	c.hangup(cause)
	return callView{
		CallID: id, Direction: c.direction, State: "ending", Started: c.received.UTC(),
		PhoneNumberID: c.ev.PhoneNumberID, Bot: c.botURL, TwilioCallSID: bot.TwilioCallSID(id),
	}, true
}

// findTwilio returns the id of the live call whose twilio-dialect ids are
// accountSID and callSID.
func (r *registry) findTwilio(accountSID, callSID string) (*call, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, c := range r.live {
		if bot.TwilioCallSID(id) == callSID && bot.TwilioAccountSID(c.ev.PhoneNumberID) == accountSID {
			return c, true
		}
	}
	return nil, false
}
