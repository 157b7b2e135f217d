#!/usr/bin/env bash
# One deployment on one host, several processes past one process's open-files
# limit: a `redis-server` on a free loopback port, SERVERS server processes
# (SHARDS=1 each) sharing one free port (SHARE_PORT=true) and joined by that
# Redis, and the load generator, whose child processes hold the connections
# from their own 127.0.0.x source addresses. One scenario a command; prints
# one JSON line (the generator's result under "result", with the
# deployment's own figures beside it), and stops everything it started.
# Loopback only; every run and every wait is bounded.
#
#   cargo build --release
#   benches/scale_out.sh idle       # CONNS held: RSS per connection over the processes, kernel socket memory
#   benches/scale_out.sh fanout     # RATE events/s into the room all CONNS are in: loss, latency, CPU, Redis's cost
#   benches/scale_out.sh storm      # STORM_COUNT handshakes (connect, upgrade, connected, close)
#   benches/scale_out.sh rolling    # the fan-out while each server in turn is replaced; clients reconnect with `since`
#
# Settings (environment):
#   CONNS         connections                          100000
#   SERVERS       server processes on the port         6
#   DURATION      measured seconds (idle, fanout)      10
#   RATE          events/s into the room               1 (CONNS deliveries/s)
#   STORM_COUNT   handshakes of the storm              CONNS
#   SERVER_CAP    MAX_CONNECTIONS of each server       19000 (below the 20,000 open files: a full
#                 server answers 503 and the client tries again, landing elsewhere)
#   ROLL_SECONDS  publishing time of `rolling`         20 + 15 × SERVERS
#   DRAIN         seconds the fan-outs wait for late deliveries after publishing   15
#   STEP_PAUSE    seconds between one old server's exit and the next new one (`rolling`)  10
#   PER_PROCESS   connections per generator process    18000
#   REALTIME, BENCH  the binaries                      target/release/realtime, target/release/realtime-bench
#   KEEP_LOGS     a directory to copy the servers' logs to (default: removed)
set -euo pipefail
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"

SCENARIO=${1:-}
CONNS=${CONNS:-100000}
SERVERS=${SERVERS:-6}
DURATION=${DURATION:-10}
RATE=${RATE:-1}
STORM_COUNT=${STORM_COUNT:-$CONNS}
SERVER_CAP=${SERVER_CAP:-19000}
ROLL_SECONDS=${ROLL_SECONDS:-$((20 + 15 * SERVERS))}
STEP_PAUSE=${STEP_PAUSE:-10}
DRAIN=${DRAIN:-15}
PER_PROCESS=${PER_PROCESS:-18000}
REALTIME=${REALTIME:-target/release/realtime}
SECRET=benchsecret

case $SCENARIO in
    idle | fanout | storm | rolling) ;;
    *) echo "usage: benches/scale_out.sh idle|fanout|storm|rolling (settings: see the script's head)" >&2; exit 2 ;;
esac
require_bench scale_out.sh
if [ ! -x "$REALTIME" ]; then
    echo "scale_out.sh: no server binary at $REALTIME: run \`cargo build --release\`, or set REALTIME" >&2
    exit 2
fi
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "scale_out.sh: redis-server and redis-cli are needed (apt-get install redis-server)" >&2
    exit 2
fi
raise_fd_limit
REALTIME=$(realpath "$REALTIME")
BENCH=$(realpath "$BENCH")

