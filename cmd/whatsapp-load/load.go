package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
)

// Load defaults and constants.
const (
	// packetInterval is the real-time pace of Opus packets.
	packetInterval = 20 * time.Millisecond
	// silenceFrameLen is the size of the Opus silence frame a target
	// sends while its bot is quiet; larger packets count as audible.
	silenceFrameLen = 3
	// settle is skipped after the last call is established before the
	// steady-state window opens.
	settle = time.Second
	// windowTail is left between the window's end and the first hang-up.
	windowTail = 500 * time.Millisecond
	// minWindow is the shortest steady-state window worth measuring.
	minWindow = time.Second
	// sampleInterval is how often the target's /proc files are sampled.
	sampleInterval = 250 * time.Millisecond
)

// loadConfig configures one load run. See the flags in main.go.
type loadConfig struct {
	Webhook       string
	GraphAddr     string
	MetricsURL    string
	AppSecret     string
	PhoneNumberID string
	Label         string
	Calls         int
	Ramp          time.Duration
	Hold          time.Duration
	SetupTimeout  time.Duration
	Drain         time.Duration
	PID           int
	// Caller is the shape of the callers (internal/caller): Meta by
	// default, Pion for the first release's callers.
	Caller caller.Shape
}

// runner runs the calls of one load.
type runner struct {
	cfg    loadConfig
	client *http.Client
	graph  *graph
	pacer  *pacer
	runID  string

	mu       sync.Mutex
	firstErr map[string]error // first error of each failure reason
}

// fail records err as the first of its reason and returns the reason.
func (r *runner) fail(reason string, err error) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.firstErr[reason]; !ok {
		r.firstErr[reason] = err
	}
	return reason
}

// runLoad runs cfg.Calls calls against the target and reports. Details of
// the first error of each failure reason are written to diag.
func runLoad(ctx context.Context, cfg loadConfig, diag io.Writer) (Report, error) {
	packets, err := probePackets(cfg.Caller)
	if err != nil {
		return Report{}, err
	}
	var rssBefore *int64
	if cfg.PID > 0 {
		s, err := readProc(cfg.PID)
		if err != nil {
			return Report{}, fmt.Errorf("-pid: %w", err)
		}
		rssBefore = &s.rssKiB
	}
	client := &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     30 * time.Second,
	}}
	defer client.CloseIdleConnections()

	var underrunsBefore, activeBefore float64
	haveUnderruns := false
	if cfg.MetricsURL != "" {
		m, err := fetchMetrics(ctx, client, cfg.MetricsURL, metricUnderruns, metricActive)
		if err != nil {
			return Report{}, fmt.Errorf("-metrics: %w", err)
		}
		underrunsBefore, haveUnderruns = m[metricUnderruns]
		activeBefore = m[metricActive]
	}

	g := newGraph(nil)
	ln, err := net.Listen("tcp", cfg.GraphAddr)
	if err != nil {
		return Report{}, fmt.Errorf("-graph: %w", err)
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln) // returns http.ErrServerClosed after Shutdown
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-served
	}()

	p := newPacer(packets, probeSilencePackets)
	pctx, stopPacer := context.WithCancel(ctx)
	paced := make(chan struct{})
	go func() {
		defer close(paced)
		p.run(pctx)
	}()
	defer func() {
		stopPacer()
		<-paced
	}()

	r := &runner{
		cfg: cfg, client: client, graph: g, pacer: p,
		runID:    fmt.Sprintf("%06x", rand.Uint32()&0xffffff),
		firstErr: map[string]error{},
	}
	drops0, dropsErr := readUDPRcvbufErrors()
	samples := &sampler{pid: cfg.PID}
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		samples.run(sctx, sampleInterval)
	}()

	results := make([]callResult, cfg.Calls)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range cfg.Calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cfg.Calls > 1 && !sleepUntil(ctx, start.Add(cfg.Ramp*time.Duration(i)/time.Duration(cfg.Calls-1))) {
				results[i] = callResult{reason: r.fail("interrupted", ctx.Err()), setupAt: time.Now()}
				return
			}
			results[i] = r.call(ctx, i)
		}()
	}
	wg.Wait()
	stopSampling()
	<-sampled
	w, note := chooseWindow(results, samples.all(), cfg.PID > 0)
	var drops *uint64
	if drops1, err := readUDPRcvbufErrors(); err == nil && dropsErr == nil {
		d := drops1 - drops0
		drops = &d
	}

	var underruns *float64
	if cfg.MetricsURL != "" {
		after, err := r.drain(ctx, activeBefore)
		if err != nil {
			fmt.Fprintf(diag, "metrics after the run: %v\n", err)
		} else if v, ok := after[metricUnderruns]; ok && haveUnderruns {
			d := v - underrunsBefore
			underruns = &d
		}
	}
	rep := buildReport(cfg.Label, results, w, rssBefore, underruns, g.counts(), clockTicks())
	if note != "" {
		rep.Note = note
	}
	rep.UDPRcvbufErrors = drops
	var sent, nominal float64
	for _, c := range results {
		sent += float64(c.sent)
		nominal += float64(c.nominal)
	}
	if nominal > 0 {
		rep.SendPace = round(sent/nominal, 4)
	}
	reasons := make([]string, 0, len(r.firstErr))
	for k := range r.firstErr {
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	for _, k := range reasons {
		fmt.Fprintf(diag, "first %q: %v\n", k, r.firstErr[k])
	}
	return rep, nil
}

