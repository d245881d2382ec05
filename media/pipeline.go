package media

import (
	"context"

	"github.com/pion/rtp"

	"github.com/whatsappcalls/caddy-whatsapp-calls/media/bot"
)

const (
	// hangoverFrames is how many frames of encoded silence follow the bot's
	// audio before the pre-encoded silence frame takes over: the encoder ends
	// the utterance smoothly, and short underruns stay inside one encoded
	// stream.
	hangoverFrames = 5
	// maxConceal48 is the longest gap in the caller's stream, in 48 kHz RTP
	// ticks, that is filled with concealment (PLC, FEC) before the next
	// packet is decoded. A gap of up to a second is loss or DTX (a caller
	// that stops sending during silence: the bot still needs that silence for
	// its voice activity detection); a longer jump is a discontinuity and is
	// not filled.
	maxConceal48 = RTPClockRate // 1 s
	// maxSeqJump is the largest sequence number jump counted as loss (20 s
	// of packets); a larger one is a restarted stream (see reorder).
	maxSeqJump = 1000
)

// outbound turns the playout buffer into one Opus payload per 20 ms tick.
type outbound struct {
	enc     Encoder
	playout *Playout[bot.Mark]
	silence []byte  // the pre-encoded silence packet, no wider than the encoder's bandwidth
	pcm     []int16 // one frame
	buf     []byte  // encoded packet
	quiet   int     // consecutive ticks without bot audio
}

// newOutbound returns the outbound pipeline from p through enc. silence is
// the pre-encoded silence packet sent while the bot is quiet (see
// silenceFrame): its bandwidth must not exceed the encoder's.
func newOutbound(enc Encoder, p *Playout[bot.Mark], silence []byte) *outbound {
	return &outbound{
		enc:     enc,
		playout: p,
		silence: silence,
		pcm:     make([]int16, p.FrameSamples()),
		buf:     make([]byte, MaxOpusPacket),
		quiet:   hangoverFrames + 1,
	}
}

// next returns the payload for this tick and appends the marks that are now
// due to due. The payload is valid until the next call.
//
// Bot audio is encoded. For a few ticks after it stops, encoded silence
// follows; after that the pre-encoded silence frame is sent, and the encoder
// is reset before the bot's next utterance so that it starts from the same
// blank state as the caller's decoder, which has been decoding silence.
func (o *outbound) next(due []bot.Mark) ([]byte, []bot.Mark) {
	ok, due := o.playout.Pop(o.pcm, due)
	switch {
	case ok:
		if o.quiet > hangoverFrames {
			if r, isResetter := o.enc.(interface{ Reset() }); isResetter {
				r.Reset()
			}
		}
		o.quiet = 0
	case o.quiet < hangoverFrames:
		o.quiet++
		clear(o.pcm)
	default:
		o.quiet = hangoverFrames + 1
		return o.silence, due
	}
	n, err := o.enc.Encode(o.pcm, o.buf)
	if err != nil || n == 0 {
		// Nothing sensible to send but silence; the next frame retries.
		return o.silence, due
	}
	return o.buf[:n], due
}

// audioWriter is where decoded caller audio goes, one 20 ms frame at a
// time with its media time (ms since the caller's stream started, from the
// RTP timestamps): the callerPath's frame queue.
type audioWriter interface {
	WriteAudioAt(ctx context.Context, pcm []int16, ms int64) error
}

// inbound decodes the caller's Opus straight to the bot's rate, conceals
// losses, and writes 20 ms frames with their media time.
type inbound struct {
	dec   Decoder
	w     audioWriter
	rate  int
	frame int
	acc   []int16 // decoded audio not yet written; len < frame between calls
	dtmf  DTMFDecoder

	tsStarted bool
	nextTS    uint32 // RTP timestamp at which the next Opus packet should start
	baseTS    uint32 // RTP timestamp of the stream's first sample
	accTS     uint32 // RTP timestamp of acc[0]
}

func newInbound(dec Decoder, rate int, w audioWriter) *inbound {
	frame := rate * frameMs / 1000
	return &inbound{
		dec:   dec,
		w:     w,
		rate:  rate,
		frame: frame,
		acc:   make([]int16, 0, frame+rate*maxOpusDuration/1000),
	}
}

// opus handles one Opus RTP packet; lost says that packets went missing just
// before it. It returns an error only when writing to the bot failed.
func (in *inbound) opus(ctx context.Context, pkt *rtp.Packet, lost bool) error {
	payload := pkt.Payload
	if len(payload) == 0 {
		return nil
	}
	if !in.tsStarted {
		in.baseTS, in.accTS = pkt.Timestamp, pkt.Timestamp
	} else if gap := int32(pkt.Timestamp - in.nextTS); gap > 0 && gap <= maxConceal48 {
		if err := in.conceal(ctx, payload, int(gap), lost); err != nil {
			return err
		}
	} else if gap > maxConceal48 {
		// A pause of over a second is not filled: the media time the bot
		// sees jumps with it. (A jump back, an overlap or a restarted
		// stream, keeps the media time going forward.)
		in.accTS += uint32(gap)
	}
	n, err := in.dec.Decode(payload, in.acc[len(in.acc):cap(in.acc)])
	if err != nil {
		// A corrupt packet: the next packet's timestamp gap conceals it.
		return nil
	}
	in.tsStarted = true
	in.nextTS = pkt.Timestamp + uint32(n*RTPClockRate/in.rate)
	in.acc = in.acc[:len(in.acc)+n]
	return in.flush(ctx)
}

// conceal fills a gap of gap48 ticks (48 kHz) before a packet with payload:
// packet loss concealment, and in-band FEC from payload for the last lost
// frame when packets were lost (a gap without loss is the sender's DTX).
func (in *inbound) conceal(ctx context.Context, payload []byte, gap48 int, lost bool) error {
	quantum := in.rate / 400 // 2.5 ms, the Opus granularity
	samples := gap48 * in.rate / RTPClockRate
	samples -= samples % quantum
	fec := 0
	if lost {
		// DecodeFEC recovers the frame just before payload from its LBRR
		// data (or conceals it if there is none), and conceals the rest of
		// the last 120 ms of the gap before it.
		fec = min(samples, in.rate*maxOpusDuration/1000)
	}
	for plc := samples - fec; plc > 0; {
		k := min(plc, in.frame)
		n, err := in.dec.Decode(nil, in.acc[len(in.acc):len(in.acc)+k])
		if err != nil {
			break
		}
		in.acc = in.acc[:len(in.acc)+n]
		plc -= k
		if err := in.flush(ctx); err != nil {
			return err
		}
	}
	if fec > 0 {
		n, err := in.dec.DecodeFEC(payload, in.acc[len(in.acc):len(in.acc)+fec])
		if err == nil {
			in.acc = in.acc[:len(in.acc)+n]
		}
		if err := in.flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

// flush writes every whole frame in acc to the bot and keeps the rest.
func (in *inbound) flush(ctx context.Context) error {
	off := 0
	for len(in.acc)-off >= in.frame {
		ms := int64(in.accTS-in.baseTS) * 1000 / RTPClockRate
		if err := in.w.WriteAudioAt(ctx, in.acc[off:off+in.frame], ms); err != nil {
			in.acc = in.acc[:0]
			return err
		}
		off += in.frame
		in.accTS += uint32(in.frame * RTPClockRate / in.rate)
	}
	if off > 0 {
		k := copy(in.acc, in.acc[off:])
		in.acc = in.acc[:k]
	}
	return nil
}
