package media

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// tickSink is the bot side of a callerPath under test: every frame with its
// media time, and how many frames each tick delivered.
type tickSink struct {
	pcm     [][]int16
	ms      []int64
	perTick []int
}

func (s *tickSink) WriteAudioAt(_ context.Context, pcm []int16, ms int64) error {
	s.pcm = append(s.pcm, append([]int16(nil), pcm...))
	s.ms = append(s.ms, ms)
	s.perTick[len(s.perTick)-1]++
	return nil
}

// arrival is one packet reaching the RTP reader at a time (ms after the
// first packet was sent).
type arrival struct {
	pkt int // index into the packets
	at  int // ms
}

// runPath feeds arrivals to a callerPath, ticking it on each arrival as the
// RTP reader does, and every 20 ms (at 10, 30, 50... ms) as deliverLoop
// does, for ticks ticks; it returns what the bot got. perTick[k] counts the
// frames delivered in the 20 ms up to tick k.
func runPath(t *testing.T, pkts []rtp.Packet, arrivals []arrival, ticks int) (*tickSink, *callerPath) {
	t.Helper()
	dec, err := NewOpusDecoder(8000)
	if err != nil {
		t.Fatal(err)
	}
	sink := &tickSink{}
	cp := newCallerPath(dec, 8000, sink, nil)
	t0 := time.Unix(1000, 0)
	next := 0
	for k := range ticks {
		now := t0.Add(time.Duration(10+20*k) * time.Millisecond)
		for next < len(arrivals) && t0.Add(time.Duration(arrivals[next].at)*time.Millisecond).Compare(now) <= 0 {
			a := arrivals[next]
			raw, err := pkts[a.pkt].Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if len(sink.perTick) == k {
				sink.perTick = append(sink.perTick, 0)
			}
			at := t0.Add(time.Duration(a.at) * time.Millisecond)
			if cp.ro.push(pkts[a.pkt].SequenceNumber, payloadOpus, 0, raw, at) {
				if err := cp.tick(context.Background(), at, true); err != nil {
					t.Fatal(err)
				}
			}
			next++
		}
		if len(sink.perTick) == k {
			sink.perTick = append(sink.perTick, 0)
		}
		if err := cp.tick(context.Background(), now, false); err != nil {
			t.Fatal(err)
		}
	}
	return sink, cp
}

// onTime returns arrivals for packets idx..., each 20 ms after the last,
// 1 ms after it was sent.
func onTime(n int) []arrival {
	a := make([]arrival, n)
	for i := range a {
		a[i] = arrival{pkt: i, at: 20*i + 1}
	}
	return a
}

// reference decodes the packets in order, every one received, frame by
// frame: what the bot should get when nothing goes wrong.
func reference(t *testing.T, pkts []rtp.Packet) [][]int16 {
	t.Helper()
	sink, _ := runPath(t, pkts, onTime(len(pkts)), len(pkts)+3)
	return sink.pcm
}

func contiguous(ms []int64) bool {
	for i, m := range ms {
		if m != int64(20*i) {
			return false
		}
	}
	return true
}

