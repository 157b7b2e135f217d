#!/usr/bin/env bash
# The longer run of a target's properties: batches of fresh random cases
# (proptest seeds each run anew) until SECONDS have passed or a
# property fails. `cargo test` runs the same properties with a few hundred
# cases (the session's with 32).
#
#   tests/fuzz.sh TARGET [SECONDS]     (default 600; BATCH=N cases per batch)
#
# Targets: front_door rooms resp drafts envelopes jwt index session.
# Prints one line: the target, the cases each of its properties ran, the
# batches, and PASS, or FAIL with the failing batch's output (the minimal
# failing input is in it: make it a named regression test).
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-}
seconds=${2:-600}
case "$target" in
    front_door) args=(--lib runtime::front_door::properties); batch=20000 ;;
    rooms)      args=(--test properties room subscription); batch=20000 ;;
    resp)       args=(--lib bus::redis::resp::properties); batch=2000 ;;
    drafts)     args=(--test properties draft rest_types); batch=5000 ;;
    envelopes)  args=(--lib bus::redis::subscriber::properties); batch=20000 ;;
    jwt)        args=(--test properties_jwt); batch=5000 ;;
    index)      args=(--lib shard::index::properties); batch=2000 ;;
    session)    args=(--test properties_session); batch=2000 ;;
    *)
        echo "usage: tests/fuzz.sh front_door|rooms|resp|drafts|envelopes|jwt|index|session [SECONDS]" >&2
        exit 2
        ;;
esac
batch=${BATCH:-$batch}
bin_args=("${args[@]:0:2}")
filters=("${args[@]:2}")

cargo test -q "${bin_args[@]}" --no-run
log=$(mktemp)
trap 'rm -f "$log"' EXIT
end=$((SECONDS + seconds))
batches=0
while ((SECONDS < end)); do
    if ! PROPTEST_CASES=$batch cargo test -q "${bin_args[@]}" -- "${filters[@]}" >"$log" 2>&1; then
        cat "$log"
        echo "$target: FAIL in batch $((batches + 1)), after $((batches * batch)) passing cases per property"
        exit 1
    fi
    grep -q "test result: ok. [1-9]" "$log" || { cat "$log"; echo "$target: no property ran" >&2; exit 1; }
    batches=$((batches + 1))
done
echo "$target: PASS, $((batches * batch)) cases per property in $batches batches of $batch (${seconds} s)"
