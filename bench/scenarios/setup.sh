# shellcheck shell=bash
# bench/run setup: call set-up rate through the whole flow. Sourced by bench/run.
#
# One run = a fresh idgate (release build, temp config, SQLite in the run's directory or the
# PostgreSQL given with --postgres), a SIPp agent queue, optionally the Kamailio edge proxy, and
# a SIPp caller at --cps for --seconds. Each call: INVITE -> idgate answers (200) -> directory
# lookup (not a customer) -> simulator push by phone number, approved after --delay-ms ->
# verdict -> B2BUA INVITE to the queue with the identity headers -> bridged -> the caller hangs
# up after --hold-ms -> idgate hangs up the queue leg.

setup_usage() {
    cat <<'EOF'
Usage: bench/run setup [options]

Calls per second through the whole flow: SIPp caller -> [Kamailio edge] -> idgate (answer,
simulator verdict, B2BUA hand-off) -> SIPp queue. Prints a table, then one line per run:

  setup cps=N calls=C failed=F p50_ms=A p99_ms=B via=... (more key=value fields)

p50/p99 are INVITE -> 200 OK as the SIPp caller measured it (rtd, per call, 1 ms resolution).
failed = calls that did not complete on both sides: requested - min(caller ok, queue ok).

Options:
  --cps N             calls per second (default 500)
  --seconds S         seconds of traffic per run (default 10): S*N calls
  --via LIST          comma-separated: direct, kamailio, floor; "both" = direct,kamailio
                      (default both). floor: the SIPp caller straight to the SIPp queue, no
                      idgate: what SIPp itself adds to the times, and its own CPU
  --repeat K          runs per configuration; the table adds their median (default 2)
  --ramp [LIST]       instead of one rate, step through LIST (default 100,200,300,500,700),
                      --seconds each, and report where failures or p99 > --target-p99-ms start
  --target-p99-ms MS  the p99 INVITE->200 target (default 20)
  --hold-ms MS        how long each caller stays after the answer (default 1000)
  --warmup S          before measuring, S seconds of calls at min(cps, 100)/s, not counted
                      (default 2; 0: none): idgate's SQLite pool opens its connections on
                      demand, and the first second after a start is slower
  --delay-ms MS       the simulator's verdict delay (default 20; hints are never sent)
  --postgres URL      use this PostgreSQL database instead of a temp SQLite file
  --db-dir DIR        put the SQLite file in DIR (e.g. /dev/shm: no disk flush per commit,
                      to see what the database's fsyncs cost); default: the run's temp dir
  --rtp-min PORT      first port of idgate's RTP range (default 42000; sized per run)
  --perf              also profile idgate with `perf record -e cpu-clock` during the traffic
                      and print its top functions (perf from linux-perf; needs
                      kernel.perf_event_paranoid <= 2 for your own processes)
  --no-build          use target/release/idgate as it is
  --keep              keep the temp directory (configs, logs, SIPp data) and print its path
  -h, --help          this text

Needs: sipp (apt-get install sip-tester), kamailio for --via kamailio|both (apt-get install
kamailio), curl, ss (iproute2). Loopback only (127.0.0.1; Kamailio on 127.0.0.2).
EOF
}

scenario_setup() {
    local cps=500 seconds=10 via=both repeat=2 ramp="" target_p99=20 hold_ms=1000 delay_ms=20
    local postgres="" rtp_min=42000
    SETUP_DB_DIR=""
    SETUP_WARMUP=2
    SETUP_PERF=0
    while (($#)); do
        case $1 in
        --cps) cps=${2:?--cps needs a number}; shift 2 ;;
        --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
        --via) via=${2:?--via needs direct, kamailio or both}; shift 2 ;;
        --repeat) repeat=${2:?--repeat needs a number}; shift 2 ;;
        --ramp)
            if [[ ${2:-} =~ ^[0-9]+(,[0-9]+)*$ ]]; then ramp=$2; shift 2; else ramp=100,200,300,500,700; shift; fi ;;
        --target-p99-ms) target_p99=${2:?}; shift 2 ;;
        --hold-ms) hold_ms=${2:?}; shift 2 ;;
        --delay-ms) delay_ms=${2:?}; shift 2 ;;
        --postgres) postgres=${2:?--postgres needs a URL}; shift 2 ;;
        --db-dir) SETUP_DB_DIR=${2:?--db-dir needs a directory}; shift 2 ;;
        --warmup) SETUP_WARMUP=${2:?--warmup needs seconds}; shift 2 ;;
        --rtp-min) rtp_min=${2:?}; shift 2 ;;
        --no-build) BENCH_NO_BUILD=1; shift ;;
        --perf) SETUP_PERF=1; shift ;;
        --keep) BENCH_KEEP=1; shift ;;
        -h | --help) setup_usage; return 0 ;;
        *) setup_usage >&2; die "setup: unknown option '$1'" ;;
        esac
    done
    local n
    for n in "$cps" "$seconds" "$repeat" "$target_p99" "$hold_ms" "$delay_ms" "$rtp_min" "$SETUP_WARMUP"; do
        [[ $n =~ ^[0-9]+$ ]] || die "setup: '$n' is not a whole number"
    done
    ((cps > 0 && seconds > 0 && repeat > 0)) || die "setup: --cps, --seconds and --repeat must be positive"
    local -a vias=()
    local w
    for w in ${via//,/ }; do
        case $w in
        direct | kamailio | floor) vias+=("$w") ;;
        both) vias+=(direct kamailio) ;;
        *) die "setup: --via takes direct, kamailio, floor or both (comma-separated)" ;;
        esac
    done
    ((${#vias[@]})) || die "setup: --via is empty"

    require_tool sipp sip-tester "SIPp, the caller and the queue"
    require_tool curl curl
    require_tool ss iproute2
    [[ " ${vias[*]} " != *" kamailio "* ]] || require_tool kamailio kamailio "the edge proxy"
    [[ $SETUP_PERF == 0 ]] || require_tool perf linux-perf "for --perf"
    build_idgate
    bench_init
    SETUP_RESULTS=$BENCH_TMP/results.txt
    : >"$SETUP_RESULTS"

    local -a rates
    if [[ -n $ramp ]]; then
        IFS=, read -ra rates <<<"$ramp"
    else
        rates=("$cps")
    fi
    local total_runs=$((${#vias[@]} * ${#rates[@]} * repeat)) run=0 rate v k
    note "$total_runs run(s) of ${seconds}s; work dir $BENCH_TMP"
    note "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    for ((k = 1; k <= repeat; k++)); do
        for rate in "${rates[@]}"; do
            for v in "${vias[@]}"; do
                run=$((run + 1))
                note "run $run/$total_runs: via=$v cps=$rate (repeat $k)"
                setup_run "$run" "$v" "$rate" "$seconds" "$hold_ms" "$delay_ms" "$postgres" "$rtp_min"
            done
        done
    done

    setup_report "$target_p99" "$ramp" "${vias[*]}" "${rates[*]}"
}

# setup_run N VIA CPS SECONDS HOLD_MS DELAY_MS POSTGRES RTP_MIN: one run; appends its result
# line to $SETUP_RESULTS and prints it.
setup_run() {
    local run=$1 via=$2 cps=$3 seconds=$4 hold_ms=$5 delay_ms=$6 postgres=$7 rtp_min=$8
    local dir=$BENCH_TMP/run$run-$via-$cps
    mkdir -p "$dir"
    local calls=$((cps * seconds))
    local warm_cps=$((cps < 100 ? cps : 100)) warm_calls=0
    [[ $via == floor ]] || warm_calls=$((warm_cps * SETUP_WARMUP))

    # Ports: SIP and HTTP for idgate, SIP + media for both SIPps, Kamailio on 127.0.0.2.
    local sip_port http_port queue_port queue_mp caller_port caller_mp edge_port=""
    sip_port=$(free_port)
    http_port=$(free_port)
    queue_port=$(free_port)
    caller_port=$(free_port)
    queue_mp=$(free_port_block 4)
    caller_mp=$(free_port_block 4)
    [[ $via == kamailio ]] && edge_port=$(free_port 127.0.0.2)

    # RTP: two streams per call in progress (caller leg + queue leg), one even port each; calls
    # in progress ~ cps * (hold + set-up). Counted as cps * (hold + 5 s), several times what a
    # healthy run needs, so a slow run shows as slow rather than as "no free RTP port" (idgate
    # takes the next free port after the last one it took, so the size of the range costs
    # nothing per call).
    local streams=$((cps * (hold_ms / 1000 + 5) * 2))
    local rtp_max=$((rtp_min + streams * 2 + 200))
    ((rtp_max > 65000)) && rtp_max=65000

    # Every call a different caller number (E.164, +4670...), so no push limit is shared.
    {
        echo SEQUENTIAL
        awk -v n="$calls" -v r="$run" 'BEGIN { for (i = 0; i < n; i++) printf "+4670%07d\n", (r * 100000 + i) % 10000000 }'
    } >"$dir/callers.csv"
    {
        echo SEQUENTIAL
        awk -v n="$warm_calls" -v r="$run" 'BEGIN { for (i = 0; i < n; i++) printf "+4673%07d\n", (r * 100000 + i) % 10000000 }'
    } >"$dir/warmup_callers.csv"

    local db_file=$dir/idgate.db
    if [[ -n $SETUP_DB_DIR ]]; then
        mkdir -p "$SETUP_DB_DIR"
        db_file=$(mktemp -u "$SETUP_DB_DIR/idgate-bench-XXXXXX.db")
        BENCH_FILES+=("$db_file" "$db_file-wal" "$db_file-shm")
    fi
    local store_url="sqlite://$db_file" trusted="127.0.0.1/32"
    [[ -n $postgres ]] && store_url=$postgres
    [[ $via == kamailio ]] && trusted="127.0.0.2/32"
    write_idgate_config "$dir" "$sip_port" "$http_port" "$queue_port" "$trusted" \
        "$rtp_min" "$rtp_max" "$store_url" "$delay_ms" \
        $((cps * (hold_ms / 1000 + 10) + 1000)) $((cps * 2 + 100))

    local fsync="-" idgate_pid=""
    if [[ $via != floor ]]; then
        [[ -n $postgres ]] || fsync=$(fsync_ms "$(dirname "$db_file")")
        start_idgate "$dir" "$dir/idgate.toml" "$http_port"
        idgate_pid=$IDGATE_PID
    fi

    local -a sipp_common=(-i 127.0.0.1 -nostdin -trace_stat -fd 1 -trace_err)
    local sipp_timeout=$((seconds + hold_ms / 1000 + 40))
    (cd "$dir" && exec sipp -sf "$BENCH_DIR/sipp/queue.xml" "${sipp_common[@]}" \
        -p "$queue_port" -mp "$queue_mp" -m $((calls + warm_calls)) -timeout "$((sipp_timeout + SETUP_WARMUP + 10))s" \
        -stf queue_stat.csv -error_file queue_errors.log \
        >queue.stdout 2>queue.stderr) &
    local queue_pid=$!
    BENCH_PIDS+=("$queue_pid")

    local target="127.0.0.1:$sip_port" kam_pids=""
    [[ $via == floor ]] && target="127.0.0.1:$queue_port"
    if [[ $via == kamailio ]]; then
        start_kamailio "$dir" 127.0.0.2 "$edge_port" "$sip_port"
        target="127.0.0.2:$edge_port"
        kam_pids=$(pids_in_group "$KAMAILIO_PID" | paste -sd, -)
    fi
    sleep 0.3
    kill -0 "$queue_pid" 2>/dev/null || {
        cat "$dir/queue.stderr" >&2
        die "the SIPp queue did not start"
    }

    # Warm-up: calls that are not counted (their answers, CPU, metrics all stay out).
    local q_warm_ok=0
    if ((warm_calls > 0)); then
        (cd "$dir" && exec timeout -k 5 $((SETUP_WARMUP + hold_ms / 1000 + 40)) sipp -sf "$BENCH_DIR/sipp/caller.xml" \
            -i 127.0.0.1 -nostdin -p "$caller_port" -mp "$caller_mp" -inf warmup_callers.csv -s 5000 \
            -r "$warm_cps" -rp 1000 -m "$warm_calls" -d "$hold_ms" \
            -timeout "$((SETUP_WARMUP + hold_ms / 1000 + 30))s" -recv_timeout 10000 \
            -trace_stat -fd 1 -stf warmup_stat.csv \
            "$target" >warmup.stdout 2>warmup.stderr) &
        local warm_pid=$!
        BENCH_PIDS+=("$warm_pid")
        wait "$warm_pid" || true
        forget_pid "$warm_pid"
        sleep 1.5 # the queue's last BYEs, and its 1 s statistics row
        q_warm_ok=$(stat_col "$dir/queue_stat.csv" "SuccessfulCall(C)")
    fi

    scrape() { [[ -n $idgate_pid ]] && curl -fsS -m 5 "http://127.0.0.1:$http_port/metrics" >"$1" || : >"$1"; }
    scrape "$dir/metrics.before"
    [[ -z $idgate_pid ]] || thread_ticks "$idgate_pid" >"$dir/threads.before"

    # The caller: -r cps, -m calls, each held -d ms. Bounded: SIPp's own -timeout, and timeout(1).
    (cd "$dir" && exec timeout -k 5 $((sipp_timeout + 10)) sipp -sf "$BENCH_DIR/sipp/caller.xml" \
        "${sipp_common[@]}" -p "$caller_port" -mp "$caller_mp" -inf callers.csv -s 5000 \
        -r "$cps" -rp 1000 -m "$calls" -l $((cps * (hold_ms / 1000 + 5))) -d "$hold_ms" \
        -timeout "${sipp_timeout}s" -recv_timeout 10000 \
        -stf caller_stat.csv -error_file caller_errors.log -trace_rtt -rtt_freq 1 \
        "$target" >caller.stdout 2>caller.stderr) &
    local caller_pid=$!
    BENCH_PIDS+=("$caller_pid")
    # timeout(1) runs sipp as its child: account the real SIPp process.
    local caller_sipp=""
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        caller_sipp=$(cat "/proc/$caller_pid/task/$caller_pid/children" 2>/dev/null | awk '{print $1}')
        [[ -n $caller_sipp ]] && break
        sleep 0.05
    done
    caller_sipp=${caller_sipp:-$caller_pid}

    local -a roles=("caller=$caller_sipp" "queue=$queue_pid")
    [[ -n $idgate_pid ]] && roles+=("idgate=$idgate_pid")
    [[ -n $kam_pids ]] && roles+=("kamailio=$kam_pids")
    local idg0 cal0 que0 kam0=0 sys0 t0
    idg0=$(cpu_ticks $idgate_pid)
    cal0=$(cpu_ticks "$caller_sipp")
    que0=$(cpu_ticks "$queue_pid")
    [[ -n $kam_pids ]] && kam0=$(cpu_ticks ${kam_pids//,/ })
    sys0=$(sys_ticks)
    t0=$(date +%s%N)
    sampler "$dir/samples.txt" "${roles[@]}" &
    local sampler_pid=$!
    BENCH_PIDS+=("$sampler_pid")

    local perf_pid=""
    if [[ $SETUP_PERF == 1 && -n $idgate_pid ]]; then
        perf record ${BENCH_PERF_ARGS:--e cpu-clock -F 499} -p "$idgate_pid" -o "$dir/perf.data" \
            >"$dir/perf.stdout" 2>"$dir/perf.stderr" &
        perf_pid=$!
        BENCH_PIDS+=("$perf_pid")
    fi

    local caller_rc=0
    wait "$caller_pid" || caller_rc=$?
    forget_pid "$caller_pid"
    # CPU is accounted from the caller's start to its end (its last BYE answered). The caller's
    # own process is gone by now: its share comes from the 1 s samples (the last partial second,
    # its quietest, is lost).
    local idg1 cal1 que1 kam1=0 sys1 t1
    t1=$(date +%s%N)
    idg1=$(cpu_ticks $idgate_pid)
    que1=$(cpu_ticks "$queue_pid")
    [[ -n $kam_pids ]] && kam1=$(cpu_ticks ${kam_pids//,/ })
    sys1=$(sys_ticks)
    # What idgate still holds when the traffic is over (every caller has hung up).
    scrape "$dir/metrics.end"
    # The queue ends by itself after its -m calls; a missing hand-off would keep it: 10 s more.
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$queue_pid" 2>/dev/null || break
        sleep 0.1
    done
    stop_pid "$sampler_pid"
    forget_pid "$sampler_pid"
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$perf_pid" 2>/dev/null || break
            sleep 0.1
        done
        stop_pid "$perf_pid"
        forget_pid "$perf_pid"
        perf report -i "$dir/perf.data" --stdio --no-children --sort dso,symbol 2>/dev/null |
            grep -E '^ +[0-9.]+%' | head -n 30 >"$dir/perf.txt" || true
    fi
    # The SIPps may have exited by now: their CPU comes from the 1 s samples.
    cal1=$(awk -v t="$CLK_TCK" '$2 == "caller" { s += $3 } END { printf "%d", s * t / 100 }' "$dir/samples.txt")
    que0=0
    que1=$(awk -v t="$CLK_TCK" '$2 == "queue" { s += $3 } END { printf "%d", s * t / 100 }' "$dir/samples.txt")
    forget_pid "$sampler_pid"
    scrape "$dir/metrics.after"
    local rss_kb=0 hwm_kb=0
    if [[ -n $idgate_pid ]]; then
        thread_ticks "$idgate_pid" >"$dir/threads.after"
        rss_kb=$(status_kb "$idgate_pid" VmRSS)
        hwm_kb=$(status_kb "$idgate_pid" VmHWM)
    else
        : >"$dir/threads.before"
        : >"$dir/threads.after"
    fi
    stop_pid "$queue_pid"
    forget_pid "$queue_pid"
    if [[ -n $kam_pids ]]; then
        stop_group "$KAMAILIO_PID"
        forget_pid "$KAMAILIO_PID"
    fi
    if [[ -n $idgate_pid ]]; then
        stop_pid "$idgate_pid"
        forget_pid "$idgate_pid"
    fi
    [[ $db_file == "$dir/"* ]] || rm -f "$db_file" "$db_file-wal" "$db_file-shm"

    # --- results -------------------------------------------------------------------------
    local rtt_file
    rtt_file=$(ls "$dir"/caller_*_rtt.csv 2>/dev/null | head -n 1)
    awk -F';' 'NR > 1 && $3 == 1 { print $2 }' "${rtt_file:-/dev/null}" >"$dir/rtt_ms.txt"
    local p50 p99 pmax nrtt
    read -r p50 p99 pmax nrtt <<<"$(percentiles "$dir/rtt_ms.txt")"

    local c_ok c_failed c_unexp c_retrans c_created q_ok q_failed c_timeout c_rejected c_maxretrans
    c_ok=$(stat_col "$dir/caller_stat.csv" "SuccessfulCall(C)")
    c_failed=$(stat_col "$dir/caller_stat.csv" "FailedCall(C)")
    c_unexp=$(stat_col "$dir/caller_stat.csv" "FailedUnexpectedMessage(C)")
    c_timeout=$(stat_col "$dir/caller_stat.csv" "FailedTimeoutOnRecv(C)")
    c_maxretrans=$(stat_col "$dir/caller_stat.csv" "FailedMaxUDPRetrans(C)")
    c_rejected=$(stat_col "$dir/caller_stat.csv" "FailedCallRejected(C)")
    c_retrans=$(stat_col "$dir/caller_stat.csv" "Retransmissions(C)")
    c_created=$(stat_col "$dir/caller_stat.csv" "TotalCallCreated")
    q_ok=$(($(stat_col "$dir/queue_stat.csv" "SuccessfulCall(C)") - q_warm_ok))
    q_failed=$(stat_col "$dir/queue_stat.csv" "FailedCall(C)")
    local ok=$((c_ok < q_ok ? c_ok : q_ok))
    local failed=$((calls - ok))

    local wall_ms=$(((t1 - t0) / 1000000))
    ((wall_ms > 0)) || wall_ms=1
    local sysb0 syst0 sysb1 syst1
    read -r sysb0 syst0 <<<"$sys0"
    read -r sysb1 syst1 <<<"$sys1"
    local idg_pct cal_pct que_pct kam_pct="-" busy_pct idg_ms_per_call
    idg_pct=$(ratio $(((idg1 - idg0) * 100000 / CLK_TCK)) "$wall_ms")
    [[ -n $idgate_pid ]] || idg_pct="-"
    cal_pct=$(ratio $(((cal1) * 100000 / CLK_TCK)) "$wall_ms")
    que_pct=$(ratio $(((que1 - que0) * 100000 / CLK_TCK)) "$wall_ms")
    [[ -n $kam_pids ]] && kam_pct=$(ratio $(((kam1 - kam0) * 100000 / CLK_TCK)) "$wall_ms")
    busy_pct=$(ratio $((sysb1 - sysb0)) $((syst1 - syst0)) 100)
    # Everything else on the machine (other people's builds...), in % of one core.
    local other_pct
    other_pct=$(awk -v b="$busy_pct" -v n="$(nproc)" -v a="$idg_pct" -v c="$cal_pct" -v q="$que_pct" -v k="$kam_pct" \
        'BEGIN { o = b * n - a - c - q - (k == "-" ? 0 : k); printf "%.0f\n", o < 0 ? 0 : o }')
    idg_ms_per_call=$(awk -v t=$((idg1 - idg0)) -v hz="$CLK_TCK" -v n="$ok" 'BEGIN { if (n == 0) print "-"; else printf "%.3f\n", t * 1000 / hz / n }')
    [[ -n $idgate_pid ]] || idg_ms_per_call="-"
    local idg_peak cal_peak que_peak kam_peak="-"
    idg_peak=$(peak_pct "$dir/samples.txt" idgate)
    cal_peak=$(peak_pct "$dir/samples.txt" caller)
    que_peak=$(peak_pct "$dir/samples.txt" queue)
    [[ -n $kam_pids ]] && kam_peak=$(peak_pct "$dir/samples.txt" kamailio)
    # The rate SIPp really reached: calls created over the span of their answers.
    local span_ms achieved
    span_ms=$(awk -F';' 'NR > 1 && $3 == 1 { if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1 } END { print max - min }' "${rtt_file:-/dev/null}")
    achieved=$(awk -v n="$nrtt" -v s="${span_ms:-0}" 'BEGIN { if (s <= 0 || n < 2) print "-"; else printf "%.0f\n", (n - 1) * 1000 / s }')

    local m0=$dir/metrics.before m1=$dir/metrics.after
    local rej503 rej_all verified setup_p50 setup_p99 handoff_p50 handoff_p99 ended_bridged decided
    rej503=$(metric_delta "$m0" "$m1" idgate_calls_rejected_total 'status="503"')
    rej_all=$(metric_delta "$m0" "$m1" idgate_calls_rejected_total)
    decided=$(metric_delta "$m0" "$m1" idgate_calls_decided_total)
    verified=$(metric_delta "$m0" "$m1" idgate_calls_decided_total 'status="verified"')
    setup_p50=$(histogram_quantile "$m0" "$m1" idgate_call_setup_seconds 0.5)
    setup_p99=$(histogram_quantile "$m0" "$m1" idgate_call_setup_seconds 0.99)
    handoff_p50=$(histogram_quantile "$m0" "$m1" idgate_handoff_seconds 0.5)
    handoff_p99=$(histogram_quantile "$m0" "$m1" idgate_handoff_seconds 0.99)
    awk '$1 !~ /^#/ && $1 ~ /^idgate_calls_ended_total/' "$m1" >"$dir/ended.txt"

    # Where idgate's CPU went, by thread name (tokio workers, SQLite workers, media...).
    local threads
    threads=$(awk -v hz="$CLK_TCK" 'FNR == NR { b[$1] = $2; next } { d = $2 - b[$1]; if (d > 0) printf "%s:%.2f ", $1, d / hz }' \
        "$dir/threads.before" "$dir/threads.after")
    local warns slow_acquire slow_stmt active_end streams_end active_after rtp_per_call
    warns=$(grep -c ' WARN \| ERROR ' "$dir/idgate.log" 2>/dev/null || true)
    slow_acquire=$(grep -c 'time to acquire exceeded slow threshold' "$dir/idgate.log" 2>/dev/null || true)
    slow_stmt=$(grep -c 'slow statement' "$dir/idgate.log" 2>/dev/null || true)
    warns=${warns:--} slow_acquire=${slow_acquire:--} slow_stmt=${slow_stmt:--}
    active_end=$(metric "$dir/metrics.end" idgate_active_calls)
    streams_end=$(metric "$dir/metrics.end" idgate_media_streams)
    active_after=$(metric "$m1" idgate_active_calls)
    rtp_per_call=$(awk -v a="$(metric "$m1" idgate_rtp_packets_sent_total)" -v b="$(metric "$m0" idgate_rtp_packets_sent_total)" -v n="$calls" \
        'BEGIN { printf "%.0f\n", (a - b) / n }')

    local line="setup cps=$cps calls=$calls failed=$failed p50_ms=$p50 p99_ms=$p99"
    line+=" via=$via max_ms=$pmax caller_ok=$c_ok queue_ok=$q_ok sipp_failed=$c_failed"
    line+=" unexpected=$c_unexp recv_timeout=$c_timeout max_retrans=$c_maxretrans rejected=$c_rejected"
    line+=" retrans=$c_retrans created=$c_created queue_failed=$q_failed answered_cps=$achieved"
    line+=" idgate_503=$rej503 idgate_rejected=$rej_all decided=$decided verified=$verified"
    line+=" idgate_setup_p50_ms<=$setup_p50 idgate_setup_p99_ms<=$setup_p99"
    line+=" handoff_p50_ms<=$handoff_p50 handoff_p99_ms<=$handoff_p99"
    line+=" idgate_cpu_pct=$idg_pct idgate_cpu_ms_per_call=$idg_ms_per_call idgate_peak_pct=$idg_peak"
    line+=" idgate_rss_mb=$((rss_kb / 1024)) idgate_hwm_mb=$((hwm_kb / 1024))"
    line+=" caller_cpu_pct=$cal_pct caller_peak_pct=$cal_peak queue_cpu_pct=$que_pct queue_peak_pct=$que_peak"
    line+=" kamailio_cpu_pct=$kam_pct kamailio_peak_pct=$kam_peak machine_busy_pct=$busy_pct other_cpu_pct=$other_pct"
    line+=" active_calls_end=$active_end media_streams_end=$streams_end active_calls_10s_later=$active_after"
    local sqlite_threads
    sqlite_threads=$(awk '$1 ~ /^sqlx-sqlite/ { n += $3 } END { print n + 0 }' "$dir/threads.after")
    line+=" rtp_sent_per_call=$rtp_per_call db_slow_acquire=$slow_acquire db_slow_statement=$slow_stmt"
    line+=" sqlite_connections=$sqlite_threads warmup_calls=$warm_calls"
    line+=" idgate_log_warnings=$warns caller_rc=$caller_rc wall_ms=$wall_ms fsync_ms=$fsync"
    local db_kind="sqlite:$(dirname "$db_file")"
    [[ -n $postgres ]] && db_kind=postgres
    [[ $via == floor ]] && db_kind=-
    line+=" db=$db_kind"
    echo "$line" >>"$SETUP_RESULTS"
    echo "$threads" >"$dir/threads.txt"
    note "  calls=$calls failed=$failed p50=${p50}ms p99=${p99}ms idgate=${idg_pct}% caller=${cal_pct}% queue=${que_pct}% kamailio=${kam_pct}% machine=${busy_pct}% (others ${other_pct}% of a core) fsync=${fsync}ms"
    note "  idgate CPU by thread (s): $threads"
    if ((failed > 0)); then
        note "  failures: sipp_failed=$c_failed (unexpected=$c_unexp recv_timeout=$c_timeout max_retrans=$c_maxretrans rejected=$c_rejected) queue_ok=$q_ok decided=$decided idgate_503=$rej503"
        note "  idgate at the end of the traffic: active_calls=$active_end media_streams=$streams_end; log: $warns warnings ($slow_acquire slow DB pool acquires, $slow_stmt slow statements)"
    fi
}

# ratio A B [SCALE]: A * SCALE / B with one decimal ("-" when B is 0).
ratio() { awk -v a="$1" -v b="$2" -v c="${3:-1}" 'BEGIN { if (b == 0) print "-"; else printf "%.1f\n", a * c / b }'; }

# peak_pct SAMPLES ROLE: the highest 1 s CPU% the sampler saw for ROLE.
peak_pct() { awk -v r="$2" '$2 == r && $3 > m { m = $3 } END { print m + 0 }' "$1"; }

# setup_report TARGET_P99 RAMP VIAS RATES: the table, medians, the ramp verdict, and the
# machine-readable lines.
setup_report() {
    local target=$1 ramp=$2 vias=$3 rates=$4
    local r="$SETUP_RESULTS"
    echo
    printf '%-9s %5s %6s %6s %6s %6s %6s %8s %8s %7s %7s %7s %7s %7s %7s\n' \
        via cps calls failed p50ms p99ms maxms idg_cpu% idg_ms/c idg_MB caller% queue% kam% other% fsyncms
    local line
    while read -r line; do
        printf '%-9s %5s %6s %6s %6s %6s %6s %8s %8s %7s %7s %7s %7s %7s %7s\n' \
            "$(kv "$line" via)" "$(kv "$line" cps)" "$(kv "$line" calls)" "$(kv "$line" failed)" \
            "$(kv "$line" p50_ms)" "$(kv "$line" p99_ms)" "$(kv "$line" max_ms)" \
            "$(kv "$line" idgate_cpu_pct)" "$(kv "$line" idgate_cpu_ms_per_call)" \
            "$(kv "$line" idgate_hwm_mb)" "$(kv "$line" caller_cpu_pct)" \
            "$(kv "$line" queue_cpu_pct)" "$(kv "$line" kamailio_cpu_pct)" \
            "$(kv "$line" other_cpu_pct)" "$(kv "$line" fsync_ms)"
    done <"$r"

    # Medians per (via, cps) when a configuration ran more than once.
    local v c n col
    local -a cols=(calls failed p50_ms p99_ms max_ms idgate_cpu_pct idgate_cpu_ms_per_call idgate_hwm_mb caller_cpu_pct queue_cpu_pct kamailio_cpu_pct other_cpu_pct fsync_ms)
    local printed=0
    for c in $rates; do
        for v in $vias; do
            n=$(grep -c " cps=$c .* via=$v " "$r" || true)
            ((n > 1)) || continue
            if ((printed == 0)); then
                echo
                echo "medians:"
                printed=1
            fi
            local -a vals=()
            for col in "${cols[@]}"; do
                vals+=("$(grep " cps=$c .* via=$v " "$r" | while read -r line; do kv "$line" "$col"; done | median)")
            done
            printf '%-9s %5s %6s %6s %6s %6s %6s %8s %8s %7s %7s %7s %7s %7s %7s  (%d runs)\n' \
                "$v" "$c" "${vals[@]}" "$n"
        done
    done

    if [[ -n $ramp ]]; then
        echo
        echo "ramp (target: 0 failed and p99 <= ${target} ms; medians of the runs at each rate):"
        for v in $vias; do
            local last_ok="none" first_bad="" why="" first_failed="" first_slow=""
            for c in $rates; do
                local fl p9
                fl=$(grep " cps=$c .* via=$v " "$r" | while read -r line; do kv "$line" failed; done | median)
                p9=$(grep " cps=$c .* via=$v " "$r" | while read -r line; do kv "$line" p99_ms; done | median)
                local bad=""
                awk -v f="$fl" 'BEGIN { exit !(f > 0) }' && bad="failed=$fl"
                awk -v p="$p9" -v t="$target" 'BEGIN { exit !(p == "-" || p > t) }' && bad="${bad:+$bad,}p99=${p9}ms"
                awk -v f="$fl" 'BEGIN { exit !(f > 0) }' && [[ -z $first_failed ]] && first_failed=$c
                awk -v p="$p9" -v t="$target" 'BEGIN { exit !(p == "-" || p > t) }' && [[ -z $first_slow ]] && first_slow=$c
                if [[ -n $bad ]]; then
                    [[ -z $first_bad ]] && { first_bad=$c; why=$bad; }
                elif [[ -z $first_bad ]]; then
                    last_ok=$c
                fi
            done
            echo "ramp via=$v last_ok_cps=$last_ok first_bad_cps=${first_bad:-none}${why:+ why=$why}" \
                "first_failed_cps=${first_failed:-none} first_p99_over_cps=${first_slow:-none}"
        done
    fi

    echo
    cat "$r"
}
