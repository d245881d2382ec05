package main

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Result kinds, the "kind" of each JSON line.
const (
	kindLoad     = "load"
	kindOpusCost = "opus-cost"
)

// Percentiles summarises a latency distribution in milliseconds.
type Percentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 when sorted is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// summarize returns the p50, p90 and p99 of ds in milliseconds.
func summarize(ds []time.Duration) Percentiles {
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 1) }
	return Percentiles{N: len(s), P50: ms(percentile(s, 50)), P90: ms(percentile(s, 90)), P99: ms(percentile(s, 99))}
}

// round rounds v to digits decimals.
func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// Report is the outcome of one load run, printed as one JSON line.
type Report struct {
	// Kind is "load".
	Kind string `json:"kind"`
	// Label names the target ("caddy", "floor", ...), from -label.
	Label string `json:"label"`
	// Calls is the number of calls attempted.
	Calls int `json:"calls"`
	// Established counts calls that got pre_accept, connected media and
	// accept within the setup timeout.
	Established int `json:"established"`
	// Failed counts calls that were never established.
	Failed int `json:"failed"`
	// Dropped counts established calls that ended before their hold time
	// (media failed or the target hung up).
	Dropped int `json:"dropped"`
	// Failures counts failed and dropped calls by reason.
	Failures map[string]int `json:"failures,omitempty"`
	// PreAcceptMS is the time from posting the connect webhook to the
	// target's pre_accept reaching the fake Graph API.
	PreAcceptMS Percentiles `json:"pre_accept_ms"`
	// AcceptMS is the time from posting the connect webhook to the
	// target's accept reaching the fake Graph API.
	AcceptMS Percentiles `json:"accept_ms"`
	// PacketsSent counts Opus packets the callers sent while holding.
	PacketsSent uint64 `json:"packets_sent"`
	// PacketsReceived counts Opus packets the callers received over the
	// same time (the echo plus any silence the target sends).
	PacketsReceived uint64 `json:"packets_received"`
	// PacketsAudible counts received packets larger than an Opus silence
	// frame (3 bytes).
	PacketsAudible uint64 `json:"packets_audible"`
	// SendPace is the packets sent over those a perfect 20 ms pace would
	// have sent: below 1 means the load tool itself fell behind.
	SendPace float64 `json:"send_pace"`
	// ReceivedRatio is PacketsReceived / PacketsSent: 1 when the target
	// returns one packet per 20 ms packet sent.
	ReceivedRatio float64 `json:"received_ratio"`
	// Underruns is the increase of caddy_whatsapp_calls_underruns_total
	// over the run, or null when the target does not expose it.
	Underruns *float64 `json:"underruns"`
	// WindowSeconds is the length of the steady-state window (every
	// established call streaming) over which CPU and RSS were sampled; 0
	// when there was none.
	WindowSeconds float64 `json:"window_s"`
	// WindowCalls counts the calls that streamed through the whole window,
	// the divisor of the per-call figures (normally Established).
	WindowCalls int `json:"window_calls"`
	// TargetCPUCores is the target's CPU time over the window divided by
	// its length, or null without -pid or a window.
	TargetCPUCores *float64 `json:"target_cpu_cores"`
	// CPUCoresPerCall is TargetCPUCores / WindowCalls: CPU seconds per
	// call-second.
	CPUCoresPerCall *float64 `json:"cpu_cores_per_call"`
	// RSSBeforeKiB is the target's VmRSS before the first call.
	RSSBeforeKiB *int64 `json:"rss_before_kib"`
	// RSSSteadyKiB is the target's VmRSS at the end of the window.
	RSSSteadyKiB *int64 `json:"rss_steady_kib"`
	// RSSPerCallKiB is (RSSSteadyKiB - RSSBeforeKiB) / WindowCalls.
	RSSPerCallKiB *float64 `json:"rss_per_call_kib"`
	// LoadCPUCores is this tool's own CPU use over the window, to judge
	// whether the load generator competed with the target.
	LoadCPUCores *float64 `json:"load_cpu_cores"`
	// BotCPUCores is the bot process's CPU use over the window (-bot-pid),
	// nil without one.
	BotCPUCores *float64 `json:"bot_cpu_cores,omitempty"`
	// UDPRcvbufErrors is the increase of the host's Udp RcvbufErrors
	// (/proc/net/snmp) during the calls: datagrams dropped because a
	// socket's receive buffer was full. It counts every process on the
	// host; null if unreadable.
	UDPRcvbufErrors *uint64 `json:"udp_rcvbuf_errors"`
	// EchoRTTMS is the round-trip echo latency: from sending the first
	// loud packet after 1 s of silence to receiving the first echoed packet
	// that decodes loud, probed every 4 s in every established call.
	EchoRTTMS Percentiles `json:"echo_rtt_ms"`
	// EchoProbesMissed counts probes whose echo did not come within 2 s.
	EchoProbesMissed int `json:"echo_probes_missed"`
	// GraphActions counts the Graph API call actions received, by action.
	GraphActions map[string]int `json:"graph_actions"`
	// Note explains missing measurements.
	Note string `json:"note,omitempty"`
}

