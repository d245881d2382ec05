package media

import (
	"sync/atomic"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

// playoutGate holds the bot's audio back from the caller until the call is
// accepted. Meta's calling docs ask for media only after accept has
// returned 200 OK, or the caller misses the first words: until then the
// send loop keeps the connection alive with silence and leaves the playout
// buffer alone, so the bot's greeting is played from its first frame once
// the gate opens.
type playoutGate struct {
	open atomic.Bool
}

// init opens the gate unless hold is set.
func (g *playoutGate) init(hold bool) { g.open.Store(!hold) }

// StartPlayout lets the bot's audio reach the caller, from the first frame
// queued. A session built without SessionConfig.HoldPlayout plays at once,
// and then StartPlayout does nothing. It is safe to call at any time, more
// than once, and from any goroutine.
func (s *Session) StartPlayout() { s.gate.open.Store(true) }

// nextPayload returns the Opus payload of this tick and the marks now due:
// the bot's audio once playout has started, else silence and no marks (a
// mark is only echoed once its audio has been sent to the caller).
func (s *Session) nextPayload(due []bot.Mark) ([]byte, []bot.Mark) {
	if !s.gate.open.Load() {
		return s.out.silence, due
	}
	return s.out.next(due)
}