work=$(mktemp -d)
redis_pid=
bench_pid=
sampler_pid=
declare -a server_pids=()
# Everything started here ends here, whatever way the script ends.
cleanup() {
    local pid
    for pid in "$bench_pid" "$sampler_pid" "${server_pids[@]}" "$redis_pid"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "$bench_pid" "$sampler_pid" "${server_pids[@]}" "$redis_pid"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    if [ -n "${KEEP_LOGS:-}" ]; then
        mkdir -p "$KEEP_LOGS" && cp "$work"/*.log "$KEEP_LOGS"/ 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "{\"scenario\":\"$SCENARIO\",\"ok\":false,\"error\":\"$1\"}"
    exit 1
}

now_ms() { date +%s%3N; }

# wait_for SECONDS COMMAND...: true once COMMAND succeeds, polled every 0.1 s.
wait_for() {
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

redis_port=$(free_port)
redis() { redis-cli -p "$redis_port" "$@"; }
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    >"$work/redis.log" 2>&1 &
redis_pid=$!
wait_for 10 sh -c "redis-cli -p $redis_port ping 2>/dev/null | grep -q PONG" || fail "redis-server did not answer within 10 s"

port=$(free_port)
next_server=0
# add_server: one more server process on the port; its pid in $started.
add_server() {
    local log="$work/server-$next_server.log"
    next_server=$((next_server + 1))
    : >"$log"
    # A clean environment and an empty working directory: no setting of this
    # machine and no .env reaches the servers.
    (cd "$work" && exec env -i PATH="$PATH" JWT_SECRET=$SECRET SHARDS=1 PORT="$port" BIND_ADDR=127.0.0.1 \
        SHARE_PORT=true REDIS_URL="redis://127.0.0.1:$redis_port" MAX_CONNECTIONS="$SERVER_CAP" \
        RUST_LOG=info "$REALTIME" >/dev/null 2>"$log") &
    started=$!
    server_pids+=("$started")
    # /ready on the shared port may be answered by another process: wait for
    # this one's own word that it listens and that both its Redis links (a
    # subscriber and a publisher: SHARDS=1) are up, which is what its /ready says.
    wait_for 15 grep -q listening "$log" || fail "a server did not start listening within 15 s"
    wait_for 15 sh -c "[ \$(grep -c 'redis link connected' '$log') -ge 2 ]" ||
        fail "a server's Redis links were not up within 15 s"
}

for _ in $(seq "$SERVERS"); do
    add_server
done
wait_for 15 curl -sf -o /dev/null "http://127.0.0.1:$port/ready" || fail "the deployment was not ready within 15 s"

pids() { local IFS=,; echo "${server_pids[*]}"; }
bench() {
    timeout "$RUN_LIMIT_S" "$BENCH" --url "ws://127.0.0.1:$port" --secret $SECRET --per-process "$PER_PROCESS" "$@"
}
# The kernel's TCP sockets, the pages their buffers hold (/proc/net/sockstat),
# and the kernel's slab memory in KiB (/proc/meminfo: the sockets themselves).
sockstat() {
    echo "$(awk '/^TCP:/ { print $3, $11 }' /proc/net/sockstat) $(awk '/^Slab:/ { print $2 }' /proc/meminfo)"
}
# redis_figures: Redis's CPU seconds and output bytes so far.
redis_figures() {
    local cpu out
    cpu=$(redis info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.3f", s }')
    out=$(redis info stats | tr -d '\r' | awk -F: '/^total_net_output_bytes:/ { print $2 }')
    echo "$cpu $out"
}

# redis_window: once the generator says every connection is open (its
# --ready-file), Redis's CPU and output over the next WINDOW seconds of the
# measured phase, read before the connections close (closing is presence
# work of its own); reading the figures is output of its own, measured once
# and taken off. Sets $redis_window as JSON fields.
WINDOW=$((DURATION > 2 ? DURATION - 1 : 1))
redis_window() {
    local cpu_before out_first out_before cpu_after out_after
    wait_for $((60 + CONNS / 500)) test -e "$work/ready" || fail "the load generator was not ready in time"
    read -r _ out_first < <(redis_figures)
    read -r cpu_before out_before < <(redis_figures)
    sleep "$WINDOW"
    read -r cpu_after out_after < <(redis_figures)
    redis_window="\"redis_window_s\":$WINDOW,\"redis_cpu_s\":[$cpu_before,$cpu_after],\"redis_output_bytes\":[$((2 * out_before - out_first)),$out_after]"
}

RUN_LIMIT_S=$((RUN_LIMIT_S + ROLL_SECONDS))
case $SCENARIO in
    idle)
        read -r sockets_before pages_before slab_before < <(sockstat)
        # The generator holds the connections for DURATION seconds: sample the kernel's side meanwhile.
        bench --pid "$(pids)" --conns "$CONNS" --duration "$DURATION" --ready-file "$work/ready" idle \
            >"$work/result" 2>"$work/bench.log" &
        bench_pid=$!
        (
            peak_sockets=$sockets_before peak_pages=$pages_before peak_slab=$slab_before
            while kill -0 "$bench_pid" 2>/dev/null; do
                read -r sockets pages slab < <(sockstat)
                [ "$pages" -gt "$peak_pages" ] && peak_pages=$pages
                [ "$sockets" -gt "$peak_sockets" ] && peak_sockets=$sockets
                [ "$slab" -gt "$peak_slab" ] && peak_slab=$slab
                sleep 1
            done
            echo "$peak_sockets $peak_pages $peak_slab" >"$work/peaks"
        ) &
        sampler_pid=$!
        # Redis's work for idle connections while they stay: presence keeping them fresh.
        redis_window
        wait "$bench_pid" || true
        bench_pid=
        wait "$sampler_pid"
        read -r peak_sockets peak_pages peak_slab <"$work/peaks"
        extra="$redis_window,\"kernel_tcp_sockets\":$((peak_sockets - sockets_before)),\"kernel_tcp_mem_kib\":$(((peak_pages - pages_before) * 4)),\"kernel_slab_kib\":$((peak_slab - slab_before))"
        ;;
    fanout)
        bench --pid "$(pids)" --conns "$CONNS" --duration "$DURATION" --ready-file "$work/ready" \
            fanout --rate "$RATE" --drain "$DRAIN" >"$work/result" 2>"$work/bench.log" &
        bench_pid=$!
        redis_window
        wait "$bench_pid" || true
        bench_pid=
        extra="$redis_window,\"rate\":$RATE"
        ;;
    storm)
        bench --pid "$(pids)" --threads 2 --duration 120 storm --count "$STORM_COUNT" --concurrency 64 \
            >"$work/result" 2>"$work/bench.log" || true
        extra="\"storm_count\":$STORM_COUNT"
        ;;
    rolling)
        bench --conns "$CONNS" --duration "$ROLL_SECONDS" fanout --rate "$RATE" --drain "$DRAIN" --reconnect \
            --ready-file "$work/ready" >"$work/result" 2>"$work/bench.log" &
        bench_pid=$!
        wait_for $((60 + CONNS / 500)) test -e "$work/ready" || fail "the load generator was not ready in time"
        ready_ms=$(now_ms)
        sleep 3
        restarts=()
        for old in "${server_pids[@]:0:$SERVERS}"; do
            add_server
            sigterm_ms=$(now_ms)
            kill -TERM "$old"
            wait_for 30 sh -c "! kill -0 $old 2>/dev/null" || fail "a server did not stop within 30 s of SIGTERM"
            restarts+=("{\"sigterm_ms\":$sigterm_ms,\"exited_ms\":$(now_ms)}")
            # Time for this step's clients to come back before the next step
            # closes more: each step's reconnects are then told apart.
            sleep "$STEP_PAUSE"
        done
        restarts_done_ms=$(now_ms)
        wait "$bench_pid" || true
        bench_pid=
        extra="\"restarts\":[$(IFS=,; echo "${restarts[*]}")],\"ready_ms\":$ready_ms,\"restarts_done_ms\":$restarts_done_ms"
        ;;
esac

result=$(tail -n 1 "$work/result" 2>/dev/null || true)
[ -n "$result" ] || result="{\"ok\":false,\"error\":\"no result: $(tail -n 1 "$work/bench.log" | tr -d '"\\')\"}"
python3 "$(dirname "$0")/scale_out_report.py" "$SCENARIO" "$SERVERS" "$CONNS" "{$extra}" "$result"
