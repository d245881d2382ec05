// Package redistest runs a real redis-server for tests: one process per
// test, on a free loopback port, with persistence off, stopped in the
// test's cleanup.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is one redis-server process. A restart keeps the port and loses
// every key, as a crash of a cache-only Redis does.
type Server struct {
	tb       testing.TB
	port     int
	password string
	cmd      *exec.Cmd
	done     chan struct{}
}

// Start starts a redis-server for tb and stops it in tb.Cleanup. A
// non-empty password is required of clients (requirepass). It skips the
// test when redis-server is not installed, unless REQUIRE_REDIS_SERVER is
// set (as .ci/run does, having installed it): then the test fails.
func Start(tb testing.TB, password string) *Server {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("REQUIRE_REDIS_SERVER") != "" {
			tb.Fatal("redis-server not installed, and REQUIRE_REDIS_SERVER is set")
		}
		tb.Skip("redis-server not installed (apt-get install redis-server); .ci/run installs it")
	}
	s := &Server{tb: tb, port: FreePort(tb), password: password}
	s.Restart()
	tb.Cleanup(s.Stop)
	return s
}

// Addr returns the server's host:port on loopback.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Restart starts the server again if it is stopped, and waits until it
// answers PING.
func (s *Server) Restart() {
	s.tb.Helper()
	if s.cmd != nil {
		return
	}
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.tb.TempDir(), "--loglevel", "warning"}
	if s.password != "" {
		args = append(args, "--requirepass", s.password)
	}
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("start redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	deadline := time.Now().Add(10 * time.Second)
	for !s.ping() {
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server on %s not ready within 10s", s.Addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping reports whether the server answers a PING (after AUTH).
func (s *Server) ping() bool {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	r := bufio.NewReader(c)
	if s.password != "" {
		fmt.Fprintf(c, "AUTH %s\r\n", s.password)
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			return false
		}
	}
	fmt.Fprint(c, "PING\r\n")
	line, err := r.ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// Stop kills the server (SIGKILL: a crash, not a shutdown) and waits for
// it to exit. It is a no-op on a stopped server.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