// drain waits until the target reports no more active calls than before
// the run (or -drain passes), then returns its final metrics.
func (r *runner) drain(ctx context.Context, activeBefore float64) (map[string]float64, error) {
	deadline := time.Now().Add(r.cfg.Drain)
	for {
		m, err := fetchMetrics(ctx, r.client, r.cfg.MetricsURL, metricUnderruns, metricActive)
		if err != nil {
			return nil, err
		}
		if m[metricActive] <= activeBefore || !time.Now().Before(deadline) {
			return m, nil
		}
		if !sleepUntil(ctx, time.Now().Add(200*time.Millisecond)) {
			return m, nil
		}
	}
}

// call plays one WhatsApp call: offer, connect webhook, pre_accept answer,
// media, accept, hold with audio, terminate webhook.
func (r *runner) call(ctx context.Context, i int) (res callResult) {
	defer func() {
		if res.setupAt.IsZero() { // failed during setup
			res.setupAt = time.Now()
		}
	}()
	id := fmt.Sprintf("wacid.LOAD-%s-%05d", r.runID, i)
	from := callerNumber(i)
	gc := r.graph.expect(id)
	var audible atomic.Uint64
	pr, err := newProbe()
	if err != nil {
		return callResult{reason: r.fail("probe", err)}
	}
	c, err := caller.New(caller.Config{Shape: r.cfg.Caller, Lite: true, OnAudio: func(p *rtp.Packet) {
		pr.observe(p.Payload, time.Now())
		if len(p.Payload) > silenceFrameLen {
			audible.Add(1)
		}
	}})
	if err != nil {
		return callResult{reason: r.fail("caller", err)}
	}
	defer c.Close()

	body, err := connectWebhook(r.cfg.PhoneNumberID, id, from, c.Offer(), time.Now())
	if err != nil {
		return callResult{reason: r.fail("webhook", err)}
	}
	t0 := time.Now()
	if err := postWebhook(ctx, r.client, r.cfg.Webhook, []byte(r.cfg.AppSecret), body); err != nil {
		return callResult{reason: r.fail("connect webhook", err)}
	}
	sctx, cancel := context.WithTimeout(ctx, r.cfg.SetupTimeout)
	defer cancel()

	var answer string
	select {
	case answer = <-gc.preAccept:
	case <-gc.ended:
		return callResult{reason: r.fail(r.graph.endAction(gc)+" before pre_accept", ErrSetup)}
	case <-sctx.Done():
		return callResult{reason: r.fail("no pre_accept", fmt.Errorf("%w: %w", ErrSetup, sctx.Err()))}
	}
	preAt, _ := r.graph.times(gc)
	res.preAccept = preAt.Sub(t0)
	if err := c.SetAnswer(answer); err != nil {
		res.reason = r.fail("bad answer", err)
		return res
	}
	if err := c.WaitConnected(sctx); err != nil {
		res.reason = r.fail("media not connected", err)
		return res
	}
	select {
	case <-gc.accepted:
	case <-gc.ended:
		res.reason = r.fail(r.graph.endAction(gc)+" before accept", ErrSetup)
		return res
	case <-sctx.Done():
		res.reason = r.fail("no accept", fmt.Errorf("%w: %w", ErrSetup, sctx.Err()))
		return res
	}
	_, accAt := r.graph.times(gc)
	res.accept = accAt.Sub(t0)
	res.established = true
	started := time.Now()
	res.setupAt = started
	end := started.Add(r.cfg.Hold)

	recv0, aud0 := c.Received(), audible.Load()
	st := r.pacer.add(c, pr, end, i)
	select {
	case <-st.done:
	case <-c.Failed():
		res.dropped, res.reason = true, r.fail("media failed during hold", errors.New("connection failed or closed"))
	case <-gc.ended:
		res.dropped, res.reason = true, r.fail("target "+r.graph.endAction(gc)+" during hold", errors.New("target ended the call"))
	case <-ctx.Done():
		res.dropped, res.reason = true, r.fail("interrupted", ctx.Err())
	}
	res.sent = r.pacer.remove(st)
	res.stoppedAt = time.Now()
	res.received, res.audible = c.Received()-recv0, audible.Load()-aud0
	res.nominal = uint64(time.Since(started) / packetInterval)
	res.rtts, res.probesMissed = pr.results(res.stoppedAt)

	select {
	case <-gc.ended: // the target hung up: Meta would not send terminate for the user
	default:
		body, err := terminateWebhook(r.cfg.PhoneNumberID, id, from, started, time.Now())
		if err == nil {
			err = postWebhook(context.WithoutCancel(ctx), r.client, r.cfg.Webhook, []byte(r.cfg.AppSecret), body)
		}
		if err != nil && res.reason == "" {
			res.reason = r.fail("terminate webhook", err)
		}
	}
	return res
}

