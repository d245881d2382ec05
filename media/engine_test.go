package media

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestNewEngineErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  EngineConfig
	}{
		{name: "complexity 11", cfg: EngineConfig{OpusComplexity: 11}},
		{name: "complexity -2", cfg: EngineConfig{OpusComplexity: -2}},
		{name: "negative grace", cfg: EngineConfig{DisconnectGrace: -time.Second}},
		{name: "public ip not an ip", cfg: EngineConfig{PublicIPs: []string{"example.com"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewEngine(tt.cfg); err == nil {
				t.Errorf("NewEngine(%+v) error = nil; want an error", tt.cfg)
			}
		})
	}
}

func TestNewEngineDefaults(t *testing.T) {
	e, err := NewEngine(EngineConfig{OpusComplexity: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.grace != DefaultDisconnectGrace {
		t.Errorf("grace = %v; want %v", e.grace, DefaultDisconnectGrace)
	}
	for _, tt := range []struct{ rate, want int }{{8000, 1}, {16000, 1}, {24000, 5}} {
		if got := e.complexityFor(tt.rate); got != tt.want {
			t.Errorf("complexityFor(%d) = %d; want %d", tt.rate, got, tt.want)
		}
	}
}

func TestIPFilter(t *testing.T) {
	nets := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16")}
	tests := []struct {
		give string
		want bool
	}{
		{give: "127.0.0.1", want: true},
		{give: "10.1.2.3", want: true},
		{give: "10.2.0.1", want: false},
		{give: "192.168.1.1", want: false},
		{give: "::1", want: false},
		{give: "::ffff:10.1.0.9", want: true},
	}
	keep := ipFilter(nets)
	for _, tt := range tests {
		if got := keep(net.ParseIP(tt.give)); got != tt.want {
			t.Errorf("ipFilter(%q) = %v; want %v", tt.give, got, tt.want)
		}
	}
	if !hasLoopback(nets) || hasLoopback(nets[1:]) {
		t.Error("hasLoopback misjudges 127.0.0.0/8 or 10.1.0.0/16")
	}
}

func TestNewUDPMuxErrors(t *testing.T) {
	tests := []struct {
		name     string
		port     int
		networks []netip.Prefix
	}{
		{name: "port out of range", port: 70000},
		{name: "no address in networks", port: 0, networks: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux, err := NewUDPMux(tt.port, tt.networks, nil)
			if err == nil {
				_ = mux.Close()
				t.Errorf("NewUDPMux(%d, %v) error = nil; want an error", tt.port, tt.networks)
			}
		})
	}
}
