package whatsapp

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// connectPayload is a user-initiated connect webhook shaped like Meta's.
const connectPayload = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"calls","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"15550001111","phone_number_id":"106540352242922"},
  "contacts":[{"profile":{"name":"Jane"},"wa_id":"15551234567"}],
  "calls":[{"id":"wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QTdF","from":"15551234567","to":"15550001111","event":"connect",
            "timestamp":"1749196895","direction":"USER_INITIATED",
            "session":{"sdp_type":"offer","sdp":"v=0\r\no=- 4611 2 IN IP4 157.240.0.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE 0\r\nm=audio 3480 UDP/TLS/RTP/SAVPF 111 126\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\na=rtpmap:126 telephone-event/8000\r\na=setup:actpass\r\na=fingerprint:sha-256 AA:BB\r\n"}}]}}]}]}`

// terminatePayload is a terminate webhook with value-level and call-level
// errors, as Meta sends when media stopped.
const terminatePayload = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"calls","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"15550001111","phone_number_id":"106540352242922"},
  "calls":[{"id":"wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QTdF","from":"15551234567","to":"15550001111","event":"terminate",
            "timestamp":"1749196920","direction":"USER_INITIATED","status":"Completed",
            "start_time":"1749196896","end_time":1749196920,"duration":"24",
            "errors":[{"code":131000,"message":"Something went wrong","href":"https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/","error_data":{"details":"media timeout"}}]}],
  "errors":[{"code":138021,"title":"No media for a long time."}]}}]}]}`

// statusPayload reports the progress of a business-initiated call.
const statusPayload = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"calls","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"15550001111","phone_number_id":"106540352242922"},
  "statuses":[{"id":"wacid.OUT1","type":"call","status":"RINGING","timestamp":"1749197000","recipient_id":"15551234567"},
              {"id":"wacid.OUT1","type":"call","status":"REJECTED","timestamp":1749197005,"recipient_id":"15551234567",
               "errors":[{"code":138002,"title":"User rejected"}]}]}}]}]}`

// messagesPayload is a text message delivered to the same callback URL.
const messagesPayload = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"15550001111","phone_number_id":"106540352242922"},
  "contacts":[{"profile":{"name":"Jane"},"wa_id":"15551234567"}],
  "messages":[{"from":"15551234567","id":"wamid.HBgL","timestamp":"1749196000","text":{"body":"hi"},"type":"text"}]}}]}]}`

// multiPayload holds two entries, several changes and several calls,
// including a call in a change whose field is not "calls" and unknown
// fields at every level.
const multiPayload = `{"object":"whatsapp_business_account","x_unknown":{"a":[1,2]},"entry":[
  {"id":"WABA1","time":1749196895,"changes":[
    {"field":"calls","value":{"metadata":{"phone_number_id":"P1","display_phone_number":"111"},
      "contacts":[{"profile":{"name":"Ann"},"wa_id":"100"},{"profile":{"name":"Bob"},"wa_id":"200"}],
      "calls":[{"id":"wacid.A","from":"200","to":"111","event":"connect","direction":"USER_INITIATED","future_field":true},
               {"id":"wacid.B","from":"300","to":"111","event":"CONNECT","direction":"USER_INITIATED"}]}},
    {"field":"messages","value":{"messages":[{"id":"wamid.X"}]}}]},
  {"id":"WABA2","changes":[
    {"field":"call_events_v2","value":{"metadata":{"phone_number_id":"P2"},
      "calls":[{"id":"wacid.C","from":"222","to":"15551234567","event":"terminate","direction":"BUSINESS_INITIATED","status":["FAILED"],"duration":7.9}]}},
    {"field":"calls","value":{"metadata":{"phone_number_id":"P3"},"contacts":[{"profile":{"name":"Cy"},"wa_id":"15551234567"}],
      "calls":[{"id":"wacid.D","from":"333","to":"15551234567","event":"terminate","direction":"BUSINESS_INITIATED","status":"REJECTED","timestamp":1749196999}]}}]}]}`

