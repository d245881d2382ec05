package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// testTime is a fixed instant for webhook timestamps.
var testTime = time.Unix(1749196895, 0)

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(float64(i + 1))
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", []time.Duration{ms(7)}, 99, ms(7)},
		{"p50 of 100", hundred, 50, ms(50)},
		{"p90 of 100", hundred, 90, ms(90)},
		{"p99 of 100", hundred, 99, ms(99)},
		{"p100 of 100", hundred, 100, ms(100)},
		{"p50 of 4 is the 2nd", []time.Duration{1, 2, 3, 4}, 50, 2},
		{"p99 of 4 is the max", []time.Duration{1, 2, 3, 4}, 99, 4},
		{"tiny p is the min", []time.Duration{1, 2, 3, 4}, 0.1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v; want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarizeSortsAndRounds(t *testing.T) {
	got := summarize([]time.Duration{ms(30), ms(10.04), ms(20)})
	want := Percentiles{N: 3, P50: 20, P90: 30, P99: 30}
	if got != want {
		t.Errorf("summarize = %+v; want %+v", got, want)
	}
	got = summarize([]time.Duration{ms(10.04)})
	if got.P50 != 10 {
		t.Errorf("summarize(10.04ms).P50 = %v; want 10", got.P50)
	}
}

func TestParseStat(t *testing.T) {
	tail := " S 1 2 3 4 5 6 7 8 9 10 1234 567 13 14 15 16 17 18 19 20\n"
	tests := []struct {
		name         string
		give         string
		utime, stime uint64
		wantErr      bool
	}{
		{"plain", "42 (caddy)" + tail, 1234, 567, false},
		{"name with spaces and parens", "42 (a b) (c))" + tail, 1234, 567, false},
		{"no name", "42 caddy S 1 2", 0, 0, true},
		{"too short", "42 (caddy) S 1 2 3", 0, 0, true},
		{"not a number", "42 (caddy) S 1 2 3 4 5 6 7 8 9 10 x 567 13", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, s, err := parseStat([]byte(tt.give))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStat(%q) error = %v; wantErr %v", tt.give, err, tt.wantErr)
			}
			if tt.wantErr {
				if !errors.Is(err, ErrMalformedProc) {
					t.Errorf("parseStat(%q) error = %v; want ErrMalformedProc", tt.give, err)
				}
				return
			}
			if u != tt.utime || s != tt.stime {
				t.Errorf("parseStat(%q) = %d, %d; want %d, %d", tt.give, u, s, tt.utime, tt.stime)
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    int64
		wantErr bool
	}{
		{"present", "Name:\tcaddy\nVmPeak:\t  100 kB\nVmRSS:\t   20412 kB\nThreads:\t9\n", 20412, false},
		{"absent", "Name:\tkthreadd\nThreads:\t1\n", 0, true},
		{"bad unit", "VmRSS:\t 20 MB\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVmRSS([]byte(tt.give))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseVmRSS(%q) error = %v; wantErr %v", tt.give, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseVmRSS(%q) = %d; want %d", tt.give, got, tt.want)
			}
		})
	}
}

func TestReadProcOwnProcess(t *testing.T) {
	// Burn a little CPU so that at least one clock tick is accounted.
	deadline := time.Now().Add(30 * time.Millisecond)
	x := 0.0
	for time.Now().Before(deadline) {
		x += math.Sqrt(x + 1)
	}
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatalf("readProc(self) error = %v", err)
	}
	if s.rssKiB <= 0 {
		t.Errorf("readProc(self).rssKiB = %d; want > 0", s.rssKiB)
	}
	if s.cpuTicks == 0 {
		t.Errorf("readProc(self).cpuTicks = 0 after burning CPU (x=%v)", x)
	}
	if _, err := readProc(1 << 30); !errors.Is(err, ErrNoProcess) {
		t.Errorf("readProc(1<<30) error = %v; want ErrNoProcess", err)
	}
}

