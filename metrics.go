package whatsappcalls

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media"
)

// metrics are the handler's Prometheus collectors, registered in Caddy's
// metrics registry (served by the admin endpoint's /metrics and by the
// metrics handler). The collectors are process-wide so that their counts
// survive config reloads, as live calls do.
type metrics struct {
	active      prometheus.Gauge
	calls       *prometheus.CounterVec
	webhooks    *prometheus.CounterVec
	setup       *prometheus.HistogramVec
	packetsIn   prometheus.Counter
	packetsOut  prometheus.Counter
	packetsLost prometheus.Counter
	underruns   prometheus.Counter
	lateFrames  prometheus.Counter
	botDial     prometheus.Histogram
	buffered    prometheus.Collector
	cluster     *prometheus.CounterVec
}

var (
	globalMetrics     *metrics
	globalMetricsOnce sync.Once
)

const namespace, subsystem = "caddy", "whatsapp_calls"

func newMetrics() *metrics {
	return &metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "active",
			Help: "Calls in progress, from connect webhook to hang-up.",
		}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "total",
			Help: "Calls ended, by result (answered, rejected, missed, failed) and reason.",
		}, []string{"result", "reason"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "webhook_requests_total",
			Help: "Webhook requests, by method and response status code.",
		}, []string{"method", "code"}),
		setup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "setup_seconds",
			Help:    "Time from the connect webhook to each setup stage: answer_ready (answer SDP built and bot dialed), pre_accept, media_connected.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15},
		}, []string{"stage"}),
		packetsIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "packets_received_total",
			Help: "RTP audio packets received from callers, counted at call end.",
		}),
		packetsOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "packets_sent_total",
			Help: "RTP audio packets sent to callers, counted at call end.",
		}),
		packetsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "packets_lost_total",
			Help: "RTP audio packets from callers that never arrived, counted at call end.",
		}),
		underruns: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "underruns_total",
			Help: "Gaps of at most 100 ms in the bot's audio mid-speech, played as silence; counted at call end.",
		}),
		lateFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "late_frames_total",
			Help: "20 ms send slots toward callers skipped because the send loop ran late (a stalled scheduler), counted at call end; no bot audio is dropped, it plays later.",
		}),
		botDial: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "bot_dial_seconds",
			Help:    "Time to open the bot WebSocket, retries included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 3},
		}),
		buffered: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "playout_buffered_seconds",
			Help: "Bot audio queued for callers, summed over live calls, at scrape time.",
		}, bufferedSeconds),
		cluster: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "cluster_events_total",
			Help: "Cluster events on this node: hangup_forwarded (to a call's owner), hangup_received (from another node), event_forwarded and event_received (answer and status webhooks of business-initiated calls), orphan_ended (a lost node's call terminated toward Meta), redis_unavailable (a connect answered without Redis).",
		}, []string{"event"}),
	}
}

// bufferedSeconds sums the playout buffer depth of every live call.
func bufferedSeconds() float64 {
	var ms int
	registries.Range(func(_, v any) bool {
		for _, s := range v.(*registry).sessions() {
			ms += s.Stats().BufferedMs
		}
		return true
	})
	return float64(ms) / 1000
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.active, m.calls, m.webhooks, m.setup, m.botDial, m.buffered,
		m.packetsIn, m.packetsOut, m.packetsLost, m.underruns, m.lateFrames, m.cluster,
	}
}

// loadMetrics registers the process-wide collectors in reg (a registry of
// one Caddy config) and returns them.
func loadMetrics(reg prometheus.Registerer) *metrics {
	globalMetricsOnce.Do(func() { globalMetrics = newMetrics() })
	if reg != nil {
		for _, c := range globalMetrics.collectors() {
			var already prometheus.AlreadyRegisteredError
			if err := reg.Register(c); err != nil && !errors.As(err, &already) {
				// Only a programming error (an invalid descriptor) lands here.
				panic(err)
			}
		}
	}
	return globalMetrics
}

func (m *metrics) webhook(method string, status int) {
	if m == nil {
		return
	}
	m.webhooks.WithLabelValues(sanitizeMethod(method), strconv.Itoa(status)).Inc()
}

// methods are the HTTP methods that get their own metric label; any other
// is counted as OTHER, so that made-up methods cannot create series
// without bound. It is the list of Caddy's own metrics (its
// internal/metrics.SanitizeMethod), which this copies because that
// package is internal.
var methods = map[string]string{
	"GET": http.MethodGet, "get": http.MethodGet,
	"HEAD": http.MethodHead, "head": http.MethodHead,
	"PUT": http.MethodPut, "put": http.MethodPut,
	"POST": http.MethodPost, "post": http.MethodPost,
	"DELETE": http.MethodDelete, "delete": http.MethodDelete,
	"CONNECT": http.MethodConnect, "connect": http.MethodConnect,
	"OPTIONS": http.MethodOptions, "options": http.MethodOptions,
	"TRACE": http.MethodTrace, "trace": http.MethodTrace,
	"PATCH": http.MethodPatch, "patch": http.MethodPatch,
}

// sanitizeMethod returns the metric label of an HTTP method.
func sanitizeMethod(m string) string {
	if v, ok := methods[m]; ok {
		return v
	}
	return "OTHER"
}

func (m *metrics) callStarted() {
	if m == nil {
		return
	}
	m.active.Inc()
}

// callEnded counts a call that ended; calls rejected over capacity never
// started, so they do not touch the active gauge.
func (m *metrics) callEnded(result, reason string, st media.Stats) {
	if m == nil {
		return
	}
	if reason != "over_capacity" {
		m.active.Dec()
	}
	m.calls.WithLabelValues(result, reason).Inc()
	m.packetsIn.Add(float64(st.PacketsIn))
	m.packetsOut.Add(float64(st.PacketsOut))
	m.packetsLost.Add(float64(st.PacketsLost))
	m.underruns.Add(float64(st.Underruns))
	m.lateFrames.Add(float64(st.LateFrames))
}

func (m *metrics) clusterEvent(event string) {
	if m == nil {
		return
	}
	m.cluster.WithLabelValues(event).Inc()
}

func (m *metrics) observeSetup(stage string, d time.Duration) {
	if m == nil {
		return
	}
	m.setup.WithLabelValues(stage).Observe(d.Seconds())
}

func (m *metrics) observeBotDial(d time.Duration) {
	if m == nil {
		return
	}
	m.botDial.Observe(d.Seconds())
}
