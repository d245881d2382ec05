package main

import (
	"context"
	"os"
	"sync"
	"time"
)

// timedSample is one reading of the target's and this process's /proc
// files.
type timedSample struct {
	at                time.Time
	target, self, bot procSample
	ok                bool // the target's and this process's reads succeeded
	botOK             bool // the bot's read succeeded
}

// sampler reads /proc periodically during a run, so that the steady-state
// window can be chosen afterwards, when every call's timeline is known.
type sampler struct {
	pid    int // target; 0: only this process
	botPID int // the bot's process; 0: none

	mu      sync.Mutex
	samples []timedSample
}

// run samples now and then every interval until ctx is done.
func (s *sampler) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.take()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// take records one sample.
func (s *sampler) take() {
	ts := timedSample{at: time.Now()}
	var err error
	ts.self, err = readProc(os.Getpid())
	ts.ok = err == nil
	if ts.ok && s.pid > 0 {
		ts.target, err = readProc(s.pid)
		ts.ok = err == nil
	}
	if s.botPID > 0 {
		ts.bot, err = readProc(s.botPID)
		ts.botOK = err == nil
	}
	s.mu.Lock()
	s.samples = append(s.samples, ts)
	s.mu.Unlock()
}

// all returns the samples taken so far, oldest first.
func (s *sampler) all() []timedSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]timedSample(nil), s.samples...)
}

// chooseWindow picks the steady-state window from the samples: from settle
// after the last call finished setting up (established or failed) to
// windowTail before the first established call ended its hold (calls
// dropped early are not waited for; window.calls counts the calls that
// streamed through the whole window). If that
// is shorter than minWindow because failing calls took long to give up, the
// window opens after the last established call instead, and the note says
// so. The window's ends are the first and last good samples inside it.
func chooseWindow(results []callResult, samples []timedSample, haveTarget bool) (window, string) {
	var lastSetup, lastEst, firstStop time.Time
	for _, c := range results {
		if c.setupAt.After(lastSetup) {
			lastSetup = c.setupAt
		}
		if !c.established {
			continue
		}
		if c.setupAt.After(lastEst) {
			lastEst = c.setupAt
		}
		if !c.dropped && (firstStop.IsZero() || c.stoppedAt.Before(firstStop)) {
			firstStop = c.stoppedAt
		}
	}
	if lastEst.IsZero() || firstStop.IsZero() {
		return window{}, "no steady-state window: no call was established"
	}
	to := firstStop.Add(-windowTail)
	from, note := lastSetup.Add(settle), ""
	if to.Sub(from) < minWindow {
		from = lastEst.Add(settle)
		note = "steady-state window opened while failing calls were still setting up"
	}
	first, last := -1, -1
	for i, s := range samples {
		if !s.ok || s.at.Before(from) || s.at.After(to) {
			continue
		}
		if first < 0 {
			first = i
		}
		last = i
	}
	if first < 0 || samples[last].at.Sub(samples[first].at) < minWindow {
		return window{}, "no steady-state window: established calls did not all stream together for a second (raise -duration or lower -ramp)"
	}
	s0, s1 := samples[first], samples[last]
	streaming := 0
	for _, c := range results {
		if c.established && !c.setupAt.After(s0.at) && c.stoppedAt.After(s1.at) {
			streaming++
		}
	}
	return window{
		calls:   streaming,
		seconds: s1.at.Sub(s0.at).Seconds(),
		target0: s0.target, target1: s1.target,
		self0: s0.self, self1: s1.self,
		bot0: s0.bot, bot1: s1.bot, haveBot: s0.botOK && s1.botOK,
		ok: true, haveTarget: haveTarget,
	}, note
}