func TestParseAuxv(t *testing.T) {
	var b []byte
	for _, w := range []uint64{6, 4096, atClockTick, 250, 0, 0} {
		b = binary.NativeEndian.AppendUint64(b, w)
	}
	tests := []struct {
		name   string
		give   []byte
		key    uint64
		want   uint64
		wantOK bool
	}{
		{"clock tick", b, atClockTick, 250, true},
		{"page size", b, 6, 4096, true},
		{"absent", b, 99, 0, false},
		{"after AT_NULL", append(binary.NativeEndian.AppendUint64(binary.NativeEndian.AppendUint64(nil, 0), 0), b...), atClockTick, 0, false},
		{"truncated", b[:12], 6, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseAuxv(tt.give, tt.key)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("parseAuxv(%d) = %d, %v; want %d, %v", tt.key, got, ok, tt.want, tt.wantOK)
			}
		})
	}
	if hz := clockTicks(); hz == 0 || hz > 10000 {
		t.Errorf("clockTicks() = %d; want a plausible USER_HZ", hz)
	}
}

func TestParseMetric(t *testing.T) {
	const expo = `# HELP caddy_whatsapp_calls_underruns_total 20 ms frames played as silence.
# TYPE caddy_whatsapp_calls_underruns_total counter
caddy_whatsapp_calls_underruns_total 17
caddy_whatsapp_calls_underruns_total_extra 5
caddy_whatsapp_calls_total{reason="",result="answered"} 3
caddy_whatsapp_calls_total{reason="x}y",result="missed"} 2
caddy_whatsapp_calls_active 1.5e+00
`
	tests := []struct {
		name      string
		give      string
		metric    string
		want      float64
		wantFound bool
		wantErr   bool
	}{
		{"plain", expo, metricUnderruns, 17, true, false},
		{"labels summed", expo, "caddy_whatsapp_calls_total", 5, true, false},
		{"float", expo, metricActive, 1.5, true, false},
		{"absent", expo, "caddy_whatsapp_calls_missing", 0, false, false},
		{"bad value", "caddy_whatsapp_calls_active abc\n", metricActive, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found, err := parseMetric(strings.NewReader(tt.give), tt.metric)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseMetric(%s) error = %v; wantErr %v", tt.metric, err, tt.wantErr)
			}
			if got != tt.want || found != tt.wantFound {
				t.Errorf("parseMetric(%s) = %v, %v; want %v, %v", tt.metric, got, found, tt.want, tt.wantFound)
			}
		})
	}
}

