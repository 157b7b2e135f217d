#!/usr/bin/env bash
# Server CPU per handshake by token algorithm: the storm scenario against a
# fresh server per run, HS256 (JWT_SECRET) and RS256, ES256 and EdDSA
# (JWT_PUBLIC_KEY; key pairs made here with openssl), in rounds that rotate
# the order, so the four share the machine's state alike. One JSON line per
# run, then the median µs per handshake of each algorithm.
#
#   cargo build --release
#   benches/token_algorithms.sh [SERVER]      # default target/release/realtime
#
# ROUNDS (3), SECONDS_PER_RUN (8) and CONCURRENCY (64) change the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
. benches/common.sh

SERVER=${1:-target/release/realtime}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
CONCURRENCY=${CONCURRENCY:-64}
require_bench "$0"
raise_fd_limit

keys=$(mktemp -d)
results=$(mktemp)
trap 'rm -rf "$keys" "$results"' EXIT
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$keys/RS256.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$keys/ES256.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$keys/EdDSA.pem" 2>/dev/null
for alg in RS256 ES256 EdDSA; do
    openssl pkey -in "$keys/$alg.pem" -pubout -out "$keys/$alg.pub.pem"
done

algorithms=(HS256 RS256 ES256 EdDSA)
storm=(--threads 2 --duration "$SECONDS_PER_RUN" storm --concurrency "$CONCURRENCY")
for round in $(seq "$ROUNDS"); do
    for i in 0 1 2 3; do
        alg=${algorithms[$(((i + round) % 4))]}
        if [ "$alg" = HS256 ]; then
            line=$(bench_against "$SERVER" "${storm[@]}")
        else
            line=$(JWT_PUBLIC_KEY="$keys/$alg.pub.pem" bench_against "$SERVER" "${storm[@]}" \
                --private-key "$keys/$alg.pem")
        fi
        echo "{\"algorithm\":\"$alg\",\"round\":$round,\"result\":$line}" | tee -a "$results"
    done
done

echo
printf '%-7s %s\n' algorithm "server CPU µs per handshake (median; runs)"
for alg in "${algorithms[@]}"; do
    jq -r --arg alg "$alg" 'select(.algorithm == $alg) | .result.server_cpu_us_per_handshake // "n/a"' "$results" |
        sort -g | awk -v alg="$alg" '{ v[NR] = $1 } END {
            runs = ""; for (i = 1; i <= NR; i++) runs = runs (i > 1 ? " " : "") v[i];
            printf "%-7s %s (%s)\n", alg, v[int((NR + 1) / 2)], runs }'
done
