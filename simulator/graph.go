package simulator

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"go.uber.org/zap"
)

// maxGraphBody caps a Graph API request body.
const maxGraphBody = 1 << 20

// graphRequest is the body of POST /{version}/{phone_number_id}/calls. See
// https://developers.facebook.com/docs/whatsapp/cloud-api/calling/reference
// and PROTOCOLS.md.
type graphRequest struct {
	MessagingProduct string          `json:"messaging_product"`
	CallID           string          `json:"call_id"`
	Action           string          `json:"action"`
	To               string          `json:"to"`
	Recipient        string          `json:"recipient"`
	Session          *webhookSession `json:"session"`
	BizOpaque        string          `json:"biz_opaque_callback_data"`
}

// graphError is a Graph API error, answered as {"error":{...}}.
type graphError struct {
	status  int
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    int    `json:"code"`
	TraceID string `json:"fbtrace_id"`
}

func (e *graphError) Error() string { return e.Message }

func invalidParam(format string, args ...any) *graphError {
	return &graphError{
		status:  http.StatusBadRequest,
		Message: "(#100) " + fmt.Sprintf(format, args...),
		Type:    "OAuthException",
		Code:    100,
	}
}

// serveGraph fakes POST {graph_url}/{version}/{phone_number_id}/calls.
func (s *Simulator) serveGraph(w http.ResponseWriter, r *http.Request) {
	req, gerr := s.parseGraph(r)
	if gerr == nil && req.Action == "connect" {
		var id string
		if id, gerr = s.connect(req); gerr == nil {
			writeJSON(w, http.StatusOK, map[string]any{"messaging_product": "whatsapp", "calls": []map[string]string{{"id": id}}})
			return
		}
	}
	if gerr == nil {
		gerr = s.applyGraph(req)
	}
	if gerr != nil {
		s.logger.Warn("graph request refused",
			zap.String("call_id", req.CallID),
			zap.String("action", req.Action),
			zap.String("error", gerr.Message))
		gerr.TraceID = newTraceID()
		w.Header().Set("Content-Type", "application/json")
		if gerr.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `OAuth "Facebook Platform" "invalid_token" "`+gerr.Message+`"`)
		}
		w.WriteHeader(gerr.status)
		_ = json.NewEncoder(w).Encode(map[string]*graphError{"error": gerr})
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"success": true})
}

// parseGraph authenticates and decodes a Graph API request.
func (s *Simulator) parseGraph(r *http.Request) (graphRequest, *graphError) {
	var req graphRequest
	if gerr := s.checkGraphAuth(r); gerr != nil {
		return req, gerr
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return req, invalidParam("Content-Type must be application/json")
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxGraphBody))
	if err := dec.Decode(&req); err != nil {
		return req, invalidParam("Invalid JSON body: %v", err)
	}
	return req, s.checkCallAction(&req)
}

// checkGraphAuth checks the bearer token, the phone number id and the
// version of a Graph API request.
func (s *Simulator) checkGraphAuth(r *http.Request) *graphError {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(token), []byte(s.AccessToken)) != 1 {
		return &graphError{
			status:  http.StatusUnauthorized,
			Message: "Invalid OAuth access token - Cannot parse access token",
			Type:    "OAuthException",
			Code:    190,
		}
	}
	if id := r.PathValue("phone_number_id"); id != s.PhoneNumberID {
		return &graphError{
			status:  http.StatusBadRequest,
			Message: fmt.Sprintf("Unsupported post request. Object with ID '%s' does not exist, cannot be loaded due to missing permissions, or does not support this operation", id),
			Type:    "GraphMethodException",
			Code:    100,
		}
	}
	if !validGraphVersion(r.PathValue("version")) {
		return &graphError{
			status:  http.StatusBadRequest,
			Message: fmt.Sprintf("Unknown path components: /%s", r.PathValue("version")),
			Type:    "OAuthException",
			Code:    2500,
		}
	}
	return nil
}