func TestBuildReport(t *testing.T) {
	results := []callResult{
		{established: true, preAccept: ms(10), accept: ms(100), sent: 1000, nominal: 1000, received: 990, audible: 900,
			rtts: []time.Duration{ms(40), ms(60)}, probesMissed: 1},
		{established: true, preAccept: ms(20), accept: ms(200), sent: 1000, nominal: 1000, received: 1000, audible: 1000,
			dropped: true, reason: "media failed during hold", rtts: []time.Duration{ms(50)}},
		{reason: "no pre_accept"},
		{preAccept: ms(30), reason: "media not connected"},
	}
	before := int64(10_000)
	under := 4.0
	w := window{
		seconds: 10,
		calls:   2,
		target0: procSample{cpuTicks: 1000, rssKiB: 9_000},
		target1: procSample{cpuTicks: 1400, rssKiB: 12_000}, // 4 s of CPU in 10 s
		self0:   procSample{cpuTicks: 0},
		self1:   procSample{cpuTicks: 100},
		ok:      true, haveTarget: true,
	}
	r := buildReport("caddy", results, w, &before, &under, map[string]int{"accept": 2}, 100)
	if r.Calls != 4 || r.Established != 2 || r.Failed != 2 || r.Dropped != 1 {
		t.Errorf("counts = calls %d established %d failed %d dropped %d; want 4 2 2 1", r.Calls, r.Established, r.Failed, r.Dropped)
	}
	if r.Failures["no pre_accept"] != 1 || r.Failures["media failed during hold"] != 1 || len(r.Failures) != 3 {
		t.Errorf("Failures = %v; want one of each of three reasons", r.Failures)
	}
	if r.PreAcceptMS.N != 3 || r.PreAcceptMS.P50 != 20 || r.AcceptMS.N != 2 || r.AcceptMS.P99 != 200 {
		t.Errorf("latencies = %+v / %+v; want pre_accept n 3 p50 20, accept n 2 p99 200", r.PreAcceptMS, r.AcceptMS)
	}
	if r.PacketsSent != 2000 || r.PacketsReceived != 1990 || r.ReceivedRatio != 0.995 {
		t.Errorf("packets = %d/%d ratio %v; want 1990/2000 0.995", r.PacketsReceived, r.PacketsSent, r.ReceivedRatio)
	}
	if want := (Percentiles{N: 3, P50: 50, P90: 60, P99: 60}); r.EchoRTTMS != want || r.EchoProbesMissed != 1 {
		t.Errorf("echo RTT = %+v, %d missed; want %+v, 1 missed", r.EchoRTTMS, r.EchoProbesMissed, want)
	}
	if r.TargetCPUCores == nil || *r.TargetCPUCores != 0.4 || r.CPUCoresPerCall == nil || *r.CPUCoresPerCall != 0.2 {
		t.Errorf("cpu = %v / %v per call; want 0.4 / 0.2", r.TargetCPUCores, r.CPUCoresPerCall)
	}
	if r.RSSPerCallKiB == nil || *r.RSSPerCallKiB != 1000 {
		t.Errorf("RSSPerCallKiB = %v; want (12000-10000)/2 = 1000", r.RSSPerCallKiB)
	}
	if r.LoadCPUCores == nil || *r.LoadCPUCores != 0.1 {
		t.Errorf("LoadCPUCores = %v; want 0.1", r.LoadCPUCores)
	}
	if r.Underruns == nil || *r.Underruns != 4 {
		t.Errorf("Underruns = %v; want 4", r.Underruns)
	}
	for _, want := range []string{"2/4 calls established", "echo RTT ms p50 50.0 p90 60.0 p99 60.0 (3 probes, 1 missed)", "0.20000 cores/call", "1000 KiB/call", "underruns 4"} {
		if h := r.Human(); !strings.Contains(h, want) {
			t.Errorf("Human() = %q; want it to contain %q", h, want)
		}
	}

	noWindow := buildReport("floor", results[:1], window{}, nil, nil, nil, 100)
	if noWindow.CPUCoresPerCall != nil || noWindow.Note == "" || noWindow.Underruns != nil {
		t.Errorf("without a window: cpu %v note %q underruns %v; want nil, a note, nil", noWindow.CPUCoresPerCall, noWindow.Note, noWindow.Underruns)
	}
	b, err := json.Marshal(noWindow)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"underruns":null`)) || !bytes.Contains(b, []byte(`"cpu_cores_per_call":null`)) {
		t.Errorf("JSON %s; want null underruns and cpu_cores_per_call", b)
	}
}

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		give    string
		wantErr bool
	}{
		{"http://127.0.0.1:8080/webhook", false},
		{"http://127.3.4.5/x", false},
		{"http://localhost:2019/metrics", false},
		{"http://[::1]:8080/", false},
		{"http://10.0.0.1:8080/webhook", true},
		{"http://example.com/webhook", true},
		{"http://[::ffff:8.8.8.8]/", true},
		{"ftp://127.0.0.1/", true},
		{"127.0.0.1:8080", true}, // no scheme
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			err := checkLoopbackURL("webhook", tt.give, "http", "https")
			if (err != nil) != tt.wantErr {
				t.Errorf("checkLoopbackURL(%q) = %v; wantErr %v", tt.give, err, tt.wantErr)
			}
		})
	}
	addrs := []struct {
		give    string
		wantErr bool
	}{
		{"127.0.0.1:9300", false},
		{"[::1]:9300", false},
		{"0.0.0.0:9300", true},
		{":9300", true},
		{"192.168.1.2:9300", true},
		{"127.0.0.1", true}, // no port
	}
	for _, tt := range addrs {
		t.Run(tt.give, func(t *testing.T) {
			err := checkLoopbackAddr("graph", tt.give)
			if (err != nil) != tt.wantErr {
				t.Errorf("checkLoopbackAddr(%q) = %v; wantErr %v", tt.give, err, tt.wantErr)
			}
		})
	}
	if err := checkLoopbackURL("webhook", "http://10.0.0.1/", "http"); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("checkLoopbackURL(10.0.0.1) = %v; want ErrNotLoopback", err)
	}
}

func TestParseFlagsRefusesNonLoopback(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
	}{
		{"defaults", nil, false},
		{"remote webhook", []string{"-webhook", "http://203.0.113.5/webhook"}, true},
		{"remote metrics", []string{"-metrics", "http://203.0.113.5:2019/metrics"}, true},
		{"graph on all interfaces", []string{"-graph", "0.0.0.0:9300"}, true},
		{"remote graph-url for echo", []string{"-serve-echo", "127.0.0.1:8081", "-graph-url", "https://graph.facebook.com"}, true},
		{"echo on all interfaces", []string{"-serve-echo", ":8081"}, true},
		{"echo", []string{"-serve-echo", "127.0.0.1:8081", "-udp-port", "3479"}, false},
		{"two modes", []string{"-opus-cost", "-table", "x"}, true},
		{"bad complexity", []string{"-opus-cost", "-complexity", "11"}, true},
		{"zero calls", []string{"-calls", "0"}, true},
		{"stray argument", []string{"extra"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Errorf("parseFlags(%q) error = %v; wantErr %v", tt.args, err, tt.wantErr)
			}
		})
	}
}

func TestWebhooksHaveMetaShape(t *testing.T) {
	now := time.Unix(1749196895, 0)
	body, err := connectWebhook("106540352242922", "wacid.X", "15551234567", "v=0\r\n", now)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"object":"whatsapp_business_account"`, `"field":"calls"`, `"messaging_product":"whatsapp"`,
		`"phone_number_id":"106540352242922"`, `"wa_id":"15551234567"`, `"event":"connect"`, `"timestamp":"1749196895"`,
		`"direction":"USER_INITIATED"`, `"sdp_type":"offer"`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("connect webhook %s; want it to contain %s", body, want)
		}
	}
	hook, err := whatsapp.ParseWebhook(body)
	if err != nil {
		t.Fatal(err)
	}
	evs := hook.CallEvents()
	if len(evs) != 1 || !evs[0].Call.IsConnect() || evs[0].Call.Session.SDP != "v=0\r\n" || evs[0].CallerName != callerName {
		t.Errorf("connect webhook parses to %+v; want one connect with the offer", evs)
	}

	body, err = terminateWebhook("106540352242922", "wacid.X", "15551234567", now, now.Add(24*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	hook, err = whatsapp.ParseWebhook(body)
	if err != nil {
		t.Fatal(err)
	}
	evs = hook.CallEvents()
	if len(evs) != 1 || !evs[0].Call.IsTerminate() || evs[0].Call.Duration != 24 || evs[0].Call.Status != "COMPLETED" {
		t.Errorf("terminate webhook parses to %+v; want one COMPLETED terminate of 24 s", evs)
	}
}

func TestGraphRecordsActions(t *testing.T) {
	now := time.Unix(100, 0)
	g := newGraph(func() time.Time { return now })
	c := g.expect("wacid.A")
	post := func(auth, body string) int {
		req := httptest.NewRequest(http.MethodPost, "/v23.0/123/calls", strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK && rec.Body.String() != `{"success":true}` {
			t.Errorf("body %q; want {\"success\":true}", rec.Body.String())
		}
		return rec.Code
	}
	const bearer = "Bearer t"
	tests := []struct {
		name string
		auth string
		body string
		want int
	}{
		{"no token", "", `{"messaging_product":"whatsapp","call_id":"wacid.A","action":"reject"}`, http.StatusUnauthorized},
		{"offer sdp type", bearer, `{"messaging_product":"whatsapp","call_id":"wacid.A","action":"pre_accept","session":{"sdp_type":"offer","sdp":"x"}}`, http.StatusBadRequest},
		{"unknown action", bearer, `{"messaging_product":"whatsapp","call_id":"wacid.A","action":"ring"}`, http.StatusBadRequest},
		{"pre_accept", bearer, `{"messaging_product":"whatsapp","call_id":"wacid.A","action":"pre_accept","session":{"sdp_type":"answer","sdp":"ans"}}`, http.StatusOK},
		{"second pre_accept", bearer, `{"messaging_product":"whatsapp","call_id":"wacid.A","action":"pre_accept","session":{"sdp_type":"answer","sdp":"ans2"}}`, http.StatusOK},
		{"accept", bearer, `{"messaging_product":"whatsapp","call_id":"wacid.A","action":"accept","session":{"sdp_type":"answer","sdp":"ans"}}`, http.StatusOK},
		{"terminate", bearer, `{"messaging_product":"whatsapp","call_id":"wacid.A","action":"terminate"}`, http.StatusOK},
		{"unknown call", bearer, `{"messaging_product":"whatsapp","call_id":"wacid.B","action":"reject"}`, http.StatusOK},
	}
	for _, tt := range tests {
		if got := post(tt.auth, tt.body); got != tt.want {
			t.Errorf("%s: status %d; want %d", tt.name, got, tt.want)
		}
	}
	if sdp := <-c.preAccept; sdp != "ans" {
		t.Errorf("pre_accept SDP %q; want the first one, ans", sdp)
	}
	for name, ch := range map[string]chan struct{}{"accepted": c.accepted, "ended": c.ended} {
		select {
		case <-ch:
		default:
			t.Errorf("%s not closed", name)
		}
	}
	if pre, acc := g.times(c); !pre.Equal(now) || !acc.Equal(now) {
		t.Errorf("times = %v, %v; want %v", pre, acc, now)
	}
	if a := g.endAction(c); a != actionTerminate {
		t.Errorf("endAction = %q; want terminate", a)
	}
	want := map[string]int{"pre_accept": 2, "accept": 1, "terminate": 1, "reject": 1, "unknown_call": 1}
	got := g.counts()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("counts[%s] = %d; want %d (all %v)", k, got[k], v, got)
		}
	}
}