// usernamePayload is a user-initiated connect from a user who has a
// username and shares no phone number (PROTOCOLS.md "Users without phone
// numbers"): no from or wa_id, business-scoped user ids instead, and the
// payload of the call button the user tapped.
const usernamePayload = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"calls","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"15550001111","phone_number_id":"106540352242922"},
  "contacts":[{"profile":{"name":"Other"},"user_id":"US.999"},
              {"profile":{"name":"Jane","username":"jane.doe"},"user_id":"US.13491208655302741918","parent_user_id":"US.ENT.11815799212886844830"}],
  "calls":[{"id":"wacid.NOPHONE","from_user_id":"US.13491208655302741918","from_parent_user_id":"US.ENT.11815799212886844830",
            "to":"15550001111","event":"connect","timestamp":"1749196895","direction":"USER_INITIATED",
            "deeplink_payload":"spring-sale","cta_payload":"btn-42",
            "session":{"sdp_type":"offer","sdp":"v=0\r\n"}}]}}]}]}`

// answerPayload is the connect webhook that carries the user's SDP answer
// to a business-initiated call.
const answerPayload = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"calls","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"15550001111","phone_number_id":"106540352242922"},
  "calls":[{"id":"wacid.OUT1","to":"15551234567","from":"15550001111","event":"connect","timestamp":"1749197001",
            "direction":"BUSINESS_INITIATED","session":{"sdp_type":"answer","sdp":"v=0\r\n"}}]}}]}]}`

// legacyAnswerPayload is an older connect webhook of a business-initiated
// call, with the answer in connection.webrtc.sdp and no direction.
const legacyAnswerPayload = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"calls","value":{
  "metadata":{"phone_number_id":"106540352242922"},
  "calls":[{"id":"wacid.OUT2","to":"15551234567","event":"connect","timestamp":"1749197001",
            "connection":{"webrtc":{"sdp":"v=0\r\n"}}}]}}]}]}`

// terminateArrayPayload is a terminate whose status is a list, with an
// error that has no href and the business's callback data echoed back.
const terminateArrayPayload = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"calls","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"15550001111","phone_number_id":"106540352242922"},
  "calls":[{"id":"wacid.NOPHONE","from_user_id":"US.13491208655302741918","to":"15550001111","event":"terminate",
            "timestamp":"1749196920","direction":"USER_INITIATED","status":["FAILED"],
            "biz_opaque_callback_data":"crm=77"}],
  "errors":[{"code":138021,"message":"No media for a long time.","error_data":{"details":"no media"}}]}}]}]}`

const connectSDP = "v=0\r\no=- 4611 2 IN IP4 157.240.0.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE 0\r\n" +
	"m=audio 3480 UDP/TLS/RTP/SAVPF 111 126\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n" +
	"a=rtpmap:126 telephone-event/8000\r\na=setup:actpass\r\na=fingerprint:sha-256 AA:BB\r\n"

