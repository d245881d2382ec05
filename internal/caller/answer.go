package caller

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"
)

// NewAnswerer builds a peer that plays WhatsApp's side of a
// business-initiated call: it answers offer as Meta's media servers do,
// ICE-lite with a=setup:active (so the offerer is the DTLS server), Opus
// with Meta's fmtp (MetaOpusFmtp) and telephone-event/8000, and every
// candidate in the answer. Only the Meta shape answers. Answer returns
// the SDP; the other methods work as for an offering Caller.
func NewAnswerer(cfg Config, offer string) (*Caller, error) {
	if cfg.Shape != Meta {
		return nil, errors.New("caller: only the meta shape answers")
	}
	return newCaller(cfg, func(c *Caller, cfg Config) error { return c.answer(cfg, offer) })
}

// answer applies offer, adds the track and makes the complete answer.
func (c *Caller) answer(cfg Config, offer string) error {
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fmt.Errorf("set offer: %w", err)
	}
	if err := c.wire(cfg, false); err != nil {
		return err
	}
	answer, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("create answer: %w", err)
	}
	local, err := c.completeLocal(answer)
	if err != nil {
		return err
	}
	c.offer = metaAnswer(local)
	return nil
}

// Answer returns the answer SDP of a peer built by NewAnswerer.
func (c *Caller) Answer() string { return c.offer }

// metaAnswer puts Meta's Opus fmtp, a=ptime:20 and a=maxptime:20 into
// pion's answer in place of pion's echo of the offer's fmtp.
func metaAnswer(sdp string) string {
	var b strings.Builder
	for line := range strings.Lines(sdp) {
		text := strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(text, "a=fmtp:111 "):
			continue
		case strings.HasPrefix(text, "a=ptime:"), strings.HasPrefix(text, "a=maxptime:"):
			continue
		}
		b.WriteString(text + "\r\n")
		if strings.HasPrefix(text, "a=rtpmap:111 ") {
			b.WriteString("a=fmtp:111 " + MetaOpusFmtp + "\r\n")
		}
		if strings.HasPrefix(text, "a=rtpmap:126 ") {
			b.WriteString("a=maxptime:20\r\na=ptime:20\r\n")
		}
	}
	return b.String()
}