func TestMarkdownTable(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	i := func(v int64) *int64 { return &v }
	reports := []Report{
		{Kind: kindLoad, Label: labelFloor, Calls: 250, Established: 250, AcceptMS: Percentiles{P50: 200, P99: 300}, ReceivedRatio: 1, CPUCoresPerCall: f(0.002), RSSPerCallKiB: f(100),
			EchoRTTMS: Percentiles{N: 100, P50: 1.2, P99: 3}},
		{Kind: kindLoad, Label: labelCaddy, Calls: 250, Established: 249, AcceptMS: Percentiles{P50: 250, P99: 400}, ReceivedRatio: 0.999,
			EchoRTTMS: Percentiles{N: 100, P50: 41.2, P99: 60}, EchoProbesMissed: 2,
			Underruns: f(3), CPUCoresPerCall: f(0.012), TargetCPUCores: f(2.988), RSSBeforeKiB: i(20_000), RSSSteadyKiB: i(71_200), RSSPerCallKiB: f(205.6),
			Failures: map[string]int{"no accept": 1}},
		{Kind: kindLoad, Label: labelCaddy, Calls: 10, Established: 10, CPUCoresPerCall: f(0.01)},
	}
	opus := &OpusCost{Kind: kindOpusCost, CoresPerCall: 0.004}
	if v, ok := overheadRatio(&reports[1], &reports[0], opus); !ok || math.Abs(v-2) > 1e-9 {
		t.Errorf("overheadRatio = %v, %v; want 0.012/(0.002+0.004) = 2", v, ok)
	}
	if _, ok := overheadRatio(&reports[2], nil, opus); ok {
		t.Error("overheadRatio without a floor run is ok; want not ok")
	}
	out := markdownTable(reports, opus)
	for _, want := range []string{
		"| 10 | 10/10 |",
		"| 250 | 249/250 (floor 250/250) | 250/400 (floor 200/300) | 0.999 (floor 1.000) | 3 | 0.01200 | 0.00200 | 0.00400 | 2.00 | 206 (floor 100) | 41.2/60.0, 2 missed (floor 1.2/3.0) | 20.0 |",
		"| 10 | 10/10 | 0/0 | 0.000 | n/a | 0.01000 | n/a | 0.00400 | n/a | n/a | n/a | n/a |",
		"250-call target: caddy established 249/250, 2.99 cores in total, RSS +50.0 MiB",
		"failures map[no accept:1]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdownTable() =\n%s\nwant it to contain %q", out, want)
		}
	}
	if strings.Index(out, "| 10 |") > strings.Index(out, "| 250 |") {
		t.Errorf("rows not sorted by N:\n%s", out)
	}

	var lines bytes.Buffer
	for _, v := range []any{reports[0], *opus} {
		b, _ := json.Marshal(v)
		lines.Write(b)
		lines.WriteString("\nsome human line\n")
	}
	got, gotOpus, err := readResults(&lines)
	if err != nil || len(got) != 1 || gotOpus == nil || gotOpus.CoresPerCall != 0.004 || got[0].Label != labelFloor {
		t.Errorf("readResults = %v, %v, %v; want the floor report and the opus cost", got, gotOpus, err)
	}
}

