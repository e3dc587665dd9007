# shellcheck shell=bash
# bench/run held: N concurrent calls on hold music. Sourced by bench/run.
#
# One run = a fresh idgate (release build, temp config, the simulator never answering within
# the run, so every call stays on hold music), an RTP sink (examples/rtp_bench.rs, mode sink)
# that the callers' SDP points at, and SIPp placing N calls that stay up. Once all N streams are
# paced, idgate's CPU, packets, lateness histogram and RSS are read over --seconds. Then idgate
# is stopped and the floor (rtp_bench floor: a minimal paced sendmmsg sender) pushes the same
# packet rate to a fresh sink, one socket per stream like idgate, then once more over a single
# socket (what batching could buy if symmetric RTP allowed shared sockets).

held_usage() {
    cat <<'EOF'
Usage: bench/run held [options]

N concurrent SIP calls on hold music (SIPp callers -> idgate, the simulator never answering),
their RTP received by a sink. Prints a table, then one line:

  held calls=N cpu_per_pkt_us=X floor_us=Y ratio=X/Y p50_ms=A p99_ms=B p999_ms=C gaps=G rss_per_call_kib=R

cpu_per_pkt_us  idgate's CPU (utime+stime, all threads) over the window / RTP packets it sent
floor_us        the same for rtp_bench floor: N streams x 50 pkt/s, 172-byte packets, paced
                like idgate (1 ms window), sendmmsg, one socket per stream (as idgate must)
p50/p99/p999    idgate's own send lateness (deadline -> just before the send) over the
                window, from idgate_rtp_send_lateness_seconds: the upper bound of the bucket
gaps            at the sink, per SSRC over the whole run: packets whose sequence number is not
                the previous + 1, or that arrived > 40 ms after the previous (kernel timestamps)
rss_per_call    (idgate's RSS with N calls - its RSS before the first call) / N

Options:
  --calls N        concurrent calls (default 500)
  --seconds S      the measured window (default 20)
  --rate R         calls set up per second while ramping up (default 200)
  --floor-seconds  how long each floor runs (default: min(S, 10))
  --sinks K        sink sockets the calls are spread over (default 8)
  --rtp-min PORT   first port of idgate's RTP range (default 42000)
  --raw-send       idgate sends through raw sockets in batches ([media] raw_send = true;
                   needs root or CAP_NET_RAW)
  --perf           also profile idgate with perf record -e cpu-clock over the window
  --no-build       use the release binaries as they are
  --keep           keep the temp directory (configs, logs, raw scrapes)
  -h, --help       this text

Needs: sipp (apt-get install sip-tester), curl, ss (iproute2), cargo. Loopback only.
EOF
}

scenario_held() {
    local calls=500 seconds=20 rate=200 floor_seconds="" sinks=8 rtp_min=42000 perf=0
    # shellcheck disable=SC2034 # BENCH_KEEP is read by bench_cleanup (lib.sh)
    while (($#)); do
        case $1 in
        --calls) calls=${2:?--calls needs a number}; shift 2 ;;
        --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
        --rate) rate=${2:?--rate needs a number}; shift 2 ;;
        --floor-seconds) floor_seconds=${2:?}; shift 2 ;;
        --sinks) sinks=${2:?}; shift 2 ;;
        --rtp-min) rtp_min=${2:?}; shift 2 ;;
        --perf) perf=1; shift ;;
        --raw-send) BENCH_MEDIA_EXTRA="raw_send = true"; shift ;;
        --no-build) BENCH_NO_BUILD=1; shift ;;
        --keep) BENCH_KEEP=1; shift ;;
        -h | --help) held_usage; return 0 ;;
        *) held_usage >&2; die "held: unknown option '$1'" ;;
        esac
    done
    floor_seconds=${floor_seconds:-$((seconds < 10 ? seconds : 10))}
    local n
    for n in "$calls" "$seconds" "$rate" "$floor_seconds" "$sinks" "$rtp_min"; do
        [[ $n =~ ^[0-9]+$ ]] || die "held: '$n' is not a whole number"
    done
    ((calls > 0 && seconds > 0 && rate > 0 && sinks > 0 && floor_seconds > 0)) ||
        die "held: --calls, --seconds, --rate, --sinks, --floor-seconds must be positive"
    ((rtp_min + calls * 2 + 200 <= 65000)) || die "held: --calls too many for --rtp-min $rtp_min"

    require_tool sipp sip-tester "SIPp, the callers"
    require_tool curl curl
    require_tool ss iproute2
    ((perf == 0)) || require_tool perf linux-perf "for --perf"
    build_idgate
    held_build_tool
    bench_init
    local dir=$BENCH_TMP
    note "held: $calls calls, ${seconds}s window; work dir $dir"
    note "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

    local sip_port http_port caller_port caller_mp queue_port i
    sip_port=$(free_port)
    http_port=$(free_port)
    caller_port=$(free_port)
    queue_port=$(free_port) # never called: the simulator answers long after the run
    caller_mp=$(free_port_block 4)
    local -a sink_ports=()
    for ((i = 0; i < sinks; i++)); do sink_ports+=("$(free_port)"); done
    local sink_list to_list
    sink_list=$(IFS=,; echo "${sink_ports[*]}")
    to_list=$(printf '127.0.0.1:%s,' "${sink_ports[@]}")
    to_list=${to_list%,}

    held_config "$dir" "$sip_port" "$http_port" "$queue_port" "$rtp_min" "$calls" "$rate"
    {
        echo SEQUENTIAL
        awk -v n="$calls" -v k="$sinks" -v ports="$sink_list" 'BEGIN {
            split(ports, p, ",")
            for (i = 0; i < n; i++) printf "+4671%07d;%s\n", i, p[i % k + 1] }'
    } >"$dir/callers.csv"

    start_idgate "$dir" "$dir/idgate.toml" "$http_port"
    # shellcheck disable=SC2153 # set by start_idgate
    local idgate_pid=$IDGATE_PID
    sleep 1
    local rss_idle
    rss_idle=$(status_kb "$idgate_pid" VmRSS)

    # The sink runs until the window is over (the stop file appears), at most the ramp's
    # allowance, the window and a margin; then it prints its counts.
    local ramp=$((calls / rate + 30))
    local sink_seconds=$((ramp + seconds + 5))
    "$HELD_TOOL" sink --ports "$sink_list" --seconds "$sink_seconds" --stop-file "$dir/sink.stop" \
        >"$dir/sink.out" 2>"$dir/sink.err" &
    local sink_pid=$!
    BENCH_PIDS+=("$sink_pid")

    (cd "$dir" && exec sipp -sf "$BENCH_DIR/sipp/held.xml" -i 127.0.0.1 -nostdin \
        -p "$caller_port" -mp "$caller_mp" -inf callers.csv -s 5000 \
        -r "$rate" -rp 1000 -m "$calls" -l "$calls" -d $(((sink_seconds + 60) * 1000)) \
        -timeout "$((sink_seconds + 120))s" -recv_timeout 20000 \
        -trace_stat -fd 1 -stf caller_stat.csv -trace_err -error_file caller_errors.log \
        "127.0.0.1:$sip_port" >caller.stdout 2>caller.stderr) &
    local caller_pid=$!
    BENCH_PIDS+=("$caller_pid")

    # Wait until idgate paces every call's stream (bounded by the ramp's allowance).
    local paced=0 started
    started=$(date +%s)
    while (($(date +%s) - started < ramp)); do
        curl -fsS -m 2 "http://127.0.0.1:$http_port/metrics" >"$dir/metrics.ramp" 2>/dev/null || true
        paced=$(metric "$dir/metrics.ramp" idgate_media_streams_paced)
        ((${paced%.*} >= calls)) && break
        kill -0 "$caller_pid" 2>/dev/null || break
        sleep 0.5
    done
    paced=${paced%.*}
    ((paced >= calls)) || note "only $paced of $calls calls held after ${ramp}s (see $dir/caller.stdout)"
    ((paced > 0)) || die "no call was held"
    note "$paced calls held after $(($(date +%s) - started))s; settling 2 s, then measuring ${seconds}s"
    sleep 2

    # --- the window -------------------------------------------------------------------------
    scrape_held() { curl -fsS -m 5 "http://127.0.0.1:$http_port/metrics" >"$1" || : >"$1"; }
    scrape_held "$dir/metrics.before"
    thread_ticks "$idgate_pid" >"$dir/threads.before"
    local perf_pid=""
    if ((perf)); then
        # shellcheck disable=SC2086 # the arguments are meant to split
        perf record ${BENCH_PERF_ARGS:--e cpu-clock -F 499 -g} -p "$idgate_pid" -o "$dir/perf.data" \
            >"$dir/perf.stdout" 2>"$dir/perf.stderr" &
        perf_pid=$!
        BENCH_PIDS+=("$perf_pid")
    fi
    local t0 t1 idg0 idg1 sys0 sys1
    sys0=$(sys_ticks)
    idg0=$(cpu_ticks "$idgate_pid")
    t0=$(date +%s%N)
    sleep "$seconds"
    idg1=$(cpu_ticks "$idgate_pid")
    t1=$(date +%s%N)
    sys1=$(sys_ticks)
    scrape_held "$dir/metrics.after"
    thread_ticks "$idgate_pid" >"$dir/threads.after"
    local rss_held
    rss_held=$(status_kb "$idgate_pid" VmRSS)
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$perf_pid" 2>/dev/null || break
            sleep 0.1
        done
        stop_pid "$perf_pid"
        forget_pid "$perf_pid"
        perf report -i "$dir/perf.data" --stdio --no-children --sort dso,symbol 2>/dev/null |
            grep -E '^ +[0-9.]+%' | head -n 40 >"$dir/perf.txt" || true
    fi

    # The sink ends at the stop file; then idgate and the callers go.
    : >"$dir/sink.stop"
    for ((i = 0; i < 50; i++)); do
        kill -0 "$sink_pid" 2>/dev/null || break
        sleep 0.1
    done
    stop_pid "$sink_pid"
    forget_pid "$sink_pid"
    stop_pid "$caller_pid"
    forget_pid "$caller_pid"
    stop_pid "$idgate_pid"
    forget_pid "$idgate_pid"

    # --- the floors: the same packet rate, same machine, right after --------------------------
    held_floor "$dir/floor" "$calls" "$calls" "$floor_seconds" "$sink_list" "$to_list"
    held_floor "$dir/floor1" "$calls" 1 "$floor_seconds" "$sink_list" "$to_list"

    held_report "$dir" "$calls" "$paced" "$seconds" "$idg0" "$idg1" "$t0" "$t1" "$sys0" "$sys1" \
        "$rss_idle" "$rss_held"
}

