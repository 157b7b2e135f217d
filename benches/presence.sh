#!/usr/bin/env bash
# Presence costs (README, Presence and control), each against a fresh server (SHARDS=2) on a free
# loopback port, CPU read from /proc (the machine may be shared: CPU time,
# not wall time, is the figure to trust):
#   query   a room of MEMBERS (10,000) members held idle over both shards;
#           QUERIES GET /api/rooms/orders/presence one after another:
#           latency p50/p99 (curl's) and server CPU per query; without Redis
#           (the shards' inboxes) and with Redis (its hashes).
#   redis   the Redis traffic presence adds: bytes and commands Redis took
#           per connection at connect, and per connection per minute while
#           MEMBERS connections stay idle (WINDOW_S seconds, scaled to 60).
#   storm   STORM (10,000) connects, each subscribing to a room of ROOM
#           (1,000) idle members, with PRESENCE_EVENTS off and on: server
#           CPU per connect.
# Usage: benches/presence.sh [query] [redis] [storm]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
source benches/common.sh

SERVER=${SERVER:-target/release/realtime}
MEMBERS=${MEMBERS:-10000}
QUERIES=${QUERIES:-200}
WINDOW_S=${WINDOW_S:-60}
STORM=${STORM:-10000}
ROOM=${ROOM:-1000}
SECRET=benchsecret
require_bench presence.sh
raise_fd_limit

trap kill_started EXIT

# hold PORT N SECONDS: N idle connections in room `orders`, in the background.
hold() {
    "$BENCH" --url "ws://127.0.0.1:$1" --secret $SECRET --conns "$2" --duration "$3" --room orders idle \
        >/dev/null 2>&1 &
    PIDS+=("$!")
    local want=$2
    for _ in $(seq 600); do
        [ "$(curl -sf "http://127.0.0.1:$1/health" | sed 's/.*"connections":\([0-9]*\).*/\1/')" = "$want" ] && return
        sleep 0.1
    done
    echo "the $want connections were not all open within 60 s" >&2
    exit 1
}

stop() { kill "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }


# common.sh's start_redis, stopped with the rest by cleanup.
start_redis_held() { start_redis; PIDS+=("$REDIS_PID"); }

redis_stat() { redis-cli -p "$REDIS_PORT" info stats | tr -d '\r' | awk -F: -v k="$1" '$1 == k { print $2 }'; }

query_run() {
    local label=$1 port
    shift
    port=$(free_port)
    start_server "$port" "$@"
    hold "$port" "$MEMBERS" 600
    local got
    got=$(curl -sf "http://127.0.0.1:$port/api/rooms/orders/presence" | sed 's/.*"users":\([0-9]*\).*/\1/')
    local before after
    before=$(cpu_s "$SERVER_PID")
    for _ in $(seq "$QUERIES"); do
        curl -sf -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/api/rooms/orders/presence"
    done | sort -n >/tmp/presence-latency.$$
    after=$(cpu_s "$SERVER_PID")
    awk -v label="$label" -v n="$QUERIES" -v b="$before" -v a="$after" -v users="$got" '
        { v[NR] = $1 * 1000 }
        END { printf "{\"scenario\":\"query\",\"bus\":\"%s\",\"users\":%s,\"queries\":%d,\"latency_ms_p50\":%.2f,\"latency_ms_p99\":%.2f,\"server_cpu_ms_per_query\":%.3f}\n",
              label, users, n, v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1], (a - b) * 1000 / n }' /tmp/presence-latency.$$
    rm -f /tmp/presence-latency.$$
    stop "${PIDS[@]}"
    PIDS=()
}

redis_run() {
    start_redis_held
    local port
    port=$(free_port)
    start_server "$port" REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
    sleep 2
    local b0 c0 b1 c1 b2 c2
    b0=$(redis_stat total_net_input_bytes); c0=$(redis_stat total_commands_processed)
    hold "$port" "$MEMBERS" $((WINDOW_S + 120))
    # Let the connect-time writes land before the idle window starts.
    sleep 2
    b1=$(redis_stat total_net_input_bytes); c1=$(redis_stat total_commands_processed)
    sleep "$WINDOW_S"
    b2=$(redis_stat total_net_input_bytes); c2=$(redis_stat total_commands_processed)
    awk -v n="$MEMBERS" -v w="$WINDOW_S" -v b0="$b0" -v c0="$c0" -v b1="$b1" -v c1="$c1" -v b2="$b2" -v c2="$c2" 'BEGIN {
        printf "{\"scenario\":\"redis\",\"conns\":%d,\"connect_bytes_per_conn\":%.0f,\"connect_commands_per_conn\":%.2f,\"idle_bytes_per_conn_per_min\":%.1f,\"idle_commands_per_conn_per_min\":%.2f}\n",
            n, (b1 - b0) / n, (c1 - c0) / n, (b2 - b1) / n * 60 / w, (c2 - c1) / n * 60 / w }'
    stop "${PIDS[@]}"
    PIDS=()
}

storm_run() {
    local events=$1 port result
    port=$(free_port)
    start_server "$port" PRESENCE_EVENTS="$events"
    hold "$port" "$ROOM" 600
    result=$(timeout "$RUN_LIMIT_S" "$BENCH" --url "ws://127.0.0.1:$port" --secret $SECRET --pid "$SERVER_PID" \
        --room orders --duration 120 storm --subscribe --count "$STORM" 2>/dev/null | tail -n 1) || true
    echo "{\"scenario\":\"storm\",\"presence_events\":$events,\"room_members\":$ROOM,\"result\":${result:-null}}"
    stop "${PIDS[@]}"
    PIDS=()
}

for what in "${@:-query redis storm}"; do
    for w in $what; do
        case $w in
            query) query_run local; command -v redis-server >/dev/null && { start_redis_held; query_run redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT"; } ;;
            redis) redis_run ;;
            storm) storm_run false; storm_run true ;;
            *) echo "unknown run: $w (query, redis, storm)" >&2; exit 2 ;;
        esac
    done
done