// callResult is what one call contributes to a Report.
type callResult struct {
	established  bool
	dropped      bool
	reason       string // why the call failed or dropped
	preAccept    time.Duration
	accept       time.Duration
	setupAt      time.Time // when the call was established or its setup failed
	stoppedAt    time.Time // when an established call stopped streaming
	sent         uint64    // packets sent while holding
	nominal      uint64    // packets a perfect 20 ms pace would have sent
	received     uint64
	audible      uint64
	rtts         []time.Duration // echo round trips of the latency probes
	probesMissed int             // probes whose echo never came
}

// window is a steady-state measurement: samples of the target and of this
// process at both ends.
type window struct {
	seconds          float64
	calls            int // calls streaming through the whole window
	target0, target1 procSample
	self0, self1     procSample
	bot0, bot1       procSample
	haveBot          bool // bot0 and bot1 are valid (-bot-pid given)
	ok               bool // the window was measured
	haveTarget       bool // target0 and target1 are valid (-pid given)
}

// buildReport aggregates call results, the steady-state window and the
// target's counters into a Report.
func buildReport(label string, results []callResult, w window, rssBefore *int64, underruns *float64, graph map[string]int, hz uint64) Report {
	r := Report{Kind: kindLoad, Label: label, Calls: len(results), Underruns: underruns, GraphActions: graph}
	var pre, acc, rtts []time.Duration
	for _, c := range results {
		if c.reason != "" {
			if r.Failures == nil {
				r.Failures = map[string]int{}
			}
			r.Failures[c.reason]++
		}
		if !c.established {
			r.Failed++
			if c.preAccept > 0 {
				pre = append(pre, c.preAccept)
			}
			continue
		}
		r.Established++
		if c.dropped {
			r.Dropped++
		}
		pre = append(pre, c.preAccept)
		acc = append(acc, c.accept)
		r.PacketsSent += c.sent
		r.PacketsReceived += c.received
		r.PacketsAudible += c.audible
		rtts = append(rtts, c.rtts...)
		r.EchoProbesMissed += c.probesMissed
	}
	r.PreAcceptMS, r.AcceptMS = summarize(pre), summarize(acc)
	r.EchoRTTMS = summarize(rtts)
	if r.PacketsSent > 0 {
		r.ReceivedRatio = round(float64(r.PacketsReceived)/float64(r.PacketsSent), 4)
	}
	r.RSSBeforeKiB = rssBefore
	if !w.ok || w.seconds <= 0 {
		r.Note = "no steady-state window: every call must be established before the first one ends (raise -duration or lower -ramp)"
		return r
	}
	r.WindowSeconds = round(w.seconds, 2)
	self := cores(w.self1.cpuTicks-w.self0.cpuTicks, hz, w.seconds)
	r.LoadCPUCores = &self
	if w.haveBot {
		bot := round(cores(w.bot1.cpuTicks-w.bot0.cpuTicks, hz, w.seconds), 3)
		r.BotCPUCores = &bot
	}
	if !w.haveTarget {
		return r
	}
	total := cores(w.target1.cpuTicks-w.target0.cpuTicks, hz, w.seconds)
	r.TargetCPUCores = &total
	steady := w.target1.rssKiB
	r.RSSSteadyKiB = &steady
	r.WindowCalls = w.calls
	if w.calls > 0 {
		per := round(total/float64(w.calls), 5)
		r.CPUCoresPerCall = &per
		if rssBefore != nil {
			rss := round(float64(steady-*rssBefore)/float64(w.calls), 1)
			r.RSSPerCallKiB = &rss
		}
	}
	return r
}

