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
// complete answer, whose one audio codec is PCMU if pcmu is set and Opus
// otherwise (telephone-event besides, if offered).
func (s *Session) setupPeer(ctx context.Context, offer string, pcmu bool) (string, error) {
	api := s.engine.api
	if pcmu {
		api = s.engine.pcmuAPI
	}
	pc, err := s.newPeerConnection(api)
	if err != nil {
		return "", err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: set remote description: %w", ErrBadOffer, err)
	}
	codec, name := opusCodec, "opus"
	if pcmu {
		codec, name = pcmuCodec, "pcmu"
	}
	s.track, err = webrtc.NewTrackLocalStaticRTP(codec, opusTrackID, opusStreamID)
	if err != nil {
		return "", fmt.Errorf("new %s track: %w", name, err)
	}
	s.sender, err = pc.AddTrack(s.track)
	if err != nil {
		return "", fmt.Errorf("%w: add %s track: %w", ErrBadOffer, name, err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: create answer: %w", ErrBadOffer, err)
	}
	if pcmu && !sdpHasPCMU(answer.SDP) {
		return "", fmt.Errorf("%w: no pcmu audio in common", ErrBadOffer)
	}
	if !pcmu && !sdpHasOpus(answer.SDP) {
		return "", fmt.Errorf("%w: no opus audio in common", ErrBadOffer)
	}
	return completeLocalDescription(ctx, pc, answer)
}

// newPeerConnection builds s's PeerConnection from api (bundled, RTCP-muxed,
// with the engine's ICE servers) and wires its state and track callbacks.
func (s *Session) newPeerConnection(api *webrtc.API) (*webrtc.PeerConnection, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{
		ICEServers:    s.engine.iceServers,
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	})
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	s.pc = pc
	pc.OnConnectionStateChange(s.onState)
	pc.OnTrack(s.onTrack)
	return pc, nil
}

// completeLocalDescription sets desc (our offer or answer) as pc's local
// description, waits until ICE gathering is complete (WhatsApp takes no
// trickled candidates; ctx bounds the wait) and returns the local SDP with
// every candidate and only its sha-256 fingerprint.
func completeLocalDescription(ctx context.Context, pc *webrtc.PeerConnection, desc webrtc.SessionDescription) (string, error) {
	// An ended ctx fails here: once gathering is under way, select would
	// pick at random between it and a gathering that completes at once.
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("gather ice candidates: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
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
	return onlySHA256Fingerprints(local.SDP)
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
