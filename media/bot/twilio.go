package bot

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/coder/websocket"
	"github.com/zaf/g711"
)

// Twilio Media Streams, bidirectional:
// https://www.twilio.com/docs/voice/media-streams/websocket-messages
// and PROTOCOLS.md "Bot dialect twilio".

const twilioSampleRate = 8000

// twilioBuiltinParams are the customParameters a start message may carry
// before the configured ones.
var twilioBuiltinParams = append([]string{"from_number", "to_number", "whatsapp_call_id", "phone_number_id"}, identityParamNames...)

// twilioSID returns a stable, Twilio-shaped id: prefix followed by 32
// lowercase hex digits of SHA-256 over a kind-specific label and value.
func twilioSID(prefix, kind, value string) string {
	sum := sha256.Sum256([]byte("caddy-whatsapp-calls/" + kind + "\x00" + value))
	return prefix + hex.EncodeToString(sum[:16])
}

// twilio speaks Twilio's Media Streams dialect.
type twilio struct {
	streamSID  string
	callSID    string
	accountSID string
	call       CallInfo
	params     []Param

	// Write state, used only by the writer goroutine.
	seq   uint64 // last sequenceNumber sent
	chunk uint64 // last media chunk sent
	ulaw  []byte // scratch: one frame of mu-law

	// Read state, used only by the reader goroutine.
	inUlaw []byte
	inPCM  []int16
}

func newTwilio(call CallInfo, params []Param) *twilio {
	return &twilio{
		streamSID:  twilioSID("MZ", "streamSid", call.CallID),
		callSID:    twilioSID("CA", "callSid", call.CallID),
		accountSID: twilioSID("AC", "accountSid", call.PhoneNumberID),
		call:       call,
		params:     params,
		ulaw:       make([]byte, twilioSampleRate/50),
	}
}

func (t *twilio) opening() []outMessage {
	connected := []byte(`{"event":"connected","protocol":"Call","version":"1.0.0"}`)

	b := t.appendHeader(nil, "start")
	b = append(b, `"start":{"accountSid":"`...)
	b = append(b, t.accountSID...)
	b = append(b, `","streamSid":"`...)
	b = append(b, t.streamSID...)
	b = append(b, `","callSid":"`...)
	b = append(b, t.callSID...)
	b = append(b, `","tracks":["inbound"],"customParameters":{`...)
	b = appendJSONField(b, true, "from_number", t.call.From)
	b = appendJSONField(b, false, "to_number", t.call.To)
	b = appendJSONField(b, false, "whatsapp_call_id", t.call.CallID)
	b = appendJSONField(b, false, "phone_number_id", t.call.PhoneNumberID)
	for _, p := range t.call.identityParams() {
		b = appendJSONField(b, false, p.Name, p.Value)
	}
	for _, p := range t.params {
		b = appendJSONField(b, false, p.Name, p.Value)
	}
	b = append(b, `},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}`...)

	return []outMessage{
		{typ: websocket.MessageText, data: connected},
		{typ: websocket.MessageText, data: b},
	}
}

// appendHeader starts a message with the next sequence number:
// {"event":"<event>","sequenceNumber":"<n>","streamSid":"<sid>",
func (t *twilio) appendHeader(dst []byte, event string) []byte {
	t.seq++
	dst = append(dst, `{"event":"`...)
	dst = append(dst, event...)
	dst = append(dst, `","sequenceNumber":"`...)
	dst = strconv.AppendUint(dst, t.seq, 10)
	dst = append(dst, `","streamSid":"`...)
	dst = append(dst, t.streamSID...)
	return append(dst, `",`...)
}

func (t *twilio) audioType() websocket.MessageType { return websocket.MessageText }