# held_build_tool: builds examples/rtp_bench (release); sets HELD_TOOL.
held_build_tool() {
    HELD_TOOL=$ROOT_DIR/target/release/examples/rtp_bench
    if [[ ${BENCH_NO_BUILD:-0} == 1 ]]; then
        [[ -x $HELD_TOOL ]] || die "--no-build, but $HELD_TOOL does not exist"
        return 0
    fi
    note "cargo build --release --example rtp_bench"
    (cd "$ROOT_DIR" && cargo build --release --example rtp_bench 2>&1 | tail -n 3 >&2) ||
        [[ -x $HELD_TOOL ]] || die "building examples/rtp_bench failed"
}

# held_config DIR SIP HTTP QUEUE RTP_MIN CALLS RATE: idgate.toml and its dialplan. The simulator
# never answers within a run (an hour), so every call stays on hold music.
held_config() {
    local dir=$1 sip_port=$2 http_port=$3 queue_port=$4 rtp_min=$5 calls=$6 rate=$7
    write_idgate_config "$dir" "$sip_port" "$http_port" "$queue_port" 127.0.0.1/32 \
        "$rtp_min" $((rtp_min + calls * 2 + 200)) "sqlite://$dir/idgate.db" 3600000 \
        $((calls + 1000)) $((rate * 2 + 100))
}

