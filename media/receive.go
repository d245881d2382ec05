package media

import (
	"errors"
	"strings"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Caller to bot: reading the caller's RTP.

// onTrack is pion's OnTrack callback; pion runs it on its own goroutine, in
// which the caller's RTP is read until the PeerConnection closes.
func (s *Session) onTrack(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	if track.Kind() != webrtc.RTPCodecTypeAudio {
		return
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	select {
	case <-s.ready:
	case <-s.ctx.Done():
		return
	}
	if !s.reading.CompareAndSwap(false, true) {
		s.logger.Debug("ignoring a second audio track", zap.Uint32("ssrc", uint32(track.SSRC())))
		return
	}
	s.readRTP(track)
}

// readRTP reads the caller's RTP until the track ends: Opus goes to the bot
// as audio, telephone-event as DTMF.
func (s *Session) readRTP(track *webrtc.TrackRemote) {
	buf := make([]byte, maxRTPPacket)
	var pkt rtp.Packet
	var events []DTMFEvent
	var lastPT uint8
	var kind payloadKind
	var clock uint32
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			if errors.Is(err, webrtc.ErrCodecNotFound) {
				continue // a payload type we did not negotiate
			}
			return
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		s.packetsIn.Add(1)
		lost, ok := s.in.sequence(pkt.SequenceNumber)
		if !ok {
			continue
		}
		if lost > 0 {
			s.packetsLost.Add(uint64(lost))
		}
		if kind == payloadUnknown || pkt.PayloadType != lastPT {
			lastPT = pkt.PayloadType
			kind, clock = classify(track.Codec())
		}
		switch kind {
		case payloadOpus:
			if err := s.in.opus(s.ctx, &pkt, lost > 0); err != nil && s.botWriteFailed(err) {
				return
			}
		case payloadTelephoneEvent:
			events = s.in.dtmf.Push(events[:0], pkt.Timestamp, pkt.Payload, clock)
			for _, ev := range events {
				s.dtmfCount.Add(1)
				if ce := s.logger.Check(zapcore.DebugLevel, "dtmf"); ce != nil {
					ce.Write(zap.Duration("duration", ev.Duration))
				}
				if s.hooks.OnDTMF != nil {
					s.hooks.OnDTMF(ev)
				}
				if err := s.bot.WriteDTMF(s.ctx, ev.Digit, ev.Duration); err != nil && s.botWriteFailed(err) {
					return
				}
			}
		}
	}
}

// payloadKind classifies a received RTP payload type.
type payloadKind uint8

const (
	payloadUnknown payloadKind = iota
	payloadOpus
	payloadTelephoneEvent
	payloadOther
)

// classify returns the kind of a negotiated codec and, for telephone-event,
// its clock rate.
func classify(c webrtc.RTPCodecParameters) (payloadKind, uint32) {
	switch {
	case strings.EqualFold(c.MimeType, webrtc.MimeTypeOpus):
		return payloadOpus, c.ClockRate
	case strings.EqualFold(c.MimeType, mimeTypeTelephoneEvent):
		return payloadTelephoneEvent, c.ClockRate
	}
	return payloadOther, c.ClockRate
}
