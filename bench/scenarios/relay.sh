# shellcheck shell=bash
# bench/run relay: N concurrent bridged calls relaying RTP both ways. Sourced by bench/run.
#
# One run = examples/rtp_relay_load.rs: idgate's media engine (the same `idgate::media`
# streams, relay and pump `idgate serve` runs, on a tokio runtime of its own) with N caller
# legs put on hold music and then bridged to N queue legs; two far-end sockets (callers' side,
# queues' side) send G.711 at 50 packets/s per direction, staggered across the 20 ms frame, and
# read what comes out. First a floor phase sends the same packets straight between the two
# sockets (loopback and the tools on their own), then the relay phase goes through idgate.
# No SIP: call setup is measured by `bench/run setup`; this measures the media path alone.

relay_usage() {
    cat <<'USAGE'
Usage: bench/run relay [options]

N concurrent bridged calls (caller leg on hold, then bridged to a queue leg) relaying G.711
both ways at 50 pkt/s per direction through idgate's media engine. Prints a table, then one
line:

  relay calls=N loss=L p99_added_ms=D

loss          packets sent by the far ends minus packets received at the far ends (0 is the
              target), over the relay phase plus 500 ms for stragglers
p99_added_ms  p99 one-way latency through the relay minus p99 of the floor (the same packets
              straight between the two sockets), in ms (10 us buckets; 0 when the relay's p99
              is below the floor's, i.e. within the noise)

Table columns: sent, received, lost, latency p50/p99/p99.9/max (ms), late (sender ticks more
than 5 ms late: the load itself starved of CPU), ssrc / jumps (per idgate leg at the sink: SSRC
changes and sequence numbers that are not the previous + 1; both 0 when the relay keeps each
leg one continuous stream and nothing is lost or reordered). Then the engine's CPU (its
runtime threads) per relayed packet.

Options:
  --calls N          concurrent calls (default 1000)
  --seconds S        seconds of relayed RTP (default 10)
  --floor-seconds F  seconds of the floor (default: min(S, 5))
  --rtp-min PORT     first port of the engine's RTP range, 4 ports per call (default 42000)
  --workers W        the engine runtime's worker threads (default 2)
  --no-build         use target/release/examples/rtp_relay_load as it is
  --keep             keep the temp directory (the load's output)
  -h, --help         this text

Needs: cargo. Loopback only; one process, stopped on exit.
USAGE
}

scenario_relay() {
    local calls=1000 seconds=10 floor_seconds="" rtp_min=42000 workers=2
    # shellcheck disable=SC2034 # BENCH_KEEP is read by bench_cleanup (lib.sh)
    while (($#)); do
        case $1 in
        --calls) calls=${2:?--calls needs a number}; shift 2 ;;
        --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
        --floor-seconds) floor_seconds=${2:?}; shift 2 ;;
        --rtp-min) rtp_min=${2:?}; shift 2 ;;
        --workers) workers=${2:?}; shift 2 ;;
        --no-build) BENCH_NO_BUILD=1; shift ;;
        --keep) BENCH_KEEP=1; shift ;;
        -h | --help) relay_usage; return 0 ;;
        *) relay_usage >&2; return 2 ;;
        esac
    done
    local n
    for n in "$calls" "$seconds" "$rtp_min" "$workers" ${floor_seconds:+"$floor_seconds"}; do
        [[ $n =~ ^[0-9]+$ ]] || die "not a number: $n"
    done
    ((rtp_min + 4 * calls + 64 <= 65535)) || die "--rtp-min $rtp_min leaves no room for $calls calls"
    bench_init
    local bin=$ROOT_DIR/target/release/examples/rtp_relay_load
    relay_build "$bin"
    # Four sockets per call (RTP and RTCP of two legs) plus the load's own.
    local need=$((4 * calls + 256))
    if (($(ulimit -n) < need)); then
        ulimit -n "$need" 2>/dev/null || die "needs $need open files; ulimit -n allows $(ulimit -n)"
    fi
    local floor=${floor_seconds:-$((seconds < 5 ? seconds : 5))}
    local limit=$((floor + seconds + 60 + calls / 50))
    note "relay: $calls calls, floor ${floor} s, relay ${seconds} s (at most ${limit} s)"
    local args=(--calls "$calls" --seconds "$seconds" --floor-seconds "$floor"
        --rtp-min "$rtp_min" --workers "$workers")
    timeout -k 5 "$limit" "$bin" "${args[@]}" >"$BENCH_TMP/relay.out" 2>"$BENCH_TMP/relay.log" &
    local pid=$!
    BENCH_PIDS+=("$pid")
    local rc=0
    wait "$pid" || rc=$?
    forget_pid "$pid"
    if ((rc != 0)); then
        tail -n 20 "$BENCH_TMP/relay.log" >&2
        die "rtp_relay_load failed (exit $rc; log above)"
    fi
    cat "$BENCH_TMP/relay.out"
}

# relay_build BIN: cargo build --release --example rtp_relay_load (retried: others edit the
# tree), unless --no-build.
relay_build() {
    local bin=$1 attempt
    if [[ ${BENCH_NO_BUILD:-0} == 1 ]]; then
        [[ -x $bin ]] || die "--no-build, but $bin does not exist"
        return 0
    fi
    require_tool cargo "cargo (or https://rustup.rs)" "to build the load"
    for attempt in 1 2 3; do
        note "cargo build --release --example rtp_relay_load (attempt $attempt)"
        if (cd "$ROOT_DIR" && cargo build --release --example rtp_relay_load 2>&1 | tail -n 3 >&2) &&
            [[ -x $bin ]]; then
            return 0
        fi
        note "build failed; retrying in 30 s"
        sleep 30
    done
    [[ -x $bin ]] || die "cargo build --release --example rtp_relay_load failed"
    note "build still failing; using the existing $bin"
}