// checkCallAction checks the body of a call action as Meta does.
func (s *Simulator) checkCallAction(req *graphRequest) *graphError {
	if req.MessagingProduct != "whatsapp" {
		return invalidParam("The parameter messaging_product is required and must be whatsapp")
	}
	switch req.Action {
	case "pre_accept", "accept":
		if req.Session == nil {
			return invalidParam("The parameter session is required for %s", req.Action)
		}
		if req.Session.SDPType != "answer" {
			return invalidParam("Invalid parameter session.sdp_type %q: must be answer", req.Session.SDPType)
		}
		if err := checkAnswer(req.Session.SDP); err != nil {
			return invalidParam("Invalid parameter session.sdp: %v", err)
		}
	case "reject", "terminate":
	case "connect":
		if req.Session == nil || req.Session.SDPType != "offer" {
			return invalidParam("The parameter session with sdp_type offer is required for connect")
		}
		if err := checkOffer(req.Session.SDP); err != nil {
			return invalidParam("Invalid parameter session.sdp: %v", err)
		}
		if (req.To == "") == (req.Recipient == "") {
			return invalidParam("Exactly one of the parameters to and recipient is required")
		}
		return nil
	case "":
		return invalidParam("The parameter action is required")
	default:
		return invalidParam("Invalid parameter action %q", req.Action)
	}
	if req.CallID == "" {
		return invalidParam("The parameter call_id is required")
	}
	return nil
}

// validGraphVersion accepts versions such as v23.0.
func validGraphVersion(v string) bool {
	major, minor, ok := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	return ok && strings.HasPrefix(v, "v") && isDigits(major) && isDigits(minor)
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// checkAnswer applies what Meta needs of an answer: an audio section, a
// sha-256 fingerprint, the DTLS client role and candidates inline (the
// Graph API takes no trickled candidates).
func checkAnswer(sdp string) error { return checkSDP(sdp, "active") }

// checkSDP applies what Meta needs of an offer or an answer: an audio
// section, a sha-256 fingerprint, the DTLS role setup (a=setup:<setup>) and
// every candidate inline.
func checkSDP(sdp, setup string) error {
	switch {
	case !strings.HasPrefix(sdp, "v=0"):
		return fmt.Errorf("not an SDP")
	case !strings.Contains(sdp, "m=audio"):
		return fmt.Errorf("no audio section")
	case !strings.Contains(sdp, "a=fingerprint:sha-256"):
		return fmt.Errorf("no sha-256 fingerprint")
	case !strings.Contains(sdp, "a=setup:"+setup):
		return fmt.Errorf("DTLS role must be %s (a=setup:%s)", setup, setup)
	case !strings.Contains(sdp, "a=candidate:"):
		return fmt.Errorf("no ICE candidates (candidates cannot be trickled)")
	}
	return nil
}

// applyGraph applies an action to its call and records it.
func (s *Simulator) applyGraph(req graphRequest) *graphError {
	c, err := s.lookup(req.CallID)
	if err != nil {
		return invalidParam("Invalid parameter call_id: %v", err)
	}
	now := s.now()
	c.mu.Lock()
	gerr := s.transition(c, req)
	act := GraphAction{Action: req.Action, At: now, Status: http.StatusOK}
	if gerr != nil {
		act.Status, act.Error = gerr.status, gerr.Message
	}
	c.actions = append(c.actions, act)
	final := gerr == nil && isFinal(c.state)
	started, ended := c.accepted, c.ended
	c.mu.Unlock()
	if !final {
		return gerr
	}
	s.finish(c)
	status := terminateCompleted
	if req.Action == "reject" {
		status = terminateRejected
	}
	s.logger.Info("business ended call", zap.String("call_id", c.id), zap.String("action", req.Action))
	s.sendTerminateAsync(c, status, started, ended)
	return nil
}

// transition changes the call's state for an action; the caller holds c.mu.
func (s *Simulator) transition(c *call, req graphRequest) *graphError {
	now := s.now()
	if isFinal(c.state) {
		return invalidParam("Call %s is not active (%s)", c.id, c.state)
	}
	switch req.Action {
	case "pre_accept":
		if c.state != StateRinging {
			return invalidParam("pre_accept is only valid while the call rings (state %s)", c.state)
		}
		c.answer = req.Session.SDP
		c.emit(now, StatePreAccepted, "", "", c.answer)
	case "accept":
		if c.state == StateAccepted {
			return invalidParam("Call %s is already accepted", c.id)
		}
		sdp := ""
		if c.answer == "" {
			c.answer = req.Session.SDP
			sdp = c.answer
		} else if c.answer != req.Session.SDP {
			return invalidParam("The accept SDP differs from the pre_accept SDP")
		}
		c.accepted = now
		c.emit(now, StateAccepted, "", "", sdp)
	case "reject":
		if c.state == StateAccepted {
			return invalidParam("Call %s is already accepted: use terminate", c.id)
		}
		c.ended = now
		c.emit(now, StateRejected, ReasonBusinessRejected, byBusiness, "")
	case "terminate":
		c.ended = now
		c.emit(now, StateEnded, ReasonBusinessTerminated, byBusiness, "")
	}
	return nil
}

func newTraceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "A" + hex.EncodeToString(b[:])
}
