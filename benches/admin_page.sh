#!/usr/bin/env bash
# What the operator page costs the server (README, Operator page): CONNS
# (10,000) idle connections held by the load generator against a fresh
# server (SHARDS=2, API_KEY set), then the server's CPU seconds (utime +
# stime from /proc) over WINDOW_S (60) seconds without the page, and over
# WINDOW_S with the page open in headless Chromium (benches/admin_page.mjs,
# polling /api/admin/stats every second); then REQUESTS (1,000) stats
# requests back to back on one kept-alive connection, for the CPU of one.
# CPU time, not wall time: the machine may be shared. Needs
# `npm ci --prefix tests/browser` and Chromium.
# Usage: benches/admin_page.sh      prints one JSON line
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
source benches/common.sh

SERVER=${SERVER:-target/release/realtime}
CONNS=${CONNS:-10000}
WINDOW_S=${WINDOW_S:-60}
REQUESTS=${REQUESTS:-1000}
SECRET=benchsecret
KEY=bench-admin-key
require_bench admin_page.sh
raise_fd_limit
trap kill_started EXIT

port=$(free_port)
start_server "$port" API_KEY=$KEY
ready=$(mktemp -u)
"$BENCH" --url "ws://127.0.0.1:$port" --secret $SECRET --conns "$CONNS" --duration $((3 * WINDOW_S + 60)) \
    --ready-file "$ready" idle >/dev/null 2>&1 &
PIDS+=("$!")
for _ in $(seq 1200); do [ -e "$ready" ] && break; sleep 0.1; done
[ -e "$ready" ] || { echo "the $CONNS connections were not all open within 120 s" >&2; exit 1; }
rm -f "$ready"

before=$(cpu_s "$SERVER_PID")
sleep "$WINDOW_S"
idle=$(awk -v a="$before" -v b="$(cpu_s "$SERVER_PID")" 'BEGIN { printf "%.3f", b - a }')

out=$(mktemp)
PORT=$port API_KEY=$KEY HOLD_S=$WINDOW_S READY_FILE=$ready timeout $((WINDOW_S + 60)) node benches/admin_page.mjs >"$out" &
node_pid=$!
PIDS+=("$node_pid")
for _ in $(seq 600); do [ -e "$ready" ] && break; sleep 0.1; done
[ -e "$ready" ] || { echo "the page was not live within 60 s" >&2; exit 1; }
before=$(cpu_s "$SERVER_PID")
wait "$node_pid"
with_page=$(awk -v a="$before" -v b="$(cpu_s "$SERVER_PID")" 'BEGIN { printf "%.3f", b - a }')
page=$(tail -n 1 "$out")
rm -f "$ready" "$out"

before=$(cpu_s "$SERVER_PID")
curl -sf -o /dev/null -H "X-API-Key: $KEY" "http://127.0.0.1:$port/api/admin/stats?n=[1-$REQUESTS]"
per_request=$(awk -v a="$before" -v b="$(cpu_s "$SERVER_PID")" -v n="$REQUESTS" 'BEGIN { printf "%.1f", (b - a) / n * 1e6 }')

echo "{\"conns\":$CONNS,\"window_s\":$WINDOW_S,\"server_cpu_s_without_page\":$idle,\"server_cpu_s_with_page\":$with_page,\"page\":$page,\"server_cpu_us_per_stats_request\":$per_request}"
