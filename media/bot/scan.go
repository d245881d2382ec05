package bot

import "encoding/json"

// A small allocation-free JSON scanner for the hot path of the Twilio
// dialect: bot media messages arrive up to 100 times a second per call, and
// encoding/json allocates several times per message. It only extracts the
// fields the dialect reads and skips everything else; it rejects what is
// not JSON structure (unterminated strings, control characters in strings,
// unbalanced brackets, trailing data) without validating every number
// literal. String values are returned raw, quotes included, with escapes
// undecoded; callers fall back on encoding/json for values that contain a
// backslash.

// maxScanDepth bounds the nesting of skipped values.
const maxScanDepth = 10000 // as encoding/json

// twilioFields are the parts of a Twilio bot message that the dialect uses,
// each a raw JSON string literal (quotes included) or nil if absent or not a
// string.
type twilioFields struct {
	event   []byte // event
	payload []byte // media.payload
	name    []byte // mark.name
}

// scanTwilio extracts the Twilio fields from a bot message. ok is false if
// msg is not a JSON object.
func scanTwilio(msg []byte) (f twilioFields, ok bool) {
	s := jsonScanner{b: msg}
	ok = s.object(func(key []byte) bool {
		switch string(key) { // no allocation: the conversion is only compared
		case "event":
			return s.stringOrSkip(&f.event)
		case "media":
			return s.objectField("payload", &f.payload)
		case "mark":
			return s.objectField("name", &f.name)
		}
		return s.skipValue(0)
	})
	if !ok {
		return twilioFields{}, false
	}
	s.space()
	if s.i != len(s.b) {
		return twilioFields{}, false
	}
	return f, true
}

// jsonStringValue decodes a raw JSON string literal; nil (absent) is "".
func jsonStringValue(raw []byte) (string, error) {
	if raw == nil {
		return "", nil
	}
	if inner, ok := unquoteSimple(raw); ok {
		return string(inner), nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// unquoteSimple returns the contents of a raw JSON string literal if it has
// no escapes.
func unquoteSimple(raw []byte) ([]byte, bool) {
	if len(raw) < 2 {
		return nil, false
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' {
			return nil, false
		}
	}
	return inner, true
}

type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *jsonScanner) peek() byte {
	s.space()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// str scans a string literal and returns it raw, quotes included.
func (s *jsonScanner) str() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i
	s.i++
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start:s.i], true
		case c == '\\':
			s.i += 2
		case c < 0x20:
			return nil, false
		default:
			s.i++
		}
	}
	return nil, false
}

// object scans an object, calling field for each key with the scanner
// positioned before the value; field must consume the value.
func (s *jsonScanner) object(field func(key []byte) bool) bool {
	if s.peek() != '{' {
		return false
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		raw, ok := s.str()
		if !ok || s.peek() != ':' {
			return false
		}
		s.i++
		key, simple := unquoteSimple(raw)
		if !simple {
			// An escaped key: decode it (rare, so allocating is fine).
			k, err := jsonStringValue(raw)
			if err != nil {
				return false
			}
			key = []byte(k)
		}
		if !field(key) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// stringOrSkip stores a string value in *dst, or skips a value of another
// type and clears *dst (the last occurrence of a key wins, as in
// encoding/json).
func (s *jsonScanner) stringOrSkip(dst *[]byte) bool {
	if s.peek() == '"' {
		raw, ok := s.str()
		*dst = raw
		return ok
	}
	*dst = nil
	return s.skipValue(0)
}

// objectField scans an object value and stores its string field name in
// *dst; any other value is skipped.
func (s *jsonScanner) objectField(name string, dst *[]byte) bool {
	*dst = nil // a later occurrence of the object replaces an earlier one
	if s.peek() != '{' {
		return s.skipValue(0)
	}
	return s.object(func(key []byte) bool {
		if string(key) == name {
			return s.stringOrSkip(dst)
		}
		return s.skipValue(1)
	})
}

// skipValue skips one value of any type.
func (s *jsonScanner) skipValue(depth int) bool {
	if depth > maxScanDepth {
		return false
	}
	switch c := s.peek(); {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '{':
		return s.object(func([]byte) bool { return s.skipValue(depth + 1) })
	case c == '[':
		s.i++
		if s.peek() == ']' {
			s.i++
			return true
		}
		for {
			if !s.skipValue(depth + 1) {
				return false
			}
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return true
			default:
				return false
			}
		}
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		digits := 0
		for s.i < len(s.b) && isNumberByte(s.b[s.i]) {
			if c := s.b[s.i]; c >= '0' && c <= '9' {
				digits++
			}
			s.i++
		}
		return digits > 0
	}
	return false
}

// isNumberByte reports whether c may appear in a number literal.
func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

func (s *jsonScanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}
