# shellcheck shell=bash
# Sourced by compare.sh and scaling.sh: a fresh server per run on a free
# loopback port, the load generator against it, then the server stopped.
# Loopback only; every wait is bounded.

BENCH=${BENCH:-target/release/realtime-bench}
# How long one load generator run may take, connecting and draining included.
RUN_LIMIT_S=${RUN_LIMIT_S:-300}

# Without it every run would only report {"ok":false}.
require_bench() {
    if [ ! -x "$BENCH" ]; then
        echo "$1: no load generator at $BENCH: run \`cargo build --release\` at the workspace root, or set BENCH" >&2
        exit 2
    fi
}

# The servers hold one descriptor per connection; take what the hard limit allows.
raise_fd_limit() {
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_redis: a redis-server on a free loopback port, nothing saved; sets
# REDIS_PORT and REDIS_PID (the caller stops it).
start_redis() {
    REDIS_PORT=$(free_port)
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no >/dev/null 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return; sleep 0.1; done
    echo "redis-server did not start" >&2
    exit 1
}

# bench_against BIN ARGS...: starts BIN (JWT_SECRET, SHARDS=2, a free port,
# and the VAR=VALUE words of SERVER_ENV, e.g. SERVER_ENV="HISTORY_SIZE=0"),
# runs the load generator with ARGS against it, stops it, and prints the
# generator's JSON line, or one with "ok":false and the reason.
bench_against() {
    local bin=$1 port pid result
    shift
    if [ ! -x "$bin" ]; then
        echo "{\"ok\":false,\"error\":\"no server binary at $bin\"}"
        return
    fi
    port=$(free_port)
    # shellcheck disable=SC2086 # SERVER_ENV is a list of words
    env JWT_SECRET=benchsecret SHARDS=2 PORT="$port" BIND_ADDR=127.0.0.1 RUST_LOG=warn ${SERVER_ENV:-} "$bin" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/health" && break
        sleep 0.1
    done
    if ! curl -sf -o /dev/null "http://127.0.0.1:$port/health"; then
        result='{"ok":false,"error":"the server did not answer /health within 10 s"}'
    else
        # A failed run still prints its JSON line (with the error); only a
        # generator that died or ran out of time prints none.
        result=$(timeout "$RUN_LIMIT_S" "$BENCH" --url "ws://127.0.0.1:$port" --secret benchsecret --pid "$pid" \
            "$@" 2>/dev/null | tail -n 1) || true
        [ -n "$result" ] || result="{\"ok\":false,\"error\":\"no result within $RUN_LIMIT_S s\"}"
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$result"
}

# Background processes a script started (servers, redis-server, load
# generators): kill_started stops them all; a script runs it on exit with
# `trap kill_started EXIT`.
PIDS=()

# start_server PORT [VAR=VALUE...]: starts $SERVER (SHARDS=2, JWT_SECRET
# $SECRET) on PORT with the given settings, in the background, and waits for
# /health (at most 10 s); sets SERVER_PID and adds it to PIDS.
start_server() {
    local port=$1
    shift
    env JWT_SECRET="$SECRET" SHARDS=2 PORT="$port" BIND_ADDR=127.0.0.1 RUST_LOG=warn "$@" "$SERVER" >/dev/null 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/health" && return; sleep 0.1; done
    echo "the server did not answer /health within 10 s" >&2
    exit 1
}

kill_started() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }

# CPU seconds (user + system) of a process.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }
