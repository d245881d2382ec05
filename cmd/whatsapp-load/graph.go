package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Graph API call actions, the "action" of POST /{version}/{phone}/calls.
// See https://developers.facebook.com/docs/whatsapp/cloud-api/calling/reference.
const (
	actionPreAccept = "pre_accept"
	actionAccept    = "accept"
	actionReject    = "reject"
	actionTerminate = "terminate"
)

// graphCall is what the fake Graph API saw of one call. Its channels hand
// the target's actions to the caller that waits for them.
type graphCall struct {
	preAccept chan string   // the answer SDP of the first pre_accept (size 1: one send, read once)
	accepted  chan struct{} // closed at the first accept
	ended     chan struct{} // closed at the first reject or terminate

	// Set under graph.mu, read after the matching channel operation.
	preAcceptAt, acceptAt time.Time
	endAction             string
	gotPreAccept          bool
}

// graph is a fake Graph API: it records the call actions of the target per
// call id and answers {"success":true}, as Meta does.
type graph struct {
	now func() time.Time

	mu      sync.Mutex
	calls   map[string]*graphCall
	actions map[string]int // counts by action, "unknown_call" for ids not expected
}

// newGraph returns an empty fake Graph API; now defaults to time.Now.
func newGraph(now func() time.Time) *graph {
	if now == nil {
		now = time.Now
	}
	return &graph{now: now, calls: map[string]*graphCall{}, actions: map[string]int{}}
}

// expect registers call id before its connect webhook is posted.
func (g *graph) expect(id string) *graphCall {
	c := &graphCall{preAccept: make(chan string, 1), accepted: make(chan struct{}), ended: make(chan struct{})}
	g.mu.Lock()
	g.calls[id] = c
	g.mu.Unlock()
	return c
}

// times returns when pre_accept and accept arrived for c (zero if not).
func (g *graph) times(c *graphCall) (preAccept, accept time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return c.preAcceptAt, c.acceptAt
}

// endAction returns the action that ended c ("reject" or "terminate").
func (g *graph) endAction(c *graphCall) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return c.endAction
}

// counts returns a copy of the action counts.
func (g *graph) counts() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.actions)
}

// graphRequest is the body of a call action.
type graphRequest struct {
	MessagingProduct string `json:"messaging_product"`
	CallID           string `json:"call_id"`
	Action           string `json:"action"`
	Session          *struct {
		SDPType string `json:"sdp_type"`
		SDP     string `json:"sdp"`
	} `json:"session"`
}

// graphError writes a Graph-shaped error.
func graphError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": msg, "type": "OAuthException", "code": 100, "fbtrace_id": "load",
	}})
	w.Write(body)
}

// ServeHTTP handles POST /{version}/{phone_number_id}/calls.
func (g *graph) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := g.now()
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method != http.MethodPost || len(parts) != 3 || parts[2] != "calls" {
		graphError(w, http.StatusNotFound, fmt.Sprintf("unsupported request %s %s", r.Method, r.URL.Path))
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		graphError(w, http.StatusUnauthorized, "missing bearer token")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		graphError(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	var req graphRequest
	if err := json.Unmarshal(body, &req); err != nil {
		graphError(w, http.StatusBadRequest, "bad json: "+err.Error())
		return
	}
	if req.MessagingProduct != "whatsapp" || req.CallID == "" {
		graphError(w, http.StatusBadRequest, "want messaging_product whatsapp and a call_id")
		return
	}
	var sdp string
	switch req.Action {
	case actionPreAccept, actionAccept:
		if req.Session == nil || req.Session.SDPType != "answer" || req.Session.SDP == "" {
			graphError(w, http.StatusBadRequest, req.Action+" needs session.sdp_type answer and an sdp")
			return
		}
		sdp = req.Session.SDP
	case actionReject, actionTerminate:
	default:
		graphError(w, http.StatusBadRequest, fmt.Sprintf("unknown action %q", req.Action))
		return
	}
	g.record(req.CallID, req.Action, sdp, at)
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"success":true}`)
}

// record notes one action and wakes the caller waiting for it.
func (g *graph) record(id, action, sdp string, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.actions[action]++
	c, ok := g.calls[id]
	if !ok {
		g.actions["unknown_call"]++
		return
	}
	switch action {
	case actionPreAccept:
		if !c.gotPreAccept {
			c.gotPreAccept, c.preAcceptAt = true, at
			c.preAccept <- sdp
		}
	case actionAccept:
		if c.acceptAt.IsZero() {
			c.acceptAt = at
			close(c.accepted)
		}
	case actionReject, actionTerminate:
		if c.endAction == "" {
			c.endAction = action
			close(c.ended)
		}
	}
}
