#!/usr/bin/env bash
# What history and recovery (README, History and recovery) cost, measured in
# one run on one server binary, each run against a fresh server (SHARDS=2) on
# a free loopback port, one JSON line per run:
#   fanout   fanout20 and fanoutmax (as compare.sh runs them, CONNS
#            subscribers) with history on (the default) and off
#            (HISTORY_SIZE=0), back to back: the A/B to read as ratios;
#            without Redis, and with a redis-server this script starts (with
#            the Redis script's calls, time and redis-server CPU per publish)
#   memory   MEMORY_ROOMS (10,000) rooms × 100 events of about 300 bytes
#            (the default HISTORY_SIZE), without Redis: server RSS and
#            realtime_history_bytes before and after publishing
#   recover  the recovery storm: STORM_CONNS (10,000) clients in STORM_ROOMS
#            (100) rooms disconnect, STORM_MISSED (20) events per room are
#            published, all reconnect at once with `since`: time until all
#            have recovered, gaps, duplicates, server CPU; without and with Redis
# Loopback only; every run is bounded; the redis-server is stopped at the end.
#
#   cargo build --release
#   benches/history.sh [fanout] [memory] [recover]     (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
. benches/common.sh
require_bench history.sh
raise_fd_limit

SERVER=${SERVER:-target/release/realtime}
CONNS=${CONNS:-10000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
MEMORY_ROOMS=${MEMORY_ROOMS:-10000}
STORM_CONNS=${STORM_CONNS:-10000}
STORM_ROOMS=${STORM_ROOMS:-100}
STORM_MISSED=${STORM_MISSED:-20}
# Payload padding that makes a bench event's envelope about 300 bytes.
PAD=${PAD:-100}
# "local", and "redis" where redis-server is installed.
MODES=${MODES:-local redis}

REDIS_PID=
trap '[ -z "$REDIS_PID" ] || { kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null; } || true' EXIT

# The server settings of a mode: SERVER_ENV for bench_against.
mode_env() {
    case $1 in
        local) echo "" ;;
        redis) echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT" ;;
    esac
}

redis_info() { redis-cli -p "$REDIS_PORT" info "$1" | tr -d '\r'; }

# What Redis did for the runs since redis_reset: the calls and time of its
# scripts and functions, and redis-server's CPU seconds.
redis_reset() {
    redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
    REDIS_CPU0=$(redis_info cpu | awk -F: '$1 == "used_cpu_user" || $1 == "used_cpu_sys" { s += $2 } END { print s }')
}
redis_cost() {
    local cpu
    cpu=$(redis_info cpu | awk -F: '$1 == "used_cpu_user" || $1 == "used_cpu_sys" { s += $2 } END { print s }')
    redis_info commandstats | awk -F'[:,=]' -v cpu="$cpu" -v cpu0="$REDIS_CPU0" '
        /^cmdstat_(evalsha|eval|fcall|publish)/ { calls[$1] = $3; usec[$1] = $5 }
        END {
            printf "{\"cpu_s\":%.3f", cpu - cpu0
            for (c in calls) printf ",\"%s\":{\"calls\":%d,\"usec\":%d}", substr(c, 9), calls[c], usec[c]
            printf "}"
        }'
}

# run MODE HISTORY NAME ARGS...: one run, printed as a JSON line.
run() {
    local mode=$1 history=$2 name=$3 result extra=""
    shift 3
    local env
    env="$(mode_env "$mode")"
    [ "$history" = on ] || env="$env HISTORY_SIZE=0"
    [ "$mode" != redis ] || redis_reset
    result=$(SERVER_ENV="$env" bench_against "$SERVER" "$@")
    [ "$mode" != redis ] || extra=",\"redis\":$(redis_cost)"
    echo "{\"mode\":\"$mode\",\"history\":\"$history\",\"scenario\":\"$name\",\"result\":$result$extra}"
    sleep 1
}

fanout() {
    local mode=$1 history
    for history in on off; do
        run "$mode" "$history" fanout20 --conns "$CONNS" --duration "$SECONDS_PER_RUN" fanout --rate 20
    done
    for history in on off; do
        run "$mode" "$history" fanoutmax --conns "$CONNS" --duration "$SECONDS_PER_RUN" \
            fanout --rate 0 --window 16 --drain 15
    done
}

memory() {
    run local on memory --conns 100 recover --rooms "$MEMORY_ROOMS" --missed 100 --pad "$PAD"
}

recover() {
    run "$1" on recover --conns "$STORM_CONNS" --threads 2 --connect-concurrency 1024 \
        recover --rooms "$STORM_ROOMS" --missed "$STORM_MISSED" --pad "$PAD"
}

for mode in $MODES; do
    if [ "$mode" = redis ]; then
        command -v redis-server >/dev/null || { echo "history.sh: no redis-server: Redis runs skipped" >&2; continue; }
        start_redis
    fi
    for what in ${*:-fanout memory recover}; do
        case $what in
            fanout) fanout "$mode" ;;
            memory) [ "$mode" != local ] || memory ;;
            recover) recover "$mode" ;;
            *) echo "unknown run: $what (fanout, memory, recover)" >&2; exit 2 ;;
        esac
    done
done
