package whatsappcalls

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// directory lists the started whatsapp_calls handlers of the process, so
// that the control API (a separate handler, possibly in another site)
// finds their calls. A handler is added when the app starts it and
// removed when it stops.
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

// running returns the running state of the started handlers, newest
// last.
func (d *handlerDirectory) running() []handlerRun {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]handlerRun, 0, len(d.handlers))
	for _, h := range d.handlers {
		if rt := h.holds.running.Load(); rt != nil {
			out = append(out, handlerRun{h: h, rt: rt})
		}
	}
	return out
}

// handlerRun is a started handler and what it runs calls with.
type handlerRun struct {
	h  *Handler
	rt *running
}

// registries returns the distinct call registries of the handlers.
func (d *handlerDirectory) registries() []*registry {
	var out []*registry
	for _, hr := range d.running() {
		if !slices.Contains(out, hr.rt.calls) {
			out = append(out, hr.rt.calls)
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
	var any *handlerRun
	runs := d.running()
	for i := range slices.Backward(runs) {
		hr := &runs[i]
		if phoneNumberID == "" {
			if any != nil && any.rt.calls != hr.rt.calls {
				return nil, callConfig{}, fmt.Errorf("phone_number_id is required: several whatsapp_calls handlers are configured")
			}
			if any == nil {
				any = hr
			}
			continue
		}
		if hr.h.phoneNumbers == nil {
			if any == nil {
				any = hr
			}
			continue
		}
		if _, ok := hr.h.phoneNumbers[phoneNumberID]; ok {
			return hr.rt.calls, hr.rt.cfg, nil
		}
	}
	if any == nil {
		return nil, callConfig{}, errNoHandler
	}
	return any.rt.calls, any.rt.cfg, nil
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
	// Node is the cluster node that holds the call; only with cluster.
	Node string `json:"node,omitempty"`
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
