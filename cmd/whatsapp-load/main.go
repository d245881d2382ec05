// Command whatsapp-load puts a whatsapp_calls target under call load on
// loopback. It plays WhatsApp: Meta's signed call webhooks, the Graph API
// that receives pre_accept/accept/reject/terminate, and the ICE-lite media
// servers (internal/caller) that send Opus at the real 20 ms pace.
//
// It has four modes.
//
// Load (the default) runs -calls concurrent calls against -webhook, their
// starts spread over -ramp. Each call makes an ICE-lite offer (with -caller
// meta, the default, Meta's captured offer shape and 16 kHz 20 kbit/s Opus
// with RTCP reports; -caller pion, the first release's pion offer and 48 kHz
// 32 kbit/s Opus), posts a
// signed connect webhook, applies the answer the target sends with
// pre_accept to the fake Graph API hosted at -graph, waits for connected
// media and accept, sends pre-encoded audio (encoded once at startup with
// gopus, replayed from one shared 20 ms ticker) for -duration, then posts a
// terminate webhook. The audio loops every 4 s: 1 s of silence, then 3 s of
// speech that starts loud; each onset is a latency probe, timed from sending
// it to receiving the first echoed packet that decodes loud (the round-trip
// echo latency, reported as percentiles). It reports calls established and failed, setup latency
// percentiles (webhook to pre_accept, webhook to accept), the received /
// sent packet ratio of the echoed audio, underruns (the increase of
// caddy_whatsapp_calls_underruns_total at -metrics, when given), and, with
// -pid, the target's CPU seconds per call-second and RSS per call over the
// steady-state window in which every call streams.
//
//	whatsapp-load -calls 50 -ramp 2s -duration 20s -pid $(pgrep -n caddy) \
//		-metrics http://127.0.0.1:2019/metrics -label caddy -json
//
// -serve-echo ADDR runs the baseline target, the transport floor: a plain
// pion answerer that speaks the same webhook and Graph protocol (signature
// check, a=setup:active answer, pre_accept, accept on connected media,
// terminate) and echoes every RTP packet it receives. Compare whatsapp_calls
// with it in the same run.
//
//	whatsapp-load -serve-echo 127.0.0.1:8081 -graph-url http://127.0.0.1:9300
//
// -opus-cost measures in-process the CPU cost of what a call in the twilio
// dialect transcodes every 20 ms: decode one caller packet (of the -caller
// shape) straight to 8 kHz and encode one 8 kHz frame, with the media package's codec at its default
// complexity (or -complexity). It prints ns per frame and cores per call.
//
// -table FILE reads the JSON lines of earlier runs (labels "caddy" and
// "floor", and an -opus-cost line) and prints the markdown table of
// bench/run.sh.
//
// Every target, listen address and URL must be on loopback (127.0.0.0/8,
// ::1 or localhost); others are refused. With -json the human line is
// followed by one JSON line.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "whatsapp-load:", err)
		os.Exit(1)
	}
}

// options are the parsed command line.
type options struct {
	load       loadConfig
	echo       echoConfig
	jsonOut    bool
	verbose    bool
	opusCost   bool
	complexity int
	frames     int
	table      string
}

