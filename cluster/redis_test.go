package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a real redis-server on a loopback port, private to one
// test, with persistence off: a restart loses every key, as a crash of a
// cache-only Redis does.
type redisServer struct {
	tb   testing.TB
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedis starts a redis-server for tb and stops it in tb.Cleanup. It
// skips the test when redis-server is not installed (.ci/run installs it).
func startRedis(tb testing.TB) *redisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Skip("redis-server not installed (apt-get install redis-server); .ci/run installs it")
	}
	s := &redisServer{tb: tb, port: freePort(tb)}
	s.start()
	tb.Cleanup(s.stop)
	return s
}

func (s *redisServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *redisServer) start() {
	s.tb.Helper()
	s.cmd = exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.tb.TempDir())
	s.cmd.Stdout, s.cmd.Stderr = nil, os.Stderr
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("start redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	c := redis.NewClient(&redis.Options{Addr: s.addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server on %s not ready within 10s", s.addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server (SIGKILL: a crash, not a shutdown) and waits for it.
func (s *redisServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

func (s *redisServer) restart() {
	s.stop()
	s.start()
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// recorder collects what a node hands to its callbacks.
type recorder struct {
	node    string
	hangups chan [2]string
	orphans chan orphan
}

type orphan struct {
	by   string
	call Call
}

func newRecorder(node string, orphans chan orphan) *recorder {
	return &recorder{node: node, hangups: make(chan [2]string, 100), orphans: orphans}
}

// newNode builds and starts a node on s; it is closed in t.Cleanup.
func newNode(t *testing.T, s *redisServer, id string, ttl time.Duration, orphans chan orphan) (*Node, *recorder) {
	t.Helper()
	rec := newRecorder(id, orphans)
	n, err := New(Config{
		Addr:     s.addr(),
		NodeID:   id,
		NodeAddr: "127.0.0.1:" + fmt.Sprint(1000+len(id)),
		ClaimTTL: ttl,
		Timeout:  300 * time.Millisecond,
		OnHangup: func(callID, reason string) { rec.hangups <- [2]string{callID, reason} },
		OnOrphan: func(c Call) { rec.orphans <- orphan{by: id, call: c} },
	})
	if err != nil {
		t.Fatalf("New(%s) = %v", id, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n, rec
}
