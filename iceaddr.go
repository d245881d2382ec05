package whatsappcalls

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// localAddrs returns the addresses of the host's interfaces that are up. A
// variable so that tests can play a loopback-only host.
var localAddrs = func() ([]netip.Addr, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				out = append(out, p.Addr().Unmap())
			}
		}
	}
	return out, nil
}

// checkICEAddresses fails, saying what to set, when the host has no address
// that ICE would gather a candidate from: pion leaves loopback out unless
// ice_networks names a loopback network, gathers only inside ice_networks
// when it is set, and never uses IPv6 link-local addresses. Without a
// candidate every call would be rejected with no hint of the cause.
func checkICEAddresses(networks []netip.Prefix, addrs func() ([]netip.Addr, error)) error {
	all, err := addrs()
	if err != nil {
		return fmt.Errorf("ice: list network interfaces: %w", err)
	}
	loopback := hasLoopbackNetwork(networks)
	for _, a := range all {
		if a.IsLinkLocalUnicast() && a.Is6() {
			continue
		}
		if a.IsLoopback() && !loopback {
			continue
		}
		if len(networks) > 0 && !inNetworks(a, networks) {
			continue
		}
		return nil
	}
	have := make([]string, 0, len(all))
	for _, a := range all {
		have = append(have, a.String())
	}
	if len(networks) > 0 {
		return fmt.Errorf("ice: no address of this host (%s) is inside ice_networks %v, so calls would have no ICE candidate: "+
			"set ice_networks to a network of this host (127.0.0.0/8 ::1/128 for callers on this machine)",
			strings.Join(have, ", "), networks)
	}
	return fmt.Errorf("ice: this host has no address but loopback (%s), which ICE leaves out, so calls would have no ICE candidate: "+
		"bring up a network interface (and set public_ip if the host is behind NAT), "+
		"or set ice_networks 127.0.0.0/8 ::1/128 for callers on this machine, as a local demo or test has",
		strings.Join(have, ", "))
}

func inNetworks(a netip.Addr, networks []netip.Prefix) bool {
	for _, p := range networks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hasLoopbackNetwork reports whether any prefix is a loopback network, as
// media.EngineConfig.Networks reads them.
func hasLoopbackNetwork(networks []netip.Prefix) bool {
	for _, p := range networks {
		if p.Addr().Unmap().IsLoopback() {
			return true
		}
	}
	return false
}
