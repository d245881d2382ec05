package media

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// Bot to caller: the bot's events go into the playout queue.

// botErrorWait is how long a failed write to the bot waits for the bot
// reader to report why the connection failed before it ends the call as a
// bot failure itself.
const botErrorWait = 200 * time.Millisecond

// GoodbyeLimit bounds how long a bot that hung up still has its queued
// audio played to the caller before the session ends.
const GoodbyeLimit = 10 * time.Second

// readBot moves the bot's audio, marks and clears into the playout queue.
// Nothing here blocks on the caller's pace: the bot connection is read
// continuously, so a clear is applied (and acknowledged) as soon as it
// arrives, however much audio is queued before it.
func (s *Session) readBot() {
	defer s.wg.Done()
	for {
		ev, err := s.bot.ReadEvent(s.ctx)
		if err != nil {
			switch {
			case s.ctx.Err() != nil || errors.Is(err, bot.ErrClosed):
			case errors.Is(err, bot.ErrBotHangup):
				s.goodbye(err) // ErrBotHangup is bot.ErrBotHangup
			default:
				s.end(fmt.Errorf("%w: %w", ErrBotFailed, err))
			}
			return
		}
		switch ev.Kind {
		case bot.EventAudio:
			if err := s.playout.Push(ev.Audio); err != nil {
				limit := time.Duration(s.playout.Limit()) * time.Second / time.Duration(s.rate)
				s.logger.Warn("bot queued more audio than the playout limit; ending the call",
					zap.Int("limit_bytes", 2*s.playout.Limit()), zap.Duration("limit", limit))
				s.end(fmt.Errorf("%w: %w (%v of audio at %d Hz)", ErrBotFailed, err, limit, s.rate))
				return
			}
		case bot.EventMark:
			s.playout.PushMark(ev.Mark)
		case bot.EventClear:
			pending := s.playout.Clear()
			if err := s.bot.WriteCleared(s.ctx, pending); err != nil && !errors.Is(err, bot.ErrClosed) {
				// The connection failed: the next ReadEvent says why.
				continue
			}
		}
	}
}

// goodbye ends the session for a bot that hung up (why), once the audio it
// queued before closing has been played to the caller: a bot that says
// goodbye and closes at once is heard to the end. The wait is bounded by
// GoodbyeLimit; Close or a media failure cut it short.
func (s *Session) goodbye(why error) {
	s.botGone.Store(true)
	if s.playout.Buffered() == 0 || !s.gate.open.Load() {
		// Nothing queued, or playout has not started (the call is not
		// accepted yet): nobody is waiting to hear it.
		s.end(why)
		return
	}
	queued := time.Duration(s.playout.Buffered()) * time.Second / time.Duration(s.rate)
	s.logger.Debug("bot hung up; playing its queued audio first", zap.Duration("queued", queued))
	limit := time.NewTimer(GoodbyeLimit)
	defer limit.Stop()
	tick := time.NewTicker(FrameDuration)
	defer tick.Stop()
	for s.playout.Buffered() > 0 {
		select {
		case <-s.ctx.Done():
			return
		case <-limit.C:
			s.logger.Debug("bot hung up with more audio queued than the goodbye limit",
				zap.Duration("limit", GoodbyeLimit))
			s.end(why)
			return
		case <-tick.C:
		}
	}
	// The last frame was taken by the send loop; let it go out.
	select {
	case <-s.ctx.Done():
		return
	case <-tick.C:
	}
	s.end(why)
}

// botWriteFailed handles a failed write to the bot from the RTP reader or the
// send loop. A failed write has cut the bot connection, so the bot reader
// reports why (a hang-up, a write timeout, an overflowing write queue) and
// ends the call; if it has not within botErrorWait, the call ends here.
//
// It reports whether the caller should stop writing to the bot. While a bot
// that hung up has its goodbye played, writes fail and are ignored.
func (s *Session) botWriteFailed(err error) (stop bool) {
	if s.botGone.Load() {
		return false
	}
	if s.ctx.Err() != nil || errors.Is(err, bot.ErrClosed) {
		return true
	}
	t := time.NewTimer(botErrorWait)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		if s.botGone.Load() {
			return false
		}
		s.end(fmt.Errorf("%w: %w", ErrBotFailed, err))
	}
	return true
}