// sleepUntil waits until t or ctx is done; it reports whether t came.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// stream is one call's audio in the pacer. Its fields belong to the pacer
// (under pacer.mu); done is closed when the hold ends.
type stream struct {
	c     *caller.Caller
	probe *probe // nil: no latency probe
	end   time.Time
	next  int
	sent  uint64
	done  chan struct{}
}

// pacer sends one pre-encoded Opus packet per stream every 20 ms from a
// single ticker, which is far cheaper than a ticker per call.
type pacer struct {
	packets [][]byte
	// onset is the index of the packet that starts a latency probe: the
	// first loud one after silence. A stream's probe is told when it sends
	// it, once the stream has sent the whole silence before it.
	onset int

	mu      sync.Mutex
	streams map[*stream]struct{}
}

// newPacer returns a pacer replaying packets in a loop, packets[onset]
// starting a latency probe (onset < 0: none).
func newPacer(packets [][]byte, onset int) *pacer {
	return &pacer{packets: packets, onset: onset, streams: map[*stream]struct{}{}}
}

// add starts sending to c until end, telling pr (if not nil) when a probe
// starts. i staggers the starting packet so that calls do not all say the
// same thing at once.
func (p *pacer) add(c *caller.Caller, pr *probe, end time.Time, i int) *stream {
	s := &stream{c: c, probe: pr, end: end, next: (i * 7) % len(p.packets), done: make(chan struct{})}
	p.mu.Lock()
	p.streams[s] = struct{}{}
	p.mu.Unlock()
	return s
}

// remove stops s (if it still runs) and returns the packets sent to it.
func (p *pacer) remove(s *stream) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.streams, s)
	return s.sent
}

// tick sends one packet to every stream whose hold has not ended and ends
// the others.
func (p *pacer) tick(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := range p.streams {
		if !now.Before(s.end) {
			delete(p.streams, s)
			close(s.done)
			continue
		}
		if s.probe != nil && s.next == p.onset && s.sent >= uint64(p.onset) {
			s.probe.onset(time.Now())
		}
		if s.c.SendOpus(p.packets[s.next]) == nil {
			s.sent++
		}
		s.next = (s.next + 1) % len(p.packets)
	}
}

// run ticks every 20 ms until ctx is done.
func (p *pacer) run(ctx context.Context) {
	t := time.NewTicker(packetInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.tick(now)
		}
	}
}