// cores converts CPU clock ticks over seconds of wall time into cores.
func cores(ticks, hz uint64, seconds float64) float64 {
	if hz == 0 || seconds <= 0 {
		return 0
	}
	return round(float64(ticks)/float64(hz)/seconds, 4)
}

// Human returns the report as one line for people.
func (r Report) Human() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d/%d calls established, %d failed, %d dropped", r.Label, r.Established, r.Calls, r.Failed, r.Dropped)
	if len(r.Failures) > 0 {
		keys := make([]string, 0, len(r.Failures))
		for k := range r.Failures {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s: %d", k, r.Failures[k])
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, "; "))
	}
	fmt.Fprintf(&b, "; setup ms pre_accept p50 %.1f p90 %.1f p99 %.1f, accept p50 %.1f p90 %.1f p99 %.1f",
		r.PreAcceptMS.P50, r.PreAcceptMS.P90, r.PreAcceptMS.P99, r.AcceptMS.P50, r.AcceptMS.P90, r.AcceptMS.P99)
	fmt.Fprintf(&b, "; received %.4f (%d/%d packets, %d audible)", r.ReceivedRatio, r.PacketsReceived, r.PacketsSent, r.PacketsAudible)
	fmt.Fprintf(&b, "; echo RTT ms p50 %.1f p90 %.1f p99 %.1f (%d probes, %d missed)",
		r.EchoRTTMS.P50, r.EchoRTTMS.P90, r.EchoRTTMS.P99, r.EchoRTTMS.N, r.EchoProbesMissed)
	if r.Underruns != nil {
		fmt.Fprintf(&b, "; underruns %.0f", *r.Underruns)
	} else {
		b.WriteString("; underruns n/a")
	}
	if r.CPUCoresPerCall != nil {
		fmt.Fprintf(&b, "; target CPU %.4f cores (%.5f cores/call) over %.1f s", *r.TargetCPUCores, *r.CPUCoresPerCall, r.WindowSeconds)
	}
	if r.RSSPerCallKiB != nil {
		fmt.Fprintf(&b, "; RSS %d -> %d KiB (%.0f KiB/call)", *r.RSSBeforeKiB, *r.RSSSteadyKiB, *r.RSSPerCallKiB)
	}
	if r.BotCPUCores != nil {
		fmt.Fprintf(&b, "; bot %.3f cores", *r.BotCPUCores)
	}
	if r.LoadCPUCores != nil {
		fmt.Fprintf(&b, "; load tool %.3f cores", *r.LoadCPUCores)
	}
	if r.UDPRcvbufErrors != nil && *r.UDPRcvbufErrors > 0 {
		fmt.Fprintf(&b, "; %d UDP datagrams dropped on full receive buffers (host-wide)", *r.UDPRcvbufErrors)
	}
	if r.Note != "" {
		fmt.Fprintf(&b, "; note: %s", r.Note)
	}
	return b.String()
}
