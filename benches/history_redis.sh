#!/usr/bin/env bash
# What history in Redis costs a publish (README, History with Redis): the
# same run with HISTORY_SIZE=100 (the publish script) and HISTORY_SIZE=0
# (a plain PUBLISH), alternating, RUNS times each, each against a fresh
# redis-server and a fresh server (SHARDS=2) on free loopback ports. The load
# generator publishes as fast as it can (16 in flight) to a room of CONNS
# members. One JSON line per run:
#   publish_rate, deliveries_per_s, lost   the load generator's
#   server_cpu_us_per_publish              the server's CPU per publish
#   redis_cpu_us_per_publish               redis-server's CPU (from /proc)
#   redis_usec_per_call                    Redis's own INFO commandstats for
#                                          the call that published (evalsha
#                                          or publish)
#   redis_used_memory_kib                  INFO memory at the end
# CPU time, not wall time, is the figure to trust on a shared machine.
# Usage: benches/history_redis.sh   (RUNS, CONNS, SECONDS_PER_RUN to change)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
source benches/common.sh

SERVER=${SERVER:-target/release/realtime}
RUNS=${RUNS:-3}
CONNS=${CONNS:-200}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
SECRET=benchsecret
require_bench history_redis.sh
raise_fd_limit

trap kill_started EXIT

# wait_for CMD...: retries CMD for at most 10 s.
wait_for() {
    for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "history_redis.sh: gave up waiting for: $*" >&2
    exit 1
}

# run_once SIZE: one run with HISTORY_SIZE=SIZE; prints its JSON line.
run_once() {
    local size=$1 rport port rpid pid result redis_before redis_after stats
    start_redis
    rport=$REDIS_PORT rpid=$REDIS_PID
    PIDS+=("$rpid")
    port=$(free_port)
    start_server "$port" REDIS_URL="redis://127.0.0.1:$rport" HISTORY_SIZE="$size"
    pid=$SERVER_PID
    wait_for sh -c "curl -sf http://127.0.0.1:$port/health | grep -q '\"redis\":\"connected\"'"
    redis-cli -p "$rport" config resetstat >/dev/null
    redis_before=$(cpu_s "$rpid")
    result=$(timeout "$RUN_LIMIT_S" "$BENCH" --url "ws://127.0.0.1:$port" --secret $SECRET --pid "$pid" \
        --conns "$CONNS" --duration "$SECONDS_PER_RUN" --room orders fanout --rate 0 --window 16 --drain 15 \
        2>/dev/null | tail -n 1)
    redis_after=$(cpu_s "$rpid")
    stats=$(redis-cli -p "$rport" info commandstats | tr -d '\r')
    local memory
    memory=$(redis-cli -p "$rport" info memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)/\1/p')
    kill "$pid" "$rpid" 2>/dev/null || true
    wait "$pid" "$rpid" 2>/dev/null || true
    python3 - "$size" "$result" "$redis_before" "$redis_after" "$stats" "$memory" <<'EOF'
import json, re, sys
size, result, before, after, stats, memory = sys.argv[1:]
r = json.loads(result)
published = r.get("events_published") or 0
call = "publish" if size == "0" else "evalsha"
usec = re.search(rf"cmdstat_{call}:calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)", stats)
per = lambda s: round(s * 1e6 / published, 1) if published else None
print(json.dumps({
    "history_size": int(size),
    "ok": r.get("ok"),
    "events_published": published,
    "publish_rate": r.get("publish_rate"),
    "deliveries_per_s": r.get("deliveries_per_s"),
    "lost": r.get("lost"),
    "server_cpu_us_per_publish": per(r.get("server_cpu_s") or 0),
    "redis_cpu_us_per_publish": per(float(after) - float(before)),
    "redis_calls": int(usec.group(1)) if usec else None,
    "redis_usec_per_call": float(usec.group(3)) if usec else None,
    "redis_used_memory_kib": int(memory) // 1024 if memory else None,
}))
EOF
}

for _ in $(seq "$RUNS"); do
    for size in 100 0; do
        run_once "$size"
        sleep 1
    done
done