func TestCallEvents(t *testing.T) {
	tests := []struct {
		name string
		give string
		want []CallEvent
	}{
		{
			name: "connect",
			give: connectPayload,
			want: []CallEvent{{
				PhoneNumberID:      "106540352242922",
				DisplayPhoneNumber: "15550001111",
				CallerName:         "Jane",
				Contact:            Contact{Profile: Profile{Name: "Jane"}, WaID: "15551234567"},
				Call: Call{
					ID: "wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QTdF", From: "15551234567", To: "15550001111",
					Event: EventConnect, Direction: DirectionUserInitiated, Timestamp: 1749196895,
					Session: &Session{SDPType: "offer", SDP: connectSDP},
				},
			}},
		},
		{
			name: "terminate with value-level and call-level errors",
			give: terminatePayload,
			want: []CallEvent{{
				PhoneNumberID:      "106540352242922",
				DisplayPhoneNumber: "15550001111",
				Call: Call{
					ID: "wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QTdF", From: "15551234567", To: "15550001111",
					Event: EventTerminate, Direction: DirectionUserInitiated, Status: "Completed",
					Timestamp: 1749196920, StartTime: 1749196896, EndTime: 1749196920, Duration: 24,
					Errors: []ErrorInfo{{
						Code: 131000, Message: "Something went wrong",
						Href:      "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
						ErrorData: json.RawMessage(`{"details":"media timeout"}`),
					}},
				},
				Errors: []ErrorInfo{
					{Code: 138021, Title: "No media for a long time."},
					{
						Code: 131000, Message: "Something went wrong",
						Href:      "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
						ErrorData: json.RawMessage(`{"details":"media timeout"}`),
					},
				},
			}},
		},
		{
			name: "multiple entries, changes and calls",
			give: multiPayload,
			want: []CallEvent{
				{
					PhoneNumberID: "P1", DisplayPhoneNumber: "111", CallerName: "Bob",
					Contact: Contact{Profile: Profile{Name: "Bob"}, WaID: "200"},
					Call:    Call{ID: "wacid.A", From: "200", To: "111", Event: "connect", Direction: DirectionUserInitiated},
				},
				{
					PhoneNumberID: "P1", DisplayPhoneNumber: "111", CallerName: "Ann",
					Contact: Contact{Profile: Profile{Name: "Ann"}, WaID: "100"},
					Call:    Call{ID: "wacid.B", From: "300", To: "111", Event: "CONNECT", Direction: DirectionUserInitiated},
				},
				{
					PhoneNumberID: "P2",
					Call: Call{ID: "wacid.C", From: "222", To: "15551234567", Event: "terminate",
						Direction: DirectionBusinessInitiated, Status: "FAILED", Duration: 7},
				},
				{
					PhoneNumberID: "P3", CallerName: "Cy",
					Contact: Contact{Profile: Profile{Name: "Cy"}, WaID: "15551234567"},
					Call: Call{ID: "wacid.D", From: "333", To: "15551234567", Event: "terminate",
						Direction: DirectionBusinessInitiated, Status: "REJECTED", Timestamp: 1749196999},
				},
			},
		},
		{
			name: "caller without a phone number",
			give: usernamePayload,
			want: []CallEvent{{
				PhoneNumberID:      "106540352242922",
				DisplayPhoneNumber: "15550001111",
				CallerName:         "Jane",
				Contact: Contact{Profile: Profile{Name: "Jane", Username: "jane.doe"},
					UserID: "US.13491208655302741918", ParentUserID: "US.ENT.11815799212886844830"},
				Call: Call{
					ID: "wacid.NOPHONE", FromUserID: "US.13491208655302741918", FromParentUserID: "US.ENT.11815799212886844830",
					To: "15550001111", Event: EventConnect, Direction: DirectionUserInitiated, Timestamp: 1749196895,
					DeeplinkPayload: "spring-sale", CTAPayload: "btn-42",
					Session: &Session{SDPType: "offer", SDP: "v=0\r\n"},
				},
			}},
		},
		{
			name: "answer to a business-initiated call",
			give: answerPayload,
			want: []CallEvent{{
				PhoneNumberID: "106540352242922", DisplayPhoneNumber: "15550001111",
				Call: Call{ID: "wacid.OUT1", From: "15550001111", To: "15551234567", Event: EventConnect,
					Direction: DirectionBusinessInitiated, Timestamp: 1749197001,
					Session: &Session{SDPType: "answer", SDP: "v=0\r\n"}},
			}},
		},
		{
			name: "older answer in connection.webrtc",
			give: legacyAnswerPayload,
			want: []CallEvent{{
				PhoneNumberID: "106540352242922",
				Call: Call{ID: "wacid.OUT2", To: "15551234567", Event: EventConnect, Timestamp: 1749197001,
					Connection: &Connection{WebRTC: &WebRTC{SDP: "v=0\r\n"}}},
			}},
		},
		{
			name: "terminate with a status list and an error without href",
			give: terminateArrayPayload,
			want: []CallEvent{{
				PhoneNumberID: "106540352242922", DisplayPhoneNumber: "15550001111",
				Call: Call{ID: "wacid.NOPHONE", FromUserID: "US.13491208655302741918", To: "15550001111",
					Event: EventTerminate, Direction: DirectionUserInitiated, Status: "FAILED", Timestamp: 1749196920,
					BizOpaqueCallbackData: "crm=77"},
				Errors: []ErrorInfo{{Code: 138021, Message: "No media for a long time.", ErrorData: json.RawMessage(`{"details":"no media"}`)}},
			}},
		},
		{name: "statuses only", give: statusPayload},
		{name: "messages field", give: messagesPayload},
		{name: "empty object", give: `{}`},
		{name: "null", give: `null`},
		{name: "empty entry and changes", give: `{"entry":[{"changes":[]},{}]}`},
		{
			name: "missing contacts, metadata and session",
			give: `{"entry":[{"changes":[{"field":"calls","value":{"calls":[{"id":"wacid.M","event":"connect"}]}}]}]}`,
			want: []CallEvent{{Call: Call{ID: "wacid.M", Event: "connect"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := ParseWebhook([]byte(tt.give))
			if err != nil {
				t.Fatalf("ParseWebhook() = %v; want nil", err)
			}
			got := w.CallEvents()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("CallEvents() =\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestCallEventsNilWebhook(t *testing.T) {
	var w *Webhook
	if got := w.CallEvents(); got != nil {
		t.Errorf("(*Webhook)(nil).CallEvents() = %v; want nil", got)
	}
}

func TestParseWebhookStatuses(t *testing.T) {
	w, err := ParseWebhook([]byte(statusPayload))
	if err != nil {
		t.Fatalf("ParseWebhook() = %v; want nil", err)
	}
	want := []Status{
		{ID: "wacid.OUT1", Type: "call", Status: "RINGING", RecipientID: "15551234567", Timestamp: 1749197000},
		{ID: "wacid.OUT1", Type: "call", Status: "REJECTED", RecipientID: "15551234567", Timestamp: 1749197005,
			Errors: []ErrorInfo{{Code: 138002, Title: "User rejected"}}},
	}
	if got := w.Entry[0].Changes[0].Value.Statuses; !reflect.DeepEqual(got, want) {
		t.Errorf("Statuses = %#v; want %#v", got, want)
	}
}

func TestCallStatuses(t *testing.T) {
	w, err := ParseWebhook([]byte(statusPayload))
	if err != nil {
		t.Fatalf("ParseWebhook() = %v; want nil", err)
	}
	if got := w.CallStatuses(); len(got) != 2 || got[0].Status != "RINGING" || got[1].Status != "REJECTED" {
		t.Errorf("CallStatuses() = %+v; want RINGING then REJECTED", got)
	}
	msg, err := ParseWebhook([]byte(`{"entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"wamid.X","status":"read"}]}}]}]}`))
	if err != nil {
		t.Fatalf("ParseWebhook() = %v; want nil", err)
	}
	if got := msg.CallStatuses(); len(got) != 0 {
		t.Errorf("CallStatuses() of a message status = %+v; want none", got)
	}
}

func TestParseWebhookMessagesField(t *testing.T) {
	w, err := ParseWebhook([]byte(messagesPayload))
	if err != nil {
		t.Fatalf("ParseWebhook() = %v; want nil", err)
	}
	if got := w.Entry[0].Changes[0].Field; got != "messages" {
		t.Errorf("Field = %q; want %q", got, "messages")
	}
	if got := w.Entry[0].Changes[0].Value.Metadata.PhoneNumberID; got != "106540352242922" {
		t.Errorf("PhoneNumberID = %q; want %q", got, "106540352242922")
	}
}

func TestParseWebhookMalformed(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{name: "empty", give: ""},
		{name: "truncated", give: connectPayload[:len(connectPayload)/2]},
		{name: "array", give: `[]`},
		{name: "string", give: `"whatsapp"`},
		{name: "trailing garbage", give: `{} {}`},
		{name: "entry not a list", give: `{"entry":{}}`},
		{name: "calls not a list", give: `{"entry":[{"changes":[{"value":{"calls":{"id":"x"}}}]}]}`},
		{name: "call id not a string", give: `{"entry":[{"changes":[{"value":{"calls":[{"id":5}]}}]}]}`},
		{name: "error not an object", give: `{"entry":[{"changes":[{"value":{"errors":["oops"]}}]}]}`},
		{name: "invalid json in a call", give: `{"entry":[{"changes":[{"value":{"calls":[{"id":}]}}]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := ParseWebhook([]byte(tt.give))
			if !errors.Is(err, ErrMalformedWebhook) || w != nil {
				t.Errorf("ParseWebhook(%q) = %v, %v; want nil, ErrMalformedWebhook", tt.give, w, err)
			}
		})
	}
}

func TestTimeAndSecondsDecoding(t *testing.T) {
	tests := []struct {
		name         string
		give         string // JSON value of both timestamp and duration
		wantTime     Time
		wantDuration Seconds
	}{
		{name: "string", give: `"1749196895"`, wantTime: 1749196895, wantDuration: 1749196895},
		{name: "number", give: `1749196895`, wantTime: 1749196895, wantDuration: 1749196895},
		{name: "string with spaces", give: `" 24 "`, wantTime: 24, wantDuration: 24},
		{name: "float", give: `24.9`, wantTime: 24, wantDuration: 24},
		{name: "exponent", give: `1.749196895e9`, wantTime: 1749196895, wantDuration: 1749196895},
		{name: "rfc3339", give: `"2025-06-06T08:01:35Z"`, wantTime: 1749196895},
		{name: "empty string", give: `""`},
		{name: "null", give: `null`},
		{name: "garbage string", give: `"soon"`},
		{name: "object", give: `{"s":1}`},
		{name: "bool", give: `true`},
		{name: "negative", give: `-5`},
		{name: "overflow", give: `1e300`},
		{name: "huge integer", give: `"99999999999999999999"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Call
			give := `{"timestamp":` + tt.give + `,"duration":` + tt.give + `}`
			if err := json.Unmarshal([]byte(give), &c); err != nil {
				t.Fatalf("Unmarshal(%s) = %v; want nil", give, err)
			}
			if c.Timestamp != tt.wantTime || c.Duration != tt.wantDuration {
				t.Errorf("Unmarshal(%s) = timestamp %d, duration %d; want %d, %d",
					give, c.Timestamp, c.Duration, tt.wantTime, tt.wantDuration)
			}
		})
	}
}

func TestTimeMethods(t *testing.T) {
	if got := Time(0).Time(); !got.IsZero() {
		t.Errorf("Time(0).Time() = %v; want zero", got)
	}
	want := time.Date(2025, 6, 6, 8, 1, 35, 0, time.UTC)
	if got := Time(1749196895).Time(); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("Time(1749196895).Time() = %v; want %v", got, want)
	}
	if got := Seconds(24).Duration(); got != 24*time.Second {
		t.Errorf("Seconds(24).Duration() = %v; want 24s", got)
	}
	if got, _ := json.Marshal(Time(1749196895)); string(got) != `"1749196895"` {
		t.Errorf("json.Marshal(Time) = %s; want %q", got, `"1749196895"`)
	}
}

func TestStatusDecoding(t *testing.T) {
	tests := []struct {
		give string
		want string
	}{
		{`"COMPLETED"`, "COMPLETED"},
		{`"Completed"`, "Completed"},
		{`"failed"`, "failed"},
		{`["REJECTED"]`, "REJECTED"},
		{`["FAILED","COMPLETED"]`, "FAILED,COMPLETED"},
		{`[1,"FAILED"]`, "FAILED"},
		{`200`, "200"},
		{`null`, ""},
		{`{}`, ""},
		{`false`, ""},
	}
	for _, tt := range tests {
		var c Call
		var s Status
		give := `{"id":"wacid.X","status":` + tt.give + `}`
		if err := json.Unmarshal([]byte(give), &c); err != nil || c.Status != tt.want || c.ID != "wacid.X" {
			t.Errorf("Unmarshal(%s) into Call = %+v, %v; want status %q", give, c, err, tt.want)
		}
		if err := json.Unmarshal([]byte(give), &s); err != nil || s.Status != tt.want || s.ID != "wacid.X" {
			t.Errorf("Unmarshal(%s) into Status = %+v, %v; want status %q", give, s, err, tt.want)
		}
	}
}

func TestErrorInfoDecoding(t *testing.T) {
	tests := []struct {
		give string
		want ErrorInfo
	}{
		{`{"code":138021,"title":"No media for a long time."}`, ErrorInfo{Code: 138021, Title: "No media for a long time."}},
		{`{"code":"138021"}`, ErrorInfo{Code: 138021}},
		{`{"code":null,"message":"m"}`, ErrorInfo{Message: "m"}},
		{`{"code":"x","href":"h"}`, ErrorInfo{Href: "h"}},
		{`{"error_data":{"details":"d"}}`, ErrorInfo{ErrorData: json.RawMessage(`{"details":"d"}`)}},
		{`{}`, ErrorInfo{}},
	}
	for _, tt := range tests {
		var got ErrorInfo
		if err := json.Unmarshal([]byte(tt.give), &got); err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Unmarshal(%s) = %#v, %v; want %#v", tt.give, got, err, tt.want)
		}
	}
}

func TestErrorInfoText(t *testing.T) {
	tests := []struct {
		give ErrorInfo
		want string
	}{
		{ErrorInfo{Message: "m", Title: "t"}, "m"},
		{ErrorInfo{Title: "t"}, "t"},
		{ErrorInfo{ErrorData: json.RawMessage(`{"details":"d"}`)}, "d"},
		{ErrorInfo{ErrorData: json.RawMessage(`[1]`)}, ""},
		{ErrorInfo{Code: 1}, ""},
	}
	for _, tt := range tests {
		if got := tt.give.Text(); got != tt.want {
			t.Errorf("%#v.Text() = %q; want %q", tt.give, got, tt.want)
		}
	}
}

func TestCallEventReason(t *testing.T) {
	tests := []struct {
		name string
		give []ErrorInfo
		want string
	}{
		{name: "none", want: ""},
		{name: "title", give: []ErrorInfo{{Code: 138021, Title: "No media for a long time."}}, want: "138021 No media for a long time."},
		{
			name: "several, duplicates dropped",
			give: []ErrorInfo{{Code: 138021, Title: "No media"}, {Code: 131000, Message: "Oops"}, {Code: 138021, Title: "No media"}},
			want: "138021 No media; 131000 Oops",
		},
		{name: "code only", give: []ErrorInfo{{Code: 5}}, want: "code 5"},
		{name: "text only, multi-line", give: []ErrorInfo{{Message: "line one\nline\ttwo\x00"}}, want: "line one line two"},
		{name: "empty errors skipped", give: []ErrorInfo{{}, {Href: "h"}}, want: ""},
		{
			name: "capped",
			give: []ErrorInfo{{Code: 1, Message: strings.Repeat("a", 400)}, {Code: 2, Message: strings.Repeat("b", 400)}},
			want: "1 " + strings.Repeat("a", 400) + "; 2 " + strings.Repeat("b", 512-len("1 ")-400-len("; 2 ")-3) + "...",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := CallEvent{Errors: tt.give}
			if got := ev.Reason(); got != tt.want {
				t.Errorf("Reason() = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestCallEventKind(t *testing.T) {
	tests := []struct {
		event                 string
		wantConnect, wantTerm bool
	}{
		{"connect", true, false},
		{"Connect", true, false},
		{"TERMINATE", false, true},
		{"terminate", false, true},
		{"", false, false},
		{"ringing", false, false},
	}
	for _, tt := range tests {
		c := Call{Event: tt.event}
		if c.IsConnect() != tt.wantConnect || c.IsTerminate() != tt.wantTerm {
			t.Errorf("Call{Event: %q}: IsConnect() = %v, IsTerminate() = %v; want %v, %v",
				tt.event, c.IsConnect(), c.IsTerminate(), tt.wantConnect, tt.wantTerm)
		}
	}
}

func TestCallIsAnswer(t *testing.T) {
	tests := []struct {
		name string
		give Call
		want bool
	}{
		{"user-initiated offer", Call{Direction: DirectionUserInitiated, Session: &Session{SDPType: "offer"}}, false},
		{"offer without direction", Call{Session: &Session{SDPType: "offer"}}, false},
		{"no session at all", Call{}, false},
		{"business-initiated answer", Call{Direction: DirectionBusinessInitiated, Session: &Session{SDPType: "answer"}}, true},
		{"business-initiated, lower case", Call{Direction: "business_initiated"}, true},
		{"answer without direction", Call{Session: &Session{SDPType: "ANSWER"}}, true},
		{"older connection.webrtc", Call{Connection: &Connection{WebRTC: &WebRTC{SDP: "v=0"}}}, true},
		{"session beside an empty connection", Call{Session: &Session{SDPType: "offer"}, Connection: &Connection{}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.give.IsAnswer(); got != tt.want {
				t.Errorf("%+v.IsAnswer() = %v; want %v", tt.give, got, tt.want)
			}
		})
	}
}

// TestWebhookRoundTrip checks that a marshalled Webhook (as a simulator
// would build one) parses back to the same value.
func TestWebhookRoundTrip(t *testing.T) {
	for _, payload := range []string{connectPayload, terminatePayload, statusPayload, multiPayload,
		usernamePayload, answerPayload, legacyAnswerPayload, terminateArrayPayload} {
		w, err := ParseWebhook([]byte(payload))
		if err != nil {
			t.Fatalf("ParseWebhook() = %v; want nil", err)
		}
		b, err := json.Marshal(w)
		if err != nil {
			t.Fatalf("json.Marshal() = %v; want nil", err)
		}
		again, err := ParseWebhook(b)
		if err != nil {
			t.Fatalf("ParseWebhook(%s) = %v; want nil", b, err)
		}
		if !reflect.DeepEqual(again, w) {
			t.Errorf("round trip of %s =\n%#v\nwant\n%#v", b, again, w)
		}
	}
}

func BenchmarkParseWebhook(b *testing.B) {
	for _, bm := range []struct{ name, payload string }{
		{"connect", connectPayload},
		{"terminate", terminatePayload},
	} {
		b.Run(bm.name, func(b *testing.B) {
			body := []byte(bm.payload)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				w, err := ParseWebhook(body)
				if err != nil {
					b.Fatal(err)
				}
				if len(w.CallEvents()) != 1 {
					b.Fatal("want one call event")
				}
			}
		})
	}
}
