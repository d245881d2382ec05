package bot

import (
	"encoding/json"
	"testing"
)

// refTwilio decodes the Twilio fields with encoding/json, the reference
// scanTwilio must agree with.
func refTwilio(msg []byte) (event, payload, name *string, ok bool) {
	var v any
	if err := json.Unmarshal(msg, &v); err != nil {
		return nil, nil, nil, false
	}
	top, isObj := v.(map[string]any)
	if !isObj {
		return nil, nil, nil, false
	}
	str := func(m map[string]any, key string) *string {
		if s, isStr := m[key].(string); isStr {
			return &s
		}
		return nil
	}
	event = str(top, "event")
	if media, isObj := top["media"].(map[string]any); isObj {
		payload = str(media, "payload")
	}
	if mark, isObj := top["mark"].(map[string]any); isObj {
		name = str(mark, "name")
	}
	return event, payload, name, true
}

// sameString compares a scanned raw string literal with the reference value.
// encoding/json turns each invalid UTF-8 byte into U+FFFD; so does
// converting through []rune.
func sameString(raw []byte, want *string) bool {
	if want == nil {
		return raw == nil
	}
	if raw == nil {
		return false
	}
	got, err := jsonStringValue(raw)
	return err == nil && string([]rune(got)) == *want
}

var scanSeeds = []string{
	`{"event":"media","streamSid":"MZ1","media":{"payload":"AAEC"}}`,
	`{"event":"mark","mark":{"name":"a\"b\\c\u00e9\/"}}`,
	` {"media" : {"track":"outbound","chunk":"1","timestamp":"5","payload":"//79"} , "event" : "media" } `,
	`{"event":"clear","streamSid":"MZ1"}`,
	`{"event":"media","media":{"payload":"a"},"media":{"x":1}}`,
	`{"event":"media","media":"oops"}`,
	`{"event":1,"mark":{"name":null}}`,
	`{"\u0065vent":"clear"}`,
	`{"event":"x","extra":[1,-2.5e3,true,false,null,{"a":[[]]},"s"],"n":{}}`,
	`{"event":"media"} trailing`,
	`{"event":"media",}`,
	`{"event":"me` + "\x01" + `dia"}`,
	`{"event":"media","media":{"payload":"` + "\xff\xfe" + `"}}`,
	`["event","media"]`,
	`"event"`,
	``,
	`{`,
	`{"a":[1,2}`,
	`{"event":"mark","mark":{"name":"` + "\u2028" + `"},"mark":{"name":"second"}}`,
}

func FuzzScanTwilio(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		fields, ok := scanTwilio(msg)
		event, payload, name, refOK := refTwilio(msg)
		if !refOK {
			return // scanTwilio may accept a little more than JSON; it only has to agree on JSON
		}
		if !ok {
			t.Fatalf("scanTwilio(%q) rejected JSON that encoding/json accepts", msg)
		}
		if !sameString(fields.event, event) || !sameString(fields.payload, payload) || !sameString(fields.name, name) {
			t.Fatalf("scanTwilio(%q) = event %s, payload %s, name %s; encoding/json says %v, %v, %v",
				msg, fields.event, fields.payload, fields.name, deref(event), deref(payload), deref(name))
		}
	})
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func TestScanTwilioRejects(t *testing.T) {
	tests := []string{
		``, `{`, `}`, `[]`, `"x"`, `{"event":"media"} x`, `{"event":"media",}`, `{"event" "media"}`,
		`{"event":"me` + "\n" + `dia"}`, `{"a":[1,2}`, `{"a":tru}`, `{"a":-}`, `{"a":"\`, `{"a":{"b":}}`,
	}
	for _, give := range tests {
		if f, ok := scanTwilio([]byte(give)); ok {
			t.Errorf("scanTwilio(%q) = %+v, true; want rejected", give, f)
		}
	}
}
