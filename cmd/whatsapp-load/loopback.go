package main

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// isLoopbackHost reports whether host (no port, brackets allowed) is a
// loopback IP literal or "localhost".
func isLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// checkLoopbackURL returns an error wrapping ErrNotLoopback unless raw is an
// absolute URL with one of schemes whose host is on loopback. flag names the
// option in the error.
func checkLoopbackURL(flag, raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("-%s %q: %w", flag, raw, err)
	}
	ok := false
	for _, s := range schemes {
		if u.Scheme == s {
			ok = true
		}
	}
	if !ok {
		return fmt.Errorf("-%s %q: scheme must be one of %s", flag, raw, strings.Join(schemes, ", "))
	}
	if !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("-%s %q: host %q: %w (only 127.0.0.0/8, ::1 or localhost may be targets)", flag, raw, u.Hostname(), ErrNotLoopback)
	}
	return nil
}

// checkLoopbackAddr returns an error wrapping ErrNotLoopback unless hostport
// is host:port with a loopback host. flag names the option in the error.
func checkLoopbackAddr(flag, hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("-%s %q: %w", flag, hostport, err)
	}
	if !isLoopbackHost(host) {
		return fmt.Errorf("-%s %q: host %q: %w (only 127.0.0.0/8, ::1 or localhost may be used)", flag, hostport, host, ErrNotLoopback)
	}
	return nil
}
