package whatsappcalls

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckICEAddresses(t *testing.T) {
	addrs := func(s ...string) func() ([]netip.Addr, error) {
		return func() ([]netip.Addr, error) {
			var out []netip.Addr
			for _, a := range s {
				out = append(out, netip.MustParseAddr(a))
			}
			return out, nil
		}
	}
	loopbackOnly := addrs("127.0.0.1", "::1")
	tests := []struct {
		name     string
		networks []string
		host     func() ([]netip.Addr, error)
		wantErr  []string // every one must be in the error; nil: no error
	}{
		{"a LAN address", nil, addrs("127.0.0.1", "192.168.1.5"), nil},
		{"loopback only", nil, loopbackOnly, []string{"has no address but loopback (127.0.0.1, ::1)", "ice_networks 127.0.0.0/8", "public_ip", "network interface"}},
		{"loopback only, loopback networks", []string{"127.0.0.0/8"}, loopbackOnly, nil},
		{"IPv6 link-local only", nil, addrs("127.0.0.1", "fe80::1"), []string{"has no address but loopback"}},
		{"networks match nothing", []string{"10.0.0.0/8"}, addrs("192.168.1.5"), []string{"inside ice_networks [10.0.0.0/8]", "192.168.1.5"}},
		{"networks match", []string{"192.168.0.0/16"}, addrs("10.1.1.1", "192.168.1.5"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			networks, err := parseNetworks(tt.networks)
			if err != nil {
				t.Fatal(err)
			}
			err = checkICEAddresses(networks, tt.host)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("checkICEAddresses = %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("checkICEAddresses = nil; want an error with %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("checkICEAddresses = %q; want it to contain %q", err, want)
				}
			}
		})
	}
}
