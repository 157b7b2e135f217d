#!/usr/bin/env bash
# Runs the load generator's scenarios against one or more servers in turn,
# each started fresh on a free loopback port, and prints one JSON line per
# (server, scenario). Loopback only; every run is bounded.
#
#   cargo build --release    # the server and the load generator (benches/realtime-bench)
#   benches/compare.sh realtime=target/release/realtime \
#       go-seed=/tmp/baselines/go-seed/go-seed \
#       rust-axum=/tmp/baselines/release/realtime-axum-peer
#
# The baselines are built as ../shared/baselines/README.md says; nothing else
# depends on them. SHARDS=2 is passed to every server (the others ignore it).
set -euo pipefail
BENCH=${BENCH:-target/release/realtime-bench}
# Without it every run would only report {"ok":false}.
if [ ! -x "$BENCH" ]; then
    echo "compare.sh: no load generator at $BENCH: run \`cargo build --release\` at the workspace root, or set BENCH" >&2
    exit 2
fi
CONNS=${CONNS:-10000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
# Also known: send (targeted sends to random users, 2,000/s).
SCENARIOS=${SCENARIOS:-"idle fanout20 fanoutmax storm"}

scenario_args() {
    case $1 in
        idle) echo "--conns $CONNS --duration $SECONDS_PER_RUN idle" ;;
        fanout20) echo "--conns $CONNS --duration $SECONDS_PER_RUN fanout --rate 20" ;;
        fanoutmax) echo "--conns $CONNS --duration $SECONDS_PER_RUN fanout --rate 0 --window 16 --drain 15" ;;
        storm) echo "--threads 2 --duration $SECONDS_PER_RUN storm --concurrency 64" ;;
        send) echo "--conns $CONNS --duration $SECONDS_PER_RUN send --rate 2000" ;;
        *) echo "unknown scenario $1" >&2; exit 2 ;;
    esac
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

for scenario in $SCENARIOS; do
    for server in "$@"; do
        name=${server%%=*}
        bin=${server#*=}
        port=$(free_port)
        JWT_SECRET=benchsecret SHARDS=2 PORT=$port BIND_ADDR=127.0.0.1 RUST_LOG=warn "$bin" >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 100); do
            curl -sf -o /dev/null "http://127.0.0.1:$port/health" && break
            sleep 0.1
        done
        # shellcheck disable=SC2046
        result=$(timeout 300 "$BENCH" --url "ws://127.0.0.1:$port" --secret benchsecret --pid $pid \
            $(scenario_args "$scenario") 2>/dev/null || echo '{"ok":false}')
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "{\"server\":\"$name\",\"scenario\":\"$scenario\",\"result\":$result}"
        sleep 1
    done
done
