#!/usr/bin/env bash
# bench/run.sh: load whatsapp_calls with N concurrent WhatsApp calls and
# compare it with the transport floor (a plain pion RTP echo answerer) in
# the same run. Everything runs on loopback. Needs Go and bash.
#
#   bench/run.sh                 # N = 20 100 250, Opus and PCMU passthrough
#   NS="10 50" PCMU_NS= bench/run.sh  # other call counts, no PCMU rows
#
# Environment:
#   NS       call counts to run with Opus; empty: none (default "20 100 250")
#   PCMU_NS  call counts to run with PCMU passthrough: the callers also
#            offer PCMU (as WhatsApp does with additional_codecs), the
#            floor echoes PCMU, Caddy answers PCMU (default: NS)
#   HOLD     seconds each call streams audio     (default 20)
#   RAMP_MS  milliseconds of ramp per call       (default 20: 200 calls start over 4 s)
#   CADDY_UDP_PORT  whatsapp_calls udp_port; 0 = a port per call (default 3478)
#   FLOOR_UDP_PORT  the floor's shared UDP port; 0 = a port per call (default 3479)
#   CALLER   the callers' shape: meta (WhatsApp's captured offer, ICE-lite,
#            16 kHz 20 kbit/s Opus, RTCP reports) or pion (the first
#            release's pion offer, 48 kHz 32 kbit/s)  (default meta)
#   KEEP=1   keep the temp dir (binaries, Caddyfile, logs, results.jsonl)
#   PROFILE=1  take a 10 s CPU profile of Caddy in each N's steady state
#            (from the admin endpoint's /debug/pprof/profile; needs curl)
#            and print its top functions (go tool pprof -top)
#
# For each N it starts the echo floor and runs the load against it, then
# starts Caddy (whatsapp_calls; the built-in echo bot runs in a second Caddy
# process, so that its CPU is not counted) and runs the same
# load, each target freshly started so that RSS per call is measured from a
# clean process. It prints a markdown table (see cmd/whatsapp-load -table).
#
# Every call probes its echo latency every 4 s (1 s of silence, then loud
# speech; the time to the first loud echoed packet). The echo bot's delay
# is 1 ms (the smallest it accepts), so that (caddy RTT p50 - floor RTT p50)/2
# is the latency whatsapp_calls adds per direction.
set -euo pipefail

NS=${NS-"20 100 250"}
PCMU_NS=${PCMU_NS-$NS}
HOLD=${HOLD:-20}
RAMP_MS=${RAMP_MS:-20}
CALLER=${CALLER:-meta}

APP_SECRET=bench-app-secret
PHONE_NUMBER_ID=100000000000001
WEBHOOK_PORT=8080
FLOOR_PORT=8081
BOT_PORT=8082
ADMIN_PORT=2019
GRAPH_ADDR=127.0.0.1:9300
CADDY_UDP_PORT=${CADDY_UDP_PORT:-3478}
FLOOR_UDP_PORT=${FLOOR_UDP_PORT:-3479}

cd "$(dirname "$0")/.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/whatsapp-bench.XXXXXX")
results=$tmp/results.jsonl
: >"$results"

declare -a pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [[ ${KEEP:-0} == 1 ]]; then
		echo "kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench: $*" >&2; }

# wait_port PORT: wait up to 15 s for a TCP listener on 127.0.0.1:PORT.
wait_port() {
	local i
	for ((i = 0; i < 150; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	log "nothing listens on 127.0.0.1:$1 after 15 s"
	return 1
}

# stop PID: SIGTERM, then SIGKILL after 10 s; forget the pid.
stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	local keep=() p
	for p in "${pids[@]}"; do
		[[ $p == "$pid" ]] || keep+=("$p")
	done
	pids=("${keep[@]}")
}

# bounded CMD...: run CMD with a time limit when coreutils timeout exists.
bounded() {
	if command -v timeout >/dev/null; then
		timeout --signal=INT --kill-after=10 "$LIMIT" "$@"
	else
		"$@"
	fi
}

log "building into $tmp"
go build -o "$tmp/caddy" ./cmd/whatsapp-demo
go build -o "$tmp/whatsapp-load" ./cmd/whatsapp-load
load=$tmp/whatsapp-load

cat >"$tmp/Caddyfile" <<EOF
{
	admin 127.0.0.1:$ADMIN_PORT
	persist_config off
	metrics
	log {
		output file $tmp/caddy.log
	}
}

http://127.0.0.1:$WEBHOOK_PORT {
	bind 127.0.0.1
	whatsapp_calls /webhook {
		app_secret {env.WL_APP_SECRET}
		verify_token bench-verify-token
		access_token bench-access-token
		phone_number_ids $PHONE_NUMBER_ID
		bot ws://127.0.0.1:$BOT_PORT/bot
		graph_url http://$GRAPH_ADDR
		ice_networks 127.0.0.0/8
		udp_port $CADDY_UDP_PORT
		max_calls 1000
	}
}
EOF

# The echo bot runs in a Caddy process of its own, as a user's bot runs
# elsewhere: the CPU measured for whatsapp_calls is its own.
cat >"$tmp/bot.Caddyfile" <<EOF
{
	admin off
	persist_config off
}

