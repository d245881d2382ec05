package whatsapp

import (
	"encoding/json"
	"testing"
)

// FuzzParseWebhook checks that no body makes parsing panic, and that a
// parsed webhook can always be walked, summarised and marshalled.
func FuzzParseWebhook(f *testing.F) {
	for _, seed := range []string{
		connectPayload,
		terminatePayload,
		statusPayload,
		messagesPayload,
		multiPayload,
		usernamePayload,
		answerPayload,
		legacyAnswerPayload,
		terminateArrayPayload,
		`{"entry":[{"changes":[{"value":{"contacts":[{"user_id":"US.1"}],"calls":[{"from_user_id":"US.1","connection":{"webrtc":null}}]}}]}]}`,
		`{"entry":[{"changes":[{"field":"calls","value":{"calls":[{"id":"wacid.M","event":"connect"}]}}]}]}`,
		`{"entry":[{"changes":[{"value":{"calls":[{"status":["FAILED"],"timestamp":1e300,"duration":"-3","errors":[{"code":"7"}]}]}}]}]}`,
		`{}`,
		`null`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w, err := ParseWebhook(body)
		if err != nil {
			return
		}
		calls := 0
		for _, e := range w.Entry {
			for _, c := range e.Changes {
				calls += len(c.Value.Calls)
			}
		}
		events := w.CallEvents()
		if len(events) != calls {
			t.Fatalf("CallEvents() returned %d events for %d calls", len(events), calls)
		}
		for i := range events {
			ev := &events[i]
			if r := ev.Reason(); len(r) > maxReasonLen {
				t.Fatalf("Reason() is %d bytes; want at most %d", len(r), maxReasonLen)
			}
			for _, ei := range ev.Errors {
				_ = ei.Text()
			}
			_ = ev.Call.Timestamp.Time()
			_ = ev.Call.Duration.Duration()
			if ev.Call.Duration < 0 || ev.Call.Timestamp < 0 {
				t.Fatalf("negative duration %d or timestamp %d", ev.Call.Duration, ev.Call.Timestamp)
			}
		}
		if _, err := json.Marshal(w); err != nil {
			t.Fatalf("json.Marshal(parsed webhook) = %v; want nil", err)
		}
	})
}