func TestJitterBuffer(t *testing.T) {
	const n = 40
	pkts := callerPackets(t, tone(callerRate, n*callerFrame, 0, 440, 8000), 20)
	want := reference(t, pkts)
	if len(want) != n {
		t.Fatalf("reference run gave %d frames; want %d", len(want), n)
	}

	t.Run("on time: one frame per tick, media time from the RTP clock", func(t *testing.T) {
		sink, cp := runPath(t, pkts, onTime(n), n)
		for k, c := range sink.perTick {
			if c != 1 {
				t.Fatalf("tick %d delivered %d frames; want 1 every tick", k, c)
			}
		}
		if !contiguous(sink.ms) || cp.lost != 0 {
			t.Errorf("media times %v, lost %d; want 0, 20, 40... and no loss", sink.ms, cp.lost)
		}
	})

	t.Run("reordered within the window: restored, nothing lost", func(t *testing.T) {
		a := onTime(n)
		a[10].pkt, a[11].pkt = 11, 10 // 11 arrives first
		a[20].pkt, a[22].pkt = 22, 20 // 40 ms late
		sink, cp := runPath(t, pkts, a, n+3)
		if !reflect.DeepEqual(sink.pcm, want) {
			t.Errorf("bot audio differs from the in-order decode")
		}
		if !contiguous(sink.ms) || cp.lost != 0 || cp.ro.late != 0 {
			t.Errorf("media times %v, lost %d, late %d; want contiguous, no loss", sink.ms, cp.lost, cp.ro.late)
		}
		for k, c := range sink.perTick {
			if c > 3 {
				t.Errorf("tick %d delivered %d frames; want at most 3", k, c)
			}
		}
	})

	t.Run("duplicates dropped", func(t *testing.T) {
		a := onTime(n)
		a = append(a[:16:16], append([]arrival{{pkt: 15, at: 20*15 + 5}, {pkt: 3, at: 20*15 + 6}}, a[16:]...)...)
		sink, cp := runPath(t, pkts, a, n+3)
		if !reflect.DeepEqual(sink.pcm, want) {
			t.Errorf("bot audio differs from the in-order decode")
		}
		if cp.ro.dups+cp.ro.late != 2 || cp.lost != 0 {
			t.Errorf("dups %d late %d lost %d; want the two repeats dropped, nothing lost", cp.ro.dups, cp.ro.late, cp.lost)
		}
	})

	t.Run("one packet lost: concealed from the next one's FEC, time kept", func(t *testing.T) {
		a := onTime(n)
		a = append(a[:12:12], a[13:]...)
		sink, cp := runPath(t, pkts, a, n+4)
		// Packets 13 and 14 wait for 12; packet 15 (at 301 ms, 40 ms after
		// 13) gives it up: 12 (concealed) to 15 go out together.
		if got := sink.perTick[12:18]; !reflect.DeepEqual(got, []int{0, 0, 0, 4, 1, 1}) {
			t.Errorf("ticks 12-17 delivered %v frames; want [0 0 0 4 1 1]", got)
		}
		if len(sink.pcm) != n || !contiguous(sink.ms) {
			t.Fatalf("bot got %d frames at %v; want %d contiguous: the lost one concealed", len(sink.pcm), sink.ms, n)
		}
		if cp.lost != 1 {
			t.Errorf("lost = %d; want 1", cp.lost)
		}
		for i := range sink.pcm {
			if i != 12 && !reflect.DeepEqual(sink.pcm[i], want[i]) && i < 12 {
				t.Errorf("frame %d before the loss differs", i)
			}
		}
		if a := goertzel(sink.pcm[12], 8000, 440); a < 2000 {
			t.Errorf("concealed frame has 440 Hz at %.0f; want the tone carried on (FEC/PLC), not silence", a)
		}
	})

	t.Run("burst loss: PLC, time kept", func(t *testing.T) {
		a := onTime(n)
		a = append(a[:20:20], a[24:]...) // 4 lost
		sink, cp := runPath(t, pkts, a, n+4)
		if len(sink.pcm) != n || !contiguous(sink.ms) || cp.lost != 4 {
			t.Errorf("bot got %d frames at %v, lost %d; want %d contiguous frames, 4 lost", len(sink.pcm), sink.ms, cp.lost, n)
		}
	})

	t.Run("bursty arrival: delivered as it arrives, in order", func(t *testing.T) {
		a := onTime(n)
		for i := 10; i < 15; i++ {
			a[i].at = 20*14 + 2 // five packets held up, arriving together
		}
		sink, cp := runPath(t, pkts, a, n+3)
		if !reflect.DeepEqual(sink.pcm, want) || !contiguous(sink.ms) || cp.lost != 0 {
			t.Fatalf("bot got %d frames, lost %d; want the in-order audio, nothing lost", len(sink.pcm), cp.lost)
		}
		// In-order packets go to the bot as they arrive: the burst is not
		// held back (no added latency), and the ticks before it had nothing.
		if got := sink.perTick[10:16]; !reflect.DeepEqual(got, []int{0, 0, 0, 0, 5, 1}) {
			t.Errorf("ticks 10-15 delivered %v frames; want [0 0 0 0 5 1]", got)
		}
	})

	t.Run("a real gap shows as a jump in media time", func(t *testing.T) {
		gapped := make([]rtp.Packet, n)
		copy(gapped, pkts)
		for i := 20; i < n; i++ {
			gapped[i].Timestamp += 2 * RTPClockRate // the caller paused 2 s (DTX)
		}
		a := onTime(n)
		for i := 20; i < n; i++ {
			a[i].at += 2000
		}
		sink, _ := runPath(t, gapped, a, n+105)
		if len(sink.ms) != n {
			t.Fatalf("bot got %d frames; want %d (a 2 s pause is not filled)", len(sink.ms), n)
		}
		if sink.ms[19] != 380 || sink.ms[20] != 2400 {
			t.Errorf("media time around the pause = %d, %d; want 380, 2400", sink.ms[19], sink.ms[20])
		}
	})
}