# held_floor DIR STREAMS SOCKETS SECONDS SINK_PORTS TO_LIST: a fresh sink and one floor run;
# DIR.out holds the floor's line, DIR.sink its sink's.
held_floor() {
    local out=$1 streams=$2 sockets=$3 secs=$4 sink_list=$5 to_list=$6
    "$HELD_TOOL" sink --ports "$sink_list" --seconds $((secs + 2)) >"$out.sink" 2>"$out.sink.err" &
    local sink_pid=$!
    BENCH_PIDS+=("$sink_pid")
    sleep 0.3
    timeout -k 5 $((secs + 30)) "$HELD_TOOL" floor --streams "$streams" --sockets "$sockets" \
        --seconds "$secs" --to "$to_list" >"$out.out" 2>"$out.err" || note "floor failed: $(cat "$out.err")"
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$sink_pid" 2>/dev/null || break
        sleep 0.1
    done
    stop_pid "$sink_pid"
    forget_pid "$sink_pid"
}

# held_report DIR CALLS HELD SECONDS IDG0 IDG1 T0 T1 SYS0 SYS1 RSS_IDLE RSS_HELD
held_report() {
    local dir=$1 calls=$2 held=$3 seconds=$4 idg0=$5 idg1=$6 t0=$7 t1=$8 sys0=$9
    local sys1=${10} rss_idle=${11} rss_held=${12}
    local sent not_sent skipped
    sent=$(metric_delta "$dir/metrics.before" "$dir/metrics.after" idgate_rtp_packets_sent_total)
    not_sent=$(metric_delta "$dir/metrics.before" "$dir/metrics.after" idgate_rtp_packets_not_sent_total)
    skipped=$(metric_delta "$dir/metrics.before" "$dir/metrics.after" idgate_rtp_frames_skipped_total)
    local h=idgate_rtp_send_lateness_seconds p50 p99 p999
    p50=$(histogram_quantile "$dir/metrics.before" "$dir/metrics.after" "$h" 0.5)
    p99=$(histogram_quantile "$dir/metrics.before" "$dir/metrics.after" "$h" 0.99)
    p999=$(histogram_quantile "$dir/metrics.before" "$dir/metrics.after" "$h" 0.999)
    local cpu_us wall_ms pps idg_pct
    cpu_us=$(((idg1 - idg0) * 1000000 / CLK_TCK))
    wall_ms=$(((t1 - t0) / 1000000))
    pps=$(awk -v s="$sent" -v w="$wall_ms" 'BEGIN { printf "%.0f", (w > 0) ? s * 1000 / w : 0 }')
    idg_pct=$(awk -v c="$cpu_us" -v w="$wall_ms" 'BEGIN { printf "%.1f", (w > 0) ? c / w / 10 : 0 }')
    local per_pkt floor_us floor_pkts floor1_us ratio rss_per_call busy_pct
    per_pkt=$(awk -v c="$cpu_us" -v s="$sent" 'BEGIN { if (s > 0) printf "%.3f", c / s; else print "-" }')
    floor_us=$(kv "$(cat "$dir/floor.out" 2>/dev/null)" cpu_per_pkt_us)
    floor_pkts=$(kv "$(cat "$dir/floor.out" 2>/dev/null)" packets)
    floor1_us=$(kv "$(cat "$dir/floor1.out" 2>/dev/null)" cpu_per_pkt_us)
    ratio=$(awk -v a="$per_pkt" -v b="$floor_us" 'BEGIN { if (a != "-" && b + 0 > 0) printf "%.2f", a / b; else print "-" }')
    rss_per_call=$(awk -v a="$rss_idle" -v b="$rss_held" -v n="$held" 'BEGIN { printf "%.1f", (n > 0) ? (b - a) / n : 0 }')
    local sysb0 syst0 sysb1 syst1
    read -r sysb0 syst0 <<<"$sys0"
    read -r sysb1 syst1 <<<"$sys1"
    busy_pct=$(awk -v b=$((sysb1 - sysb0)) -v t=$((syst1 - syst0)) 'BEGIN { printf "%.0f", (t > 0) ? b * 100 / t : 0 }')
    local sink gaps floor_sink
    sink=$(cat "$dir/sink.out" 2>/dev/null)
    gaps=$(kv "$sink" gaps)
    floor_sink=$(cat "$dir/floor.sink" 2>/dev/null)

    echo
    printf '%-34s %s\n' \
        "calls held / asked" "$held / $calls" \
        "window" "${seconds} s, $sent packets sent ($pps/s), $not_sent not sent, $skipped frames skipped" \
        "idgate send path" "$(if [[ -n ${BENCH_MEDIA_EXTRA:-} ]]; then echo "raw sockets, sendmmsg (raw_send)"; else echo "sendto per packet on each call's socket"; fi)" \
        "idgate CPU" "${idg_pct}% of one core, ${per_pkt} us per packet" \
        "floor (sendmmsg, 1 socket/stream)" "${floor_us} us per packet ($floor_pkts packets)" \
        "floor (sendmmsg, 1 socket)" "${floor1_us} us per packet" \
        "ratio idgate / floor" "$ratio" \
        "send lateness p50 / p99 / p99.9" "<= ${p50} / ${p99} / ${p999} ms (idgate's histogram)" \
        "sink (idgate)" "${sink#sink }" \
        "sink (floor)" "${floor_sink#sink }" \
        "RSS idle / held / per call" "${rss_idle} / ${rss_held} kB, ${rss_per_call} KiB per call" \
        "machine busy during window" "${busy_pct}% of all cores"
    echo
    echo "idgate threads over the window (CPU ticks):"
    awk 'NR == FNR { b[$1] = $2; next } { printf "  %-20s %6d (%d threads)\n", $1, $2 - b[$1], $3 }' \
        "$dir/threads.before" "$dir/threads.after" | sort -k2 -n -r
    if [[ -s $dir/perf.txt ]]; then
        echo
        echo "perf (idgate, window):"
        head -n 25 "$dir/perf.txt"
    fi
    echo
    echo "held calls=$calls cpu_per_pkt_us=$per_pkt floor_us=$floor_us ratio=$ratio p50_ms=$p50 p99_ms=$p99 p999_ms=$p999 gaps=${gaps:--} rss_per_call_kib=$rss_per_call"
}