// parseFlags parses and validates args.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("whatsapp-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// Load.
	fs.StringVar(&o.load.Webhook, "webhook", "http://127.0.0.1:8080/webhook", "target's webhook `URL` (loopback only)")
	fs.StringVar(&o.load.GraphAddr, "graph", "127.0.0.1:9300", "listen `address` of the fake Graph API the target calls (its graph_url)")
	fs.StringVar(&o.load.MetricsURL, "metrics", "", "target's Prometheus `URL`, e.g. http://127.0.0.1:2019/metrics, for underruns and drain; empty: none")
	fs.StringVar(&o.load.AppSecret, "app-secret", "load-test-secret", "app `secret` that signs the webhooks (the target's app_secret)")
	fs.StringVar(&o.load.PhoneNumberID, "phone-number-id", "100000000000001", "business phone number `id` in the webhooks")
	fs.StringVar(&o.load.Label, "label", "target", "`name` of the target in the report (bench/run.sh uses caddy and floor)")
	fs.IntVar(&o.load.Calls, "calls", 10, "`number` of concurrent calls")
	fs.DurationVar(&o.load.Ramp, "ramp", 2*time.Second, "spread call starts evenly over this `duration`")
	fs.DurationVar(&o.load.Hold, "duration", 20*time.Second, "how long each call streams audio once established")
	fs.DurationVar(&o.load.SetupTimeout, "setup-timeout", 20*time.Second, "budget from the connect webhook to accept")
	fs.DurationVar(&o.load.Drain, "drain", 10*time.Second, "after the run, wait this long at most for the target's active calls to drop (with -metrics)")
	fs.IntVar(&o.load.PID, "pid", 0, "target `pid` whose CPU (/proc/<pid>/stat) and VmRSS are measured; 0: none")
	fs.BoolVar(&o.jsonOut, "json", false, "also print the result as one JSON line")
	shape := fs.String("caller", caller.Meta.String(), "shape of the callers: meta (WhatsApp's offer, ICE-lite, 16 kHz 20 kbit/s Opus, RTCP reports) or pion (the first release's pion offer, 48 kHz 32 kbit/s); also for -opus-cost")
	// Echo floor.
	fs.StringVar(&o.echo.Listen, "serve-echo", "", "run the baseline echo target with its webhook on this `address` instead of a load")
	fs.StringVar(&o.echo.GraphURL, "graph-url", "http://127.0.0.1:9300", "with -serve-echo: Graph API base `URL` (loopback only)")
	fs.StringVar(&o.echo.GraphVersion, "graph-version", "v23.0", "with -serve-echo: Graph API `version`")
	fs.StringVar(&o.echo.AccessToken, "access-token", "load-test-token", "with -serve-echo: Graph API bearer `token`")
	fs.IntVar(&o.echo.UDPPort, "udp-port", 0, "with -serve-echo: one UDP `port` on 127.0.0.1 for every call's media; 0: a port per call")
	fs.BoolVar(&o.verbose, "v", false, "with -serve-echo: log each failed call")
	// Opus cost.
	fs.BoolVar(&o.opusCost, "opus-cost", false, "measure Opus decode (48k->8k) + encode (8k) CPU per 20 ms frame instead of a load")
	fs.IntVar(&o.complexity, "complexity", -1, "with -opus-cost: encoder complexity 0-10; -1: the media package's default")
	fs.IntVar(&o.frames, "frames", 3000, "with -opus-cost: 20 ms `frames` to measure")
	// Table.
	fs.StringVar(&o.table, "table", "", "print the markdown bench table of the JSON lines in `file` (- for stdin)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: whatsapp-load [-calls N -ramp D -duration D -pid PID ...] | -serve-echo ADDR | -opus-cost | -table FILE")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.load.Caller, err = caller.ParseShape(*shape); err != nil {
		return o, fmt.Errorf("-caller: %w", err)
	}
	o.echo.AppSecret = o.load.AppSecret
	o.echo.SetupTimeout = o.load.SetupTimeout
	o.echo.MaxBodyBytes = 1 << 20

	modes := 0
	for _, on := range []bool{o.echo.Listen != "", o.opusCost, o.table != ""} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		return o, errors.New("-serve-echo, -opus-cost and -table exclude each other")
	}
	switch {
	case o.opusCost:
		if o.complexity < -1 || o.complexity > 10 {
			return o, fmt.Errorf("-complexity %d: want -1..10", o.complexity)
		}
		if o.frames <= 0 {
			return o, fmt.Errorf("-frames %d: want a positive number", o.frames)
		}
	case o.table != "":
	case o.echo.Listen != "":
		if err := checkLoopbackAddr("serve-echo", o.echo.Listen); err != nil {
			return o, err
		}
		if err := checkLoopbackURL("graph-url", o.echo.GraphURL, "http", "https"); err != nil {
			return o, err
		}
		if o.echo.UDPPort < 0 || o.echo.UDPPort > 65535 {
			return o, fmt.Errorf("-udp-port %d: want 0..65535", o.echo.UDPPort)
		}
		if o.load.AppSecret == "" {
			return o, errors.New("-app-secret must not be empty")
		}
	default:
		if err := checkLoopbackURL("webhook", o.load.Webhook, "http", "https"); err != nil {
			return o, err
		}
		if err := checkLoopbackAddr("graph", o.load.GraphAddr); err != nil {
			return o, err
		}
		if o.load.MetricsURL != "" {
			if err := checkLoopbackURL("metrics", o.load.MetricsURL, "http", "https"); err != nil {
				return o, err
			}
		}
		if o.load.Calls <= 0 {
			return o, fmt.Errorf("-calls %d: want a positive number", o.load.Calls)
		}
		if o.load.Ramp < 0 || o.load.Hold <= 0 || o.load.SetupTimeout <= 0 || o.load.Drain < 0 {
			return o, errors.New("-ramp and -drain must not be negative; -duration and -setup-timeout must be positive")
		}
		if o.load.PID < 0 {
			return o, fmt.Errorf("-pid %d: want a process id", o.load.PID)
		}
		if o.load.AppSecret == "" {
			return o, errors.New("-app-secret must not be empty")
		}
	}
	return o, nil
}

// run parses args and runs the selected mode.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	switch {
	case o.table != "":
		in := io.Reader(os.Stdin)
		if o.table != "-" {
			f, err := os.Open(o.table)
			if err != nil {
				return fmt.Errorf("-table: %w", err)
			}
			defer f.Close()
			in = f
		}
		reports, opus, err := readResults(in)
		if err != nil {
			return fmt.Errorf("-table: %w", err)
		}
		_, err = io.WriteString(stdout, markdownTable(reports, opus))
		return err
	case o.opusCost:
		c, err := measureOpusCost(o.frames, o.complexity, o.load.Caller)
		if err != nil {
			return err
		}
		return emit(stdout, c.Human(), c, o.jsonOut)
	case o.echo.Listen != "":
		o.echo.Logger = log.New(stderr, "", log.LstdFlags)
		o.echo.Verbose = o.verbose
		return serveEcho(ctx, o.echo)
	default:
		rep, err := runLoad(ctx, o.load, stderr)
		if err != nil {
			return err
		}
		return emit(stdout, rep.Human(), rep, o.jsonOut)
	}
}

// emit prints the human line and, with asJSON, a JSON line.
func emit(w io.Writer, human string, v any, asJSON bool) error {
	if _, err := fmt.Fprintln(w, human); err != nil {
		return err
	}
	if !asJSON {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
