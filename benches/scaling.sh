#!/usr/bin/env bash
# How the server's CPU per wake-up grows with the connections held open:
# for each server and each connection count, a targeted `send` run and a
# client `ping` run (each against a fresh server on a free loopback port),
# one JSON line per run, then a table of µs of server CPU per event and per
# ping and their growth from the fewest connections to the most.
# Loopback only; every run is bounded.
#
#   cargo build --release    # the server and the load generator (benches/realtime-bench)
#   benches/scaling.sh realtime=target/release/realtime \
#       go-seed=/tmp/baselines/go-seed/go-seed \
#       rust-axum=/tmp/baselines/release/realtime-axum-peer
#
# Settings (environment):
#   CONNS_LIST       connection counts               "2000 10000 18000"
#   SECONDS_PER_RUN  measured seconds per run        8
#   SEND_RATE        targeted sends a second         1000
#   PING_RATE, BUSY  pings a second, over BUSY conns 1000, 10
#   SCENARIOS        any of: send ping closed        "send ping"
#     closed: fan-out to FANOUT_CONNS (10000) subscribers, open loop at 20
#     events/s and closed loop (at most CLOSED_WINDOW (4) events not yet at
#     every subscriber, PUBLISHERS (4) publisher connections); its own table.
#
# The baselines are built as ../shared/baselines/README.md says; nothing else
# depends on them. A server that lacks something shows the error in its JSON
# line and "n/a" in the table. One process may open 20,000 files here: the
# servers hold 18,000 connections, and the load generator spreads more than
# --per-process (18,000) over child processes.
set -euo pipefail
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"
require_bench scaling.sh
raise_fd_limit

CONNS_LIST=${CONNS_LIST:-"2000 10000 18000"}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
SEND_RATE=${SEND_RATE:-1000}
PING_RATE=${PING_RATE:-1000}
BUSY=${BUSY:-10}
SCENARIOS=${SCENARIOS:-"send ping"}
FANOUT_CONNS=${FANOUT_CONNS:-10000}
CLOSED_WINDOW=${CLOSED_WINDOW:-4}
PUBLISHERS=${PUBLISHERS:-4}

if [ $# -eq 0 ]; then
    echo "usage: benches/scaling.sh NAME=SERVER_BINARY..." >&2
    exit 2
fi
for scenario in $SCENARIOS; do
    case $scenario in
        send | ping | closed) ;;
        *) echo "scaling.sh: unknown scenario $scenario (send, ping, closed)" >&2; exit 2 ;;
    esac
done
for server in "$@"; do
    [ -x "${server#*=}" ] || echo "scaling.sh: ${server%%=*}: no server binary at ${server#*=}; its runs will say so" >&2
done

lines=$(mktemp)
trap 'rm -f "$lines"' EXIT

# run NAME BIN SCENARIO CONNS ARGS...: one run, its JSON line printed and kept.
run() {
    local name=$1 bin=$2 scenario=$3 conns=$4 result line
    shift 4
    result=$(bench_against "$bin" --conns "$conns" --duration "$SECONDS_PER_RUN" "$@")
    line="{\"server\":\"$name\",\"scenario\":\"$scenario\",\"conns\":$conns,\"result\":$result}"
    echo "$line"
    echo "$line" >>"$lines"
    sleep 1
}

for scenario in $SCENARIOS; do
    case $scenario in
        send | ping)
            for conns in $CONNS_LIST; do
                for server in "$@"; do
                    if [ "$scenario" = send ]; then
                        run "${server%%=*}" "${server#*=}" send "$conns" send --rate "$SEND_RATE"
                    else
                        run "${server%%=*}" "${server#*=}" ping "$conns" ping --busy "$BUSY" --rate "$PING_RATE"
                    fi
                done
            done
            ;;
        closed)
            for server in "$@"; do
                run "${server%%=*}" "${server#*=}" fanout20 "$FANOUT_CONNS" fanout --rate 20
                run "${server%%=*}" "${server#*=}" fanoutclosed "$FANOUT_CONNS" \
                    fanout --closed-window "$CLOSED_WINDOW" --publishers "$PUBLISHERS"
            done
            ;;
    esac
done

echo
python3 - "$lines" "$CONNS_LIST" "$@" <<'EOF'
import json
import sys

path, conns_list = sys.argv[1], sys.argv[2].split()
servers = [s.split("=", 1)[0] for s in sys.argv[3:]]
runs = {}
for line in open(path):
    run = json.loads(line)
    runs[(run["server"], run["scenario"], str(run["conns"]))] = run["result"]


def cell(result, key, fmt, note_loss=True):
    """The figure; "n/a (why)" when the run has none; "-" when there was no run."""
    if result is None:
        return "-"
    value = result.get(key)
    if not result.get("ok") or not isinstance(value, (int, float)):
        return "n/a (" + str(result.get("error") or f"no {key}")[:70] + ")"
    lost = result.get("lost")
    return fmt.format(value) + (f" (lost {lost})" if note_loss and lost else "")


def ratio(first, last):
    try:
        return f"{float(last.split()[0]) / float(first.split()[0]):.2f}x"
    except (ValueError, ZeroDivisionError):
        return "n/a"


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


if any(scenario in ("send", "ping") for _, scenario, _ in runs):
    rows = []
    first, last = conns_list[0], conns_list[-1]
    for server in servers:
        cells = {}
        for conns in conns_list:
            cells[conns] = (
                cell(runs.get((server, "send", conns)), "cpu_us_per_event", "{:.1f}"),
                cell(runs.get((server, "ping", conns)), "cpu_us_per_ping", "{:.1f}"),
            )
            rows.append([server, conns, *cells[conns]])
        if first != last:
            rows.append([server, f"ratio {last}/{first}", *map(ratio, cells[first], cells[last])])
    table(["server", "conns", "µs CPU per send", "µs CPU per ping"], rows)

rows = []
for (server, scenario, conns), result in runs.items():
    if scenario not in ("fanout20", "fanoutclosed"):
        continue
    kind = "20 events/s" if scenario == "fanout20" else f"closed, window {result.get('closed_window', '?')}"
    latency = result.get("latency_ms") or {}
    rows.append([
        server,
        f"{kind}, {conns} subscribers",
        cell(result, "deliveries_per_s", "{:,.0f}", note_loss=False),
        cell(result, "server_cpu_s_per_million", "{:.2f}", note_loss=False),
        f"{latency.get('p50', 'n/a')} / {latency.get('p99', 'n/a')}",
        str(result.get("lost", "n/a")),
    ])
if rows:
    table(["server", "fan-out", "deliveries/s", "s CPU per million deliveries", "p50 / p99 ms", "lost"], rows)
EOF