// appendAudio appends a media message. chunk counts from 1; timestamp is
// the stream time in ms at the chunk's end: ms+20 from the media clock, or
// chunk*20 without one, as PROTOCOLS.md's example gives it (chunk "1",
// timestamp "20").
func (t *twilio) appendAudio(dst []byte, pcm []int16, ms int64) []byte {
	t.chunk++
	ulaw := t.ulaw[:len(pcm)]
	for i, s := range pcm {
		ulaw[i] = g711.EncodeUlawFrame(s)
	}
	dst = t.appendHeader(dst, "media")
	dst = append(dst, `"media":{"track":"inbound","chunk":"`...)
	dst = strconv.AppendUint(dst, t.chunk, 10)
	dst = append(dst, `","timestamp":"`...)
	if ms >= 0 {
		dst = strconv.AppendInt(dst, ms+20, 10)
	} else {
		dst = strconv.AppendUint(dst, t.chunk*20, 10)
	}
	dst = append(dst, `","payload":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, ulaw)
	return append(dst, `"}}`...)
}

// appendDTMF appends a dtmf message. Twilio's dtmf event has no duration.
func (t *twilio) appendDTMF(dst []byte, digit byte, _ int64) []byte {
	dst = t.appendHeader(dst, "dtmf")
	dst = append(dst, `"dtmf":{"track":"inbound_track","digit":"`...)
	dst = append(dst, digit)
	return append(dst, `"}}`...)
}

func (t *twilio) appendMarkPlayed(dst []byte, m Mark) []byte {
	dst = t.appendHeader(dst, "mark")
	dst = append(dst, `"mark":{"name":`...)
	dst = appendJSONString(dst, m.name)
	return append(dst, `}}`...)
}

// echoMarksOnClear is true: Twilio answers a clear by sending back every mark
// whose audio was dropped.
func (t *twilio) echoMarksOnClear() bool { return true }

func (t *twilio) appendCleared(dst []byte) []byte { return dst }

func (t *twilio) appendStop(dst []byte) []byte {
	dst = t.appendHeader(dst, "stop")
	dst = append(dst, `"stop":{"accountSid":"`...)
	dst = append(dst, t.accountSID...)
	dst = append(dst, `","callSid":"`...)
	dst = append(dst, t.callSID...)
	return append(dst, `"}}`...)
}

func (t *twilio) decode(typ websocket.MessageType, msg []byte) (Event, string) {
	if typ != websocket.MessageText {
		return Event{}, "binary frame"
	}
	f, ok := scanTwilio(msg)
	if !ok {
		return Event{}, "invalid json"
	}
	switch string(f.event) {
	case `"media"`:
		return t.decodeMedia(f.payload)
	case `"mark"`:
		name, err := jsonStringValue(f.name)
		if err != nil {
			return Event{}, "invalid mark name"
		}
		return Event{Kind: EventMark, Mark: Mark{name: name}}, ""
	case `"clear"`:
		return Event{Kind: EventClear}, ""
	}
	return Event{}, "unknown event"
}

// decodeMedia decodes a media payload (a raw JSON string literal of base64
// mu-law) into PCM.
func (t *twilio) decodeMedia(payload []byte) (Event, string) {
	if payload == nil {
		return Event{}, "media without payload"
	}
	b64, ok := unquoteSimple(payload)
	if !ok {
		// JSON escapes (such as \/) in the payload: let encoding/json undo
		// them. Rare, so the allocation does not matter.
		s, err := jsonStringValue(payload)
		if err != nil {
			return Event{}, "invalid media payload"
		}
		b64 = []byte(s)
	}
	var err error
	t.inUlaw, err = base64.StdEncoding.AppendDecode(t.inUlaw[:0], b64)
	if err != nil {
		// Some bots leave out the padding.
		t.inUlaw, err = base64.RawStdEncoding.AppendDecode(t.inUlaw[:0], []byte(strings.TrimRight(string(b64), "=")))
		if err != nil {
			return Event{}, "invalid base64 payload"
		}
	}
	if len(t.inUlaw) == 0 {
		return Event{}, "empty media payload"
	}
	if cap(t.inPCM) < len(t.inUlaw) {
		t.inPCM = make([]int16, len(t.inUlaw))
	}
	pcm := t.inPCM[:len(t.inUlaw)]
	for i, u := range t.inUlaw {
		pcm[i] = g711.DecodeUlawFrame(u)
	}
	return Event{Kind: EventAudio, Audio: pcm}, ""
}
