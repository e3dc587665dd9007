# shellcheck shell=bash
# Shared helpers for bench/run and its scenarios (sourced, not run).
#
# What a scenario gets from here:
#   - bench_init: a temp workspace ($BENCH_TMP) and an EXIT trap that stops every process the
#     bench started (by pid, or by the process group it created) and removes the workspace
#     unless --keep was given;
#   - require_tool, build_idgate ($IDGATE_BIN);
#   - free_port / free_port_block: loopback ports nobody listens on;
#   - idgate_config / start_idgate / wait_http / metrics helpers;
#   - start_kamailio (dialplans/kamailio/kamailio.cfg, in its own process group);
#   - /proc accounting: cpu_ticks, rss_kb, hwm_kb, thread_ticks, sys_ticks, a 1 s sampler;
#   - percentiles and medians (awk).
#
# Everything is loopback only and every wait is bounded.

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
ROOT_DIR=$(cd "$BENCH_DIR/.." && pwd)
IDGATE_BIN=${IDGATE_BIN:-$ROOT_DIR/target/release/idgate}
CLK_TCK=$(getconf CLK_TCK)

BENCH_TMP=""
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_PIDS=()    # processes started by the bench (killed by pid)
BENCH_GROUPS=()  # process groups created by the bench (setsid; killed as a group)
BENCH_PORTS=()   # ports handed out in this run (never handed out twice)
BENCH_FILES=()   # files made outside $BENCH_TMP (removed on exit)

log() { printf '%s\n' "$*" >&2; }
note() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Workspace and clean-up