func TestSpeechPackets(t *testing.T) {
	pcm := speechPCM(8000, 1)
	var energy float64
	for _, s := range pcm {
		energy += float64(s) * float64(s)
	}
	if rms := math.Sqrt(energy / float64(len(pcm))); rms < 500 {
		t.Errorf("speech RMS %.0f; want audible speech", rms)
	}
	for _, shape := range []caller.Shape{caller.Meta, caller.Pion} {
		packets, err := speechPackets(shape)
		if err != nil {
			t.Fatal(err)
		}
		if len(packets) != speechSeconds*50 {
			t.Errorf("%v: %d packets; want %d", shape, len(packets), speechSeconds*50)
		}
		var audible int
		for _, p := range packets {
			if len(p) > silenceFrameLen {
				audible++
			}
		}
		if audible < len(packets)/2 {
			t.Errorf("%v: %d of %d packets larger than a silence frame; want most", shape, audible, len(packets))
		}
	}
}

func TestChooseWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	var samples []timedSample
	for i := 0; i <= 120; i++ { // every 250 ms for 30 s; CPU grows 1 tick per sample
		samples = append(samples, timedSample{at: at(float64(i) / 4), ok: true,
			target: procSample{cpuTicks: uint64(i), rssKiB: int64(1000 + i)}, self: procSample{cpuTicks: uint64(i / 2)}})
	}
	est := func(setup, stop float64) callResult {
		return callResult{established: true, setupAt: at(setup), stoppedAt: at(stop)}
	}
	failed := func(setup float64) callResult { return callResult{setupAt: at(setup), reason: "no accept"} }
	tests := []struct {
		name             string
		results          []callResult
		wantOK           bool
		wantFrom, wantTo float64
		wantCalls        int
		wantNote         string
	}{
		{"all established", []callResult{est(1, 21), est(3, 23)}, true, 4, 20.5, 2, ""},
		{"late failure moves the start", []callResult{est(1, 21), failed(10), est(3, 23)}, true, 11, 20.5, 2, ""},
		{"failure too late: start after the last established", []callResult{est(1, 21), failed(20), est(3, 23)}, true, 4, 20.5, 2, "failing calls"},
		{"dropped call is not waited for", []callResult{est(1, 21), {established: true, dropped: true, setupAt: at(2), stoppedAt: at(8)}, est(3, 23)}, true, 4, 20.5, 2, ""},
		{"holds do not overlap", []callResult{est(1, 4), est(3, 23)}, false, 0, 0, 0, "no steady-state window"},
		{"nothing established", []callResult{failed(5)}, false, 0, 0, 0, "no call was established"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, note := chooseWindow(tt.results, samples, true)
			if w.ok != tt.wantOK {
				t.Fatalf("chooseWindow ok = %v (note %q); want %v", w.ok, note, tt.wantOK)
			}
			if tt.wantNote != "" && !strings.Contains(note, tt.wantNote) {
				t.Errorf("note %q; want it to contain %q", note, tt.wantNote)
			}
			if tt.wantNote == "" && note != "" {
				t.Errorf("note %q; want none", note)
			}
			if !tt.wantOK {
				return
			}
			wantTicks0, wantTicks1 := uint64(tt.wantFrom*4), uint64(tt.wantTo*4)
			if w.target0.cpuTicks != wantTicks0 || w.target1.cpuTicks != wantTicks1 || w.seconds != tt.wantTo-tt.wantFrom {
				t.Errorf("window = ticks %d..%d over %v s; want %d..%d over %v s",
					w.target0.cpuTicks, w.target1.cpuTicks, w.seconds, wantTicks0, wantTicks1, tt.wantTo-tt.wantFrom)
			}
			if w.calls != tt.wantCalls {
				t.Errorf("window calls = %d; want %d", w.calls, tt.wantCalls)
			}
		})
	}
}

func TestParseUDPRcvbufErrors(t *testing.T) {
	const snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"Udp: 2306012 3237 268549 2578179 268549 0 0 0 0\n" +
		"UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"UdpLite: 0 0 0 0 7 0 0 0 0\n"
	tests := []struct {
		name    string
		give    string
		want    uint64
		wantErr bool
	}{
		{"udp not udplite", snmp, 268549, false},
		{"no udp", "Ip: Forwarding\nIp: 1\n", 0, true},
		{"bad value", "Udp: RcvbufErrors\nUdp: x\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseUDPRcvbufErrors([]byte(tt.give))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseUDPRcvbufErrors = %d, %v; want %d, wantErr %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	if _, err := readUDPRcvbufErrors(); err != nil {
		t.Errorf("readUDPRcvbufErrors() error = %v", err)
	}
}
