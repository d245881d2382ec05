package media

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The caller side of a Session: the PeerConnection, its state and its SDP.

// setupPeer builds the PeerConnection, applies the offer and returns the
// complete answer.
func (s *Session) setupPeer(ctx context.Context, offer string) (string, error) {
	pc, err := s.engine.api.NewPeerConnection(webrtc.Configuration{
		ICEServers:    s.engine.iceServers,
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	})
	if err != nil {
		return "", fmt.Errorf("new peer connection: %w", err)
	}
	s.pc = pc
	pc.OnConnectionStateChange(s.onState)
	pc.OnTrack(s.onTrack)

	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: set remote description: %w", ErrBadOffer, err)
	}
	s.track, err = webrtc.NewTrackLocalStaticRTP(opusCodec, opusTrackID, opusStreamID)
	if err != nil {
		return "", fmt.Errorf("new opus track: %w", err)
	}
	s.sender, err = pc.AddTrack(s.track)
	if err != nil {
		return "", fmt.Errorf("%w: add opus track: %w", ErrBadOffer, err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: create answer: %w", ErrBadOffer, err)
	}
	if !sdpHasOpus(answer.SDP) {
		return "", fmt.Errorf("%w: no opus audio in common", ErrBadOffer)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("gather ice candidates: %w", ctx.Err())
	}
	local := pc.LocalDescription()
	if local == nil {
		return "", errors.New("no local description after gathering")
	}
	sdp, err := onlySHA256Fingerprints(local.SDP)
	if err != nil {
		return "", err
	}
	return sdp, nil
}

// onState is pion's connection state callback: it only records the state and
// wakes the watcher.
func (s *Session) onState(st webrtc.PeerConnectionState) {
	s.pcState.Store(int32(st))
	select {
	case s.stateCh <- struct{}{}:
	default:
	}
}

// watch follows the PeerConnection state: it starts the send loop when media
// connects and ends the session when media fails, closes, or stays
// disconnected longer than the grace period.
func (s *Session) watch() {
	defer s.wg.Done()
	var grace *time.Timer
	var graceC <-chan time.Time
	defer func() {
		if grace != nil {
			grace.Stop()
		}
	}()
	started := false
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-graceC:
			s.end(fmt.Errorf("%w: disconnected for more than %s", ErrMediaFailed, s.engine.grace))
			return
		case <-s.stateCh:
		}
		st := webrtc.PeerConnectionState(s.pcState.Load())
		if ce := s.logger.Check(zapcore.DebugLevel, "peer connection state"); ce != nil {
			ce.Write(zap.Stringer("state", st))
		}
		switch st {
		case webrtc.PeerConnectionStateConnected:
			if grace != nil {
				grace.Stop()
				grace, graceC = nil, nil
			}
			if !started {
				started = true
				s.mu.Lock()
				s.connAt = time.Now()
				s.mu.Unlock()
				close(s.connected)
				s.wg.Add(1)
				go s.sendLoop()
			}
		case webrtc.PeerConnectionStateDisconnected:
			if grace == nil {
				grace = time.NewTimer(s.engine.grace)
				graceC = grace.C
			}
		case webrtc.PeerConnectionStateFailed:
			s.end(fmt.Errorf("%w: ice or dtls failed", ErrMediaFailed))
			return
		case webrtc.PeerConnectionStateClosed:
			s.end(fmt.Errorf("%w: peer connection closed", ErrMediaFailed))
			return
		}
	}
}

// drainRTCP reads the sender's RTCP so that pion's interceptors see the
// caller's receiver reports; it ends when the PeerConnection closes.
func (s *Session) drainRTCP() {
	defer s.wg.Done()
	buf := make([]byte, maxRTPPacket)
	for {
		if _, _, err := s.sender.Read(buf); err != nil {
			return
		}
	}
}
