package bot

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strconv"

	"github.com/coder/websocket"
)

// Vonage Voice API WebSockets:
// https://developer.vonage.com/en/voice/voice-api/concepts/websockets
// and PROTOCOLS.md "Bot dialect vonage".

const vonageDefaultSampleRate = 16000

// vonageBuiltinParams are the fields a websocket:connected message may carry
// before the configured ones.
var vonageBuiltinParams = append([]string{"event", "content-type", "from", "to", "whatsapp_call_id"}, identityParamNames...)

// vonage speaks Vonage's binary L16 dialect.
type vonage struct {
	rate   int
	call   CallInfo
	params []Param

	// Read state, used only by the reader goroutine.
	inPCM []int16
}

// vonageControl is a text message from the bot.
type vonageControl struct {
	Action  string          `json:"action"`
	Payload json.RawMessage `json:"payload"`
}

func newVonage(rate int, call CallInfo, params []Param) *vonage {
	return &vonage{rate: rate, call: call, params: params}
}

func (v *vonage) opening() []outMessage {
	b := []byte(`{"event":"websocket:connected","content-type":"audio/l16;rate=`)
	b = strconv.AppendInt(b, int64(v.rate), 10)
	b = append(b, '"')
	b = appendJSONField(b, false, "from", v.call.From)
	b = appendJSONField(b, false, "to", v.call.To)
	b = appendJSONField(b, false, "whatsapp_call_id", v.call.CallID)
	for _, p := range v.call.identityParams() {
		b = appendJSONField(b, false, p.Name, p.Value)
	}
	for _, p := range v.params {
		b = appendJSONField(b, false, p.Name, p.Value)
	}
	b = append(b, '}')
	return []outMessage{{typ: websocket.MessageText, data: b}}
}

func (v *vonage) audioType() websocket.MessageType { return websocket.MessageBinary }

// appendAudio appends the frame as signed 16-bit little-endian samples.
func (v *vonage) appendAudio(dst []byte, pcm []int16, _ int64) []byte {
	for _, s := range pcm {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(s))
	}
	return dst
}

func (v *vonage) appendDTMF(dst []byte, digit byte, ms int64) []byte {
	dst = append(dst, `{"event":"websocket:dtmf","digit":"`...)
	dst = append(dst, digit)
	dst = append(dst, `","duration":`...)
	dst = strconv.AppendInt(dst, ms, 10)
	return append(dst, '}')
}

// appendMarkPlayed echoes a notify payload; a notify without one is echoed
// with an empty object.
func (v *vonage) appendMarkPlayed(dst []byte, m Mark) []byte {
	dst = append(dst, `{"event":"websocket:notify","payload":`...)
	if len(m.payload) == 0 {
		dst = append(dst, `{}`...)
	} else {
		dst = append(dst, m.payload...)
	}
	return append(dst, '}')
}

// echoMarksOnClear is false: a clear drops the audio that pending notify
// requests were waiting for, and the websocket:cleared answer already tells
// the bot so. Echoing them would claim that audio was played.
func (v *vonage) echoMarksOnClear() bool { return false }

func (v *vonage) appendCleared(dst []byte) []byte {
	return append(dst, `{"event":"websocket:cleared"}`...)
}

// appendStop returns dst: Vonage ends a stream with the close frame alone.
func (v *vonage) appendStop(dst []byte) []byte { return dst }

func (v *vonage) decode(typ websocket.MessageType, msg []byte) (Event, string) {
	if typ == websocket.MessageBinary {
		n := len(msg) / 2 // an odd trailing byte is dropped
		if n == 0 {
			return Event{}, "empty audio frame"
		}
		if cap(v.inPCM) < n {
			v.inPCM = make([]int16, n)
		}
		pcm := v.inPCM[:n]
		for i := range pcm {
			pcm[i] = int16(binary.LittleEndian.Uint16(msg[2*i:]))
		}
		return Event{Kind: EventAudio, Audio: pcm}, ""
	}
	var c vonageControl
	if err := json.Unmarshal(msg, &c); err != nil {
		return Event{}, "invalid json"
	}
	switch c.Action {
	case "clear":
		return Event{Kind: EventClear}, ""
	case "notify":
		// json.Unmarshal copied the payload out of msg, so the Mark owns it.
		payload := c.Payload
		if bytes.Equal(payload, []byte("null")) {
			payload = nil
		}
		return Event{Kind: EventMark, Mark: Mark{payload: payload}}, ""
	}
	return Event{}, "unknown action"
}
