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
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"
require_bench compare.sh
raise_fd_limit
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

for scenario in $SCENARIOS; do
    for server in "$@"; do
        # shellcheck disable=SC2046
        result=$(bench_against "${server#*=}" $(scenario_args "$scenario"))
        echo "{\"server\":\"${server%%=*}\",\"scenario\":\"$scenario\",\"result\":$result}"
        sleep 1
    done
done
