package whatsappcalls

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media"
)

func TestMetricsCallEndedCounters(t *testing.T) {
	m := newMetrics()
	st := media.Stats{PacketsIn: 50, PacketsOut: 49, PacketsLost: 1, Underruns: 2, LateFrames: 3}
	m.callStarted()
	m.callEnded(resultAnswered, "", st)
	m.callEnded(resultRejected, "over_capacity", media.Stats{LateFrames: 4})

	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"packets received", value(t, m.packetsIn), 50},
		{"packets sent", value(t, m.packetsOut), 49},
		{"packets lost", value(t, m.packetsLost), 1},
		{"underruns", value(t, m.underruns), 2},
		{"late frames", value(t, m.lateFrames), 7},
		{"answered", value(t, m.calls.WithLabelValues(resultAnswered, "")), 1},
		{"over capacity", value(t, m.calls.WithLabelValues(resultRejected, "over_capacity")), 1},
		{"active: over capacity never started", value(t, m.active), 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v; want %v", tt.name, tt.got, tt.want)
		}
	}
}

// value reads the current value of a counter or gauge.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s is neither a counter nor a gauge", c.Desc())
	return 0
}
