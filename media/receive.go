package media

import (
	"errors"
	"strings"
	"time"

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

// readRTP reads the caller's RTP until the track ends and hands each packet
// to the caller path (reorder buffer, decoder, bot), which sends what is
// due at once; deliverLoop releases the rest on the 20 ms cadence.
func (s *Session) readRTP(track *webrtc.TrackRemote) {
	buf := make([]byte, maxRTPPacket)
	var hdr rtp.Header
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
		if _, err := hdr.Unmarshal(buf[:n]); err != nil {
			continue
		}
		s.packetsIn.Add(1)
		if kind == payloadUnknown || hdr.PayloadType != lastPT {
			lastPT = hdr.PayloadType
			kind, clock = classify(track.Codec())
		}
		if kind != payloadOpus && kind != payloadTelephoneEvent {
			continue
		}
		now := time.Now()
		s.callerMu.Lock()
		err = nil
		if s.caller.ro.push(hdr.SequenceNumber, kind, clock, buf[:n], now) {
			err = s.caller.tick(s.ctx, now, true)
			s.packetsLost.Store(s.caller.lost)
		}
		s.callerMu.Unlock()
		if err != nil && s.botWriteFailed(err) {
			return
		}
	}
}

// deliverLoop runs the caller path on a 20 ms wall-clock cadence: packets
// due from the reorder buffer are decoded (losses concealed) and the bot
// gets one frame per tick.
func (s *Session) deliverLoop() {
	defer s.wg.Done()
	p := pacer{start: time.Now()}
	timer := time.NewTimer(FrameDuration)
	defer timer.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		send, skip := p.due(now)
		p.next += int64(send + skip)
		s.callerMu.Lock()
		err := s.caller.tick(s.ctx, now, false)
		s.packetsLost.Store(s.caller.lost)
		s.callerMu.Unlock()
		if err != nil && s.botWriteFailed(err) {
			return
		}
		timer.Reset(max(p.wait(time.Now()), 0))
	}
}

// forwardDTMF sends the caller's key presses to the bot, in order with the
// caller's audio.
func (s *Session) forwardDTMF(events []DTMFEvent) error {
	for _, ev := range events {
		s.dtmfCount.Add(1)
		if ce := s.logger.Check(zapcore.DebugLevel, "dtmf"); ce != nil {
			ce.Write(zap.Duration("duration", ev.Duration))
		}
		if s.hooks.OnDTMF != nil {
			s.hooks.OnDTMF(ev)
		}
		if err := s.bot.WriteDTMF(s.ctx, ev.Digit, ev.Duration); err != nil {
			return err
		}
	}
	return nil
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