http://127.0.0.1:$BOT_PORT {
	bind 127.0.0.1
	whatsapp_bot /bot {
		mode echo
		delay 1ms
	}
}
EOF
export WL_APP_SECRET=$APP_SECRET
# Keep Caddy's autosave and data out of the home directory.
export XDG_CONFIG_HOME=$tmp/config XDG_DATA_HOME=$tmp/data

"$tmp/caddy" validate --config "$tmp/Caddyfile" --adapter caddyfile >"$tmp/validate.log" 2>&1 || {
	cat "$tmp/validate.log" >&2
	exit 1
}

"$tmp/caddy" run --config "$tmp/bot.Caddyfile" --adapter caddyfile >"$tmp/bot.stdout" 2>&1 &
botpid=$!
pids+=("$botpid")
wait_port "$BOT_PORT"

log "measuring the Opus transcoding cost"
"$load" -opus-cost -caller "$CALLER" -json >"$tmp/opus.out"
head -n1 "$tmp/opus.out" >&2
tail -n1 "$tmp/opus.out" >>"$results"

# run_load LABEL PORT PID N [extra flags]: one load run, appended to results.
run_load() {
	local label=$1 port=$2 pid=$3 n=$4
	shift 4
	local ramp=$((n * RAMP_MS))ms out=$tmp/$label-$n.out
	LIMIT=$((HOLD + n * RAMP_MS / 1000 + 90))s
	if ! bounded "$load" -calls "$n" -ramp "$ramp" -duration "${HOLD}s" -pid "$pid" \
		-webhook "http://127.0.0.1:$port/webhook" -graph "$GRAPH_ADDR" \
		-app-secret "$APP_SECRET" -phone-number-id "$PHONE_NUMBER_ID" \
		-label "$label" -caller "$CALLER" -json "$@" >"$out" 2>"$tmp/$label-$n.err"; then
		log "$label N=$n: load failed"
		cat "$tmp/$label-$n.err" >&2
		return 1
	fi
	head -n1 "$out" >&2
	tail -n1 "$out" >>"$results"
}

# run_pair N CODEC: the floor and then Caddy at N calls; CODEC is opus or
# pcmu (the callers offer PCMU too, the floor echoes PCMU).
run_pair() {
	local n=$1 codec=$2 suffix="" pcmu=()
	if [[ $codec == pcmu ]]; then
		suffix=-pcmu
		pcmu=(-pcmu)
	fi
	log "N=$n $codec: floor (pion echo)"
	"$load" -serve-echo "127.0.0.1:$FLOOR_PORT" -graph-url "http://$GRAPH_ADDR" \
		-app-secret "$APP_SECRET" -udp-port "$FLOOR_UDP_PORT" "${pcmu[@]}" -v 2>"$tmp/floor$suffix-$n.log" &
	floor=$!
	pids+=("$floor")
	wait_port "$FLOOR_PORT"
	run_load "floor$suffix" "$FLOOR_PORT" "$floor" "$n" "${pcmu[@]}" || true
	stop "$floor"

	log "N=$n $codec: caddy (whatsapp_calls; echo bot in another process)"
	"$tmp/caddy" run --config "$tmp/Caddyfile" --adapter caddyfile >"$tmp/caddy$suffix-$n.stdout" 2>&1 &
	caddy=$!
	pids+=("$caddy")
	wait_port "$ADMIN_PORT"
	wait_port "$WEBHOOK_PORT"
	prof=""
	if [[ ${PROFILE:-0} == 1 ]]; then
		(
			sleep $((n * RAMP_MS / 1000 + 3))
			curl -fsS -o "$tmp/caddy$suffix-$n.pprof" "http://127.0.0.1:$ADMIN_PORT/debug/pprof/profile?seconds=10"
		) &
		prof=$!
	fi
	run_load "caddy$suffix" "$WEBHOOK_PORT" "$caddy" "$n" -bot-pid "$botpid" "${pcmu[@]}" \
		-metrics "http://127.0.0.1:$ADMIN_PORT/metrics" || true
	if [[ -n $prof ]]; then
		wait "$prof" || log "N=$n: no profile"
		if [[ -s $tmp/caddy$suffix-$n.pprof ]]; then
			log "N=$n $codec: CPU profile of caddy (top 40)"
			go tool pprof -top -nodecount=40 "$tmp/caddy" "$tmp/caddy$suffix-$n.pprof" >&2 2>/dev/null || true
			go tool pprof -top -cum -nodecount=60 "$tmp/caddy" "$tmp/caddy$suffix-$n.pprof" >"$tmp/caddy$suffix-$n.cum" 2>/dev/null || true
		fi
	fi
	stop "$caddy"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
for n in $NS; do
	run_pair "$n" opus
done
for n in $PCMU_NS; do
	run_pair "$n" pcmu
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')

echo
echo "whatsapp_calls vs the pion echo floor, $CALLER callers, ${HOLD} s per call, ramp ${RAMP_MS} ms/call, $(nproc 2>/dev/null || echo '?') CPUs, load average $load_before before and $load_after after"
echo
"$load" -table "$results"