bench_init() {
    BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/idgate-bench.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Stops one process (TERM, then KILL after ~3 s) if it is still ours and running.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Stops a process group the bench created with setsid (its leader's pid is the group id).
stop_group() {
    local pgid=$1 i
    kill -0 -- "-$pgid" 2>/dev/null || return 0
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        kill -0 -- "-$pgid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
    wait "$pgid" 2>/dev/null || true
}

bench_cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${BENCH_PIDS[@]}"; do stop_pid "$pid"; done
    for pid in "${BENCH_GROUPS[@]}"; do stop_group "$pid"; done
    ((${#BENCH_FILES[@]} == 0)) || rm -f -- "${BENCH_FILES[@]}"
    if [[ -n $BENCH_TMP && -d $BENCH_TMP ]]; then
        if [[ $BENCH_KEEP == 1 || $rc -ne 0 ]]; then
            note "logs and raw data kept in $BENCH_TMP"
        else
            rm -rf "$BENCH_TMP"
        fi
    fi
    exit "$rc"
}

# Forgets a pid once it has been stopped (so clean-up does not touch a reused pid).
forget_pid() {
    local pid=$1 i
    for i in "${!BENCH_PIDS[@]}"; do
        [[ ${BENCH_PIDS[$i]} == "$pid" ]] && unset 'BENCH_PIDS[i]'
    done
    for i in "${!BENCH_GROUPS[@]}"; do
        [[ ${BENCH_GROUPS[$i]} == "$pid" ]] && unset 'BENCH_GROUPS[i]'
    done
    return 0
}

# ---------------------------------------------------------------------------------------------
# Tools and the build

# require_tool PROGRAM PACKAGE [WHAT]
require_tool() {
    local prog=$1 pkg=$2 what=${3:-}
    command -v "$prog" >/dev/null 2>&1 && return 0
    die "'$prog' not found${what:+ ($what)}. Install it with: sudo apt-get install $pkg"
}

# Builds idgate in release mode (the cargo lock is shared with other builds: it waits). A build
# that fails is retried a few times: other people may be editing the tree right now.
build_idgate() {
    local attempt
    if [[ ${BENCH_NO_BUILD:-0} == 1 ]]; then
        [[ -x $IDGATE_BIN ]] || die "--no-build, but $IDGATE_BIN does not exist"
        note "using the existing $IDGATE_BIN (--no-build)"
        return 0
    fi
    require_tool cargo "cargo (or https://rustup.rs)" "to build idgate"
    for attempt in 1 2 3; do
        note "cargo build --release (attempt $attempt)"
        if (cd "$ROOT_DIR" && cargo build --release --bin idgate 2>&1 | tail -n 3 >&2) &&
            [[ -x $IDGATE_BIN ]]; then
            return 0
        fi
        note "build failed; retrying in 30 s"
        sleep 30
    done
    if [[ -x $IDGATE_BIN ]]; then
        note "build still failing; using the existing $IDGATE_BIN"
        return 0
    fi
    die "cargo build --release failed"
}

# ---------------------------------------------------------------------------------------------
# Ports

# True when nothing listens on IP:PORT (UDP or TCP).
port_free() {
    local ip=$1 port=$2 p
    for p in "${BENCH_PORTS[@]}"; do [[ $p == "$port" ]] && return 1; done
    [[ -z $(ss -Hlnu "sport = :$port" 2>/dev/null) ]] || return 1
    [[ -z $(ss -Hlnt "sport = :$port" 2>/dev/null) ]] || return 1
    return 0
}

# free_port [IP]: a port in 10000-19999 free for UDP and TCP (below the ephemeral range and
# below the RTP ranges the tests use).
free_port() {
    local ip=${1:-127.0.0.1} port i
    for ((i = 0; i < 500; i++)); do
        port=$((10000 + RANDOM % 10000))
        if port_free "$ip" "$port"; then
            BENCH_PORTS+=("$port")
            echo "$port"
            return 0
        fi
    done
    die "no free port on $ip"
}

# free_port_block N: the first of N consecutive free ports (an even one), for SIPp's media
# ports (RTP, RTCP, video RTP/RTCP).
free_port_block() {
    local n=$1 base i k ok
    for ((i = 0; i < 500; i++)); do
        base=$((10000 + (RANDOM % 5000) * 2))
        ok=1
        for ((k = 0; k < n; k++)); do
            port_free 127.0.0.1 $((base + k)) || {
                ok=0
                break
            }
        done
        if [[ $ok == 1 ]]; then
            for ((k = 0; k < n; k++)); do BENCH_PORTS+=($((base + k))); done
            echo "$base"
            return 0
        fi
    done
    die "no free block of $n ports"
}

# ---------------------------------------------------------------------------------------------
# idgate

# wait_http URL SECONDS PID: until URL answers 200, or fail if PID exits.
wait_http() {
    local url=$1 secs=$2 pid=$3 i
    for ((i = 0; i < secs * 10; i++)); do
        curl -fsS -m 1 "$url" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# write_idgate_config DIR SIP HTTP QUEUE TRUSTED RTP_MIN RTP_MAX STORE_URL DELAY_MS MAX_CALLS MAX_CPS:
# DIR/idgate.toml and DIR/dialplans/10-bench.toml for a benchmark: one route to the SIPp queue
# at 127.0.0.1:QUEUE (B2BUA), the simulator approving after DELAY_MS, push limits out of the
# way, warnings-only logs and admission limits at MAX_CALLS and MAX_CPS.
write_idgate_config() {
    local dir=$1 sip_port=$2 http_port=$3 queue_port=$4 trusted=$5 rtp_min=$6 rtp_max=$7
    local store_url=$8 delay_ms=$9 max_calls=${10} max_cps=${11}
    mkdir -p "$dir/dialplans"
    cat >"$dir/dialplans/10-bench.toml" <<EOF
[[route]]
name = "bench"
match = "*"
target = "sip:queue@127.0.0.1:$queue_port"
transfer = "b2bua"
EOF
    cat >"$dir/idgate.toml" <<EOF
[sip]
listen = "127.0.0.1:$sip_port"
trusted_peers = ["$trusted"]

[http]
listen = "127.0.0.1:$http_port"

[media]
bind_ip = "127.0.0.1"
rtp_port_min = $rtp_min
rtp_port_max = $rtp_max
${BENCH_MEDIA_EXTRA:-}

[store]
url = "$store_url"

[provider]
kind = "simulator"

[provider.simulator]
default = "approve"
delay_ms = $delay_ms
hint_ms = $((delay_ms + 1000))

[dialplan]
dir = "$dir/dialplans"

[limits]
pushes_per_caller = 1000000
pushes_per_person = 1000000

[log]
level = "warn"

[admission]
max_calls = $max_calls
max_calls_per_second = $max_cps
EOF
}

# start_idgate DIR CONFIG: starts the release idgate (stderr to DIR/idgate.log); sets
# IDGATE_PID. RUST_LOG is removed from its environment so [log] level applies.
start_idgate() {
    local dir=$1 config=$2 http=$3
    env -u RUST_LOG "$IDGATE_BIN" serve --config "$config" >"$dir/idgate.stdout" 2>"$dir/idgate.log" &
    IDGATE_PID=$!
    BENCH_PIDS+=("$IDGATE_PID")
    if ! wait_http "http://127.0.0.1:$http/healthz" 30 "$IDGATE_PID"; then
        tail -n 20 "$dir/idgate.log" >&2
        die "idgate did not become healthy (log above; config $config)"
    fi
}

# metric TEXTFILE NAME [LABEL-FILTER]: the sum of every sample of NAME whose labels contain
# LABEL-FILTER (e.g. 'status="503"'); 0 when absent.
metric() {
    local file=$1 name=$2 filter=${3:-}
    awk -v n="$name" -v f="$filter" '
        $1 !~ /^#/ {
            split($1, a, "{"); if (a[1] != n) next
            if (f != "" && index($1, f) == 0) next
            s += $2
        }
        END { printf "%.6g\n", s + 0 }' "$file"
}

# metric_delta BEFORE AFTER NAME [LABEL-FILTER]: how much a counter grew between two scrapes.
metric_delta() {
    awk -v a="$(metric "$1" "$3" "${4:-}")" -v b="$(metric "$2" "$3" "${4:-}")" 'BEGIN { printf "%.6g\n", b - a }'
}

# histogram_quantile TEXT_BEFORE TEXT_AFTER NAME Q: the quantile Q (0..1) of a Prometheus
# histogram's increase between two scrapes, as the upper bound of the bucket it falls in, in
# milliseconds ("-" when the histogram did not move). Coarse: the buckets double.
histogram_quantile() {
    local before=$1 after=$2 name=$3 q=$4
    awk -v n="${name}_bucket" -v q="$q" '
        function le(s,   m) { m = s; sub(/.*le="/, "", m); sub(/".*/, "", m); return m }
        $1 ~ /^#/ { next }
        { split($1, a, "{"); if (a[1] != n) next; k = le($1) }
        FNR == NR { b[k] = $2; next }
        { c[k] = $2 - b[k]; keys[++nk] = k }
        END {
            total = c["+Inf"]
            if (total <= 0) { print "-"; exit }
            for (i = 1; i <= nk; i++) {
                if (c[keys[i]] >= q * total) {
                    if (keys[i] == "+Inf") print ">max"; else printf "%g\n", keys[i] * 1000
                    exit
                }
            }
        }' "$before" "$after"
}

# ---------------------------------------------------------------------------------------------
# Kamailio (the edge proxy of dialplans/kamailio)

# start_kamailio DIR LISTEN_ADDR LISTEN_PORT IDGATE_PORT: in its own process group (its
# children die with it); sets KAMAILIO_PID (= the group id). Ready once its UDP socket is bound:
# datagrams sent before the workers read queue in the socket.
start_kamailio() {
    local dir=$1 addr=$2 port=$3 idgate_port=$4 i
    setsid kamailio -f "$ROOT_DIR/dialplans/kamailio/kamailio.cfg" -DD -E -m 256 -M 16 \
        -A "LISTEN_ADDR=$addr" -A "LISTEN_PORT=$port" \
        -A "IDGATE_ADDR=127.0.0.1" -A "IDGATE_PORT=$idgate_port" \
        -A "LOG_LEVEL=1" -A "CHILDREN=${KAMAILIO_CHILDREN:-4}" \
        </dev/null >"$dir/kamailio.stdout" 2>"$dir/kamailio.log" &
    KAMAILIO_PID=$!
    BENCH_GROUPS+=("$KAMAILIO_PID")
    for ((i = 0; i < 100; i++)); do
        kill -0 "$KAMAILIO_PID" 2>/dev/null || break
        if [[ -n $(ss -Hlnu "src $addr:$port" 2>/dev/null) ]]; then
            sleep 1 # the workers fork after the bind
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$dir/kamailio.log" >&2
    die "kamailio did not start (log above)"
}

# ---------------------------------------------------------------------------------------------
# /proc accounting (no perf needed)

# pids_in_group PGID: every process whose process group is PGID.
pids_in_group() {
    local pgid=$1 f line rest
    local -a fields
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        rest=${line##*) }
        read -ra fields <<<"$rest"
        [[ ${fields[2]} == "$pgid" ]] && { f=${f#/proc/}; echo "${f%/stat}"; }
    done
    return 0
}

# cpu_ticks PID...: utime + stime of the processes (all threads), in clock ticks.
cpu_ticks() {
    local total=0 pid line rest
    local -a fields
    for pid in "$@"; do
        read -r line 2>/dev/null <"/proc/$pid/stat" || continue
        rest=${line##*) }
        read -ra fields <<<"$rest"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

# sys_ticks: "busy total" CPU ticks of the whole machine (all cores), from /proc/stat.
sys_ticks() {
    local _cpu user nice system idle iowait irq softirq steal _rest
    read -r _cpu user nice system idle iowait irq softirq steal _rest </proc/stat
    echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

# status_kb PID FIELD: a /proc/PID/status size (VmRSS, VmHWM) in kB.
status_kb() {
    awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# thread_ticks PID: "name ticks count" per thread name (threads of one name summed), for where the
# time goes inside a process.
thread_ticks() {
    local pid=$1 f line comm rest
    local -a fields
    for f in /proc/"$pid"/task/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        comm=${line#*(}
        comm=${comm%)*}
        rest=${line##*) }
        read -ra fields <<<"$rest"
        printf '%s %d\n' "${comm// /_}" $((fields[11] + fields[12]))
    done | awk '{ t[$1] += $2; c[$1]++ } END { for (k in t) print k, t[k], c[k] }'
}

# sampler OUTFILE ROLE=PIDLIST...: every second, one line per role "t role cpu%" (cpu% of one
# core) and "t machine busy%" (of all cores). Runs until killed. PIDLIST is comma-separated.
sampler() {
    local out=$1
    shift
    local -A prev
    local spec role pids t=0 now busy total pbusy ptotal
    read -r pbusy ptotal <<<"$(sys_ticks)"
    for spec in "$@"; do
        role=${spec%%=*}
        pids=${spec#*=}
        prev[$role]=$(cpu_ticks ${pids//,/ })
    done
    while sleep 1; do
        t=$((t + 1))
        for spec in "$@"; do
            role=${spec%%=*}
            pids=${spec#*=}
            now=$(cpu_ticks ${pids//,/ })
            # A process that has exited reads as 0 ticks: report 0, keep the last reading.
            if ((now >= prev[$role])); then
                echo "$t $role $(((now - prev[$role]) * 100 / CLK_TCK))"
                prev[$role]=$now
            else
                echo "$t $role 0"
            fi
        done
        read -r busy total <<<"$(sys_ticks)"
        if ((total > ptotal)); then
            echo "$t machine $(((busy - pbusy) * 100 / (total - ptotal)))"
        fi
        pbusy=$busy
        ptotal=$total
    done >>"$out"
}

# fsync_ms DIR: milliseconds one synchronous 4 KiB write takes in DIR right now (the median-ish
# mean of 50, with dd oflag=dsync): what a database commit waits for on that disk. On a shared
# machine it swings from ~0.3 ms to several ms when others write.
fsync_ms() {
    local dir=$1 f out secs
    f=$(mktemp "$dir/fsync-probe.XXXXXX") || { echo "-"; return 0; }
    out=$(dd if=/dev/zero of="$f" bs=4k count=50 oflag=dsync 2>&1 | tail -n 1)
    rm -f "$f"
    secs=$(sed -nE 's/.*copied, ([0-9.e-]+) s.*/\1/p' <<<"$out")
    awk -v s="${secs:-}" 'BEGIN { if (s == "") print "-"; else printf "%.2f\n", s * 1000 / 50 }'
}

# ---------------------------------------------------------------------------------------------
# Statistics

# percentiles FILE: "p50 p99 max count" of the numbers in FILE, one a line (nearest rank).
percentiles() {
    sort -n "$1" | awk '
        { v[NR] = $1 }
        function rank(q,   r) { r = int(q * NR); if (r < q * NR) r++; if (r < 1) r = 1; return v[r] }
        END {
            if (NR == 0) { print "- - - 0"; exit }
            printf "%s %s %s %d\n", rank(0.50), rank(0.99), v[NR], NR
        }'
}

# median: the median of the numbers on stdin ("-" when none are numbers).
median() {
    awk '$1 ~ /^-?[0-9.]+$/ { v[++n] = $1 } END {
        if (n == 0) { print "-"; exit }
        # insertion sort: n is small (the repeats of one configuration)
        for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
        if (n % 2) m = v[(n + 1) / 2]; else m = (v[n / 2] + v[n / 2 + 1]) / 2
        printf "%g\n", m
    }'
}

# kv LINE KEY: the value of KEY in a "key=value key=value" line.
kv() {
    local line=$1 key=$2 w
    for w in $line; do
        [[ $w == "$key="* ]] && { echo "${w#*=}"; return 0; }
    done
    echo "-"
}

# stat_col CSV COLUMN: the value of a SIPp -trace_stat column in the last row (0 if absent).
stat_col() {
    local file=$1 col=$2
    [[ -s $file ]] || { echo 0; return 0; }
    awk -F';' -v c="$col" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next }
        { last = $k }
        END { print (k && last != "") ? last + 0 : 0 }' "$file"
}
