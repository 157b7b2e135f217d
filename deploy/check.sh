#!/usr/bin/env bash
# Checks of deploy/ (deploy/.env.example included) that need no Docker engine, one line per
# check: "ok: ...", "skipped: <why>" or "FAILED: ...". Exits 1 if any failed.
#
#   bash deploy/check.sh
#
# Installs what a check needs when it is missing and we are root with apt
# (haproxy, python3-yaml), without starting any service.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
ok() { printf 'ok: %s\n' "$*"; }
skipped() { printf 'skipped: %s\n' "$*"; }
fail() {
    printf 'FAILED: %s\n' "$1"
    [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/    /'
    failed=1
}

scratch=$(mktemp -d)
policy_rc=""
cleanup() {
    [ -z "$policy_rc" ] || rm -f "$policy_rc"
    rm -rf "$scratch"
}
trap cleanup EXIT

# apt-get install, quietly, with services kept from starting (policy-rc.d
# answers "not allowed" to invoke-rc.d while it exists).
apt_updated=""
apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy_rc=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
        chmod 755 "$policy_rc"
    fi
    if [ -z "$apt_updated" ]; then
        apt-get update -qq >/dev/null && apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
    local status=$?
    if [ -n "$policy_rc" ]; then
        rm -f "$policy_rc"
        policy_rc=""
    fi
    return $status
}

# A python3 that has PyYAML, installing Debian's when none has.
python_yaml() {
    local py
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import yaml' 2>/dev/null; then
            command -v "$py"
            return 0
        fi
    done
    apt_install python3-yaml && /usr/bin/python3 -c 'import yaml' 2>/dev/null && echo /usr/bin/python3
}

# Where cargo puts its builds: CARGO_TARGET_DIR when set, as cargo itself reads it.
target_dir=${CARGO_TARGET_DIR:-target}

# A built server binary, newest first, for the checks that can use one.
built_binary() {
    local b
    # The newer of the two builds: a stale release binary would check old code.
    b=$(ls -t "$target_dir/release/realtime" "$target_dir/debug/realtime" 2>/dev/null | head -n 1)
    [ -n "$b" ] && [ -x "$b" ] && echo "$b"
}

check_haproxy() {
    local cfg=deploy/haproxy.cfg out
    if ! command -v haproxy >/dev/null 2>&1 && ! apt_install haproxy; then
        fail "haproxy -c: haproxy is not installed and could not be installed (needs root and apt)"
        return
    fi
    # -dW: any warning fails the check as well.
    if out=$(haproxy -c -dW -f "$cfg" 2>&1); then
        ok "haproxy -c -dW -f $cfg ($(haproxy -v | head -n 1 | awk '{print $1, $2, $3}'))"
    else
        fail "haproxy -c -dW -f $cfg" "$out"
    fi
}

check_compose() {
    local file=deploy/docker-compose.yml out py
    # `config` interpolates: give the required variables a placeholder.
    if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
        if out=$(JWT_SECRET=check-placeholder docker compose -f "$file" config -q 2>&1); then
            ok "docker compose -f $file config ($(docker compose version --short))"
        else
            fail "docker compose -f $file config" "$out"
        fi
        return
    fi
    if ! py=$(python_yaml); then
        fail "$file: no docker compose and no python3 with PyYAML to parse it"
        return
    fi
    if out=$("$py" - "$file" <<'PY' 2>&1
import os, sys, yaml

path = sys.argv[1]
base = os.path.dirname(path)
doc = yaml.safe_load(open(path))
services = doc["services"]
problems = []
for name in ("redis", "api1", "api2", "lb"):
    if name not in services:
        problems.append(f"no service {name}")
for name in ("api1", "api2"):
    svc = services.get(name) or {}
    env = svc.get("environment") or {}
    if ":?" not in str(env.get("JWT_SECRET", "")):
        problems.append(f"{name}: JWT_SECRET must be required (${{JWT_SECRET:?...}})")
    if env.get("REDIS_URL") != "redis://redis:6379":
        problems.append(f"{name}: REDIS_URL must point at the redis service")
    profiles = [o.split("=", 1)[1] for o in svc.get("security_opt", []) if o.startswith("seccomp=")]
    if not profiles or not os.path.isfile(os.path.join(base, profiles[0])):
        problems.append(f"{name}: security_opt must name the seccomp profile next to the file")
    if "memlock" not in (svc.get("ulimits") or {}):
        problems.append(f"{name}: no memlock ulimit")
    if "api" not in svc.get("networks", {}).get("default", {}).get("aliases", []):
        problems.append(f"{name}: not in the network alias 'api' that haproxy.cfg resolves")
lb_volumes = (services.get("lb") or {}).get("volumes", [])
if not any(v.startswith("./haproxy.cfg:") for v in lb_volumes):
    problems.append("lb: haproxy.cfg is not mounted")
if problems:
    sys.exit("\n".join(problems))
PY
    ); then
        skipped "docker compose config: no compose plugin here ($(docker --version 2>/dev/null || echo 'no docker client')); instead:"
        ok "$file parses as YAML with redis, api1, api2 and lb wired as expected"
    else
        fail "$file (YAML parse)" "$out"
    fi
}

check_systemd() {
    local unit=deploy/realtime.service out bin exposure
    if ! command -v systemd-analyze >/dev/null 2>&1; then
        skipped "systemd-analyze verify $unit: systemd-analyze is not installed"
        return
    fi
    # verify insists that ExecStart= exists; the install path rarely does on
    # a build machine, so the copy under test points at a built binary (or
    # /bin/true). Everything else is verified as written. Unknown keys and
    # bad values are only warnings for systemd: any output fails the check.
    bin=$(built_binary) && bin=$(realpath "$bin") || bin=/bin/true
    sed "s|^ExecStart=/usr/local/bin/realtime|ExecStart=$bin|" "$unit" >"$scratch/realtime.service"
    if out=$(systemd-analyze verify --man=no "$scratch/realtime.service" 2>&1) && [ -z "$out" ]; then
        exposure=$(systemd-analyze security --offline=true "$scratch/realtime.service" 2>/dev/null |
            sed -n 's/.*Overall exposure level for realtime.service: //p') || true
        ok "systemd-analyze verify $unit (ExecStart checked as $bin; exposure ${exposure:-n/a})"
    else
        fail "systemd-analyze verify $unit" "$out"
    fi
}

check_seccomp() {
    local profile=deploy/seccomp-io-uring.json out
    if out=$(python3 - "$profile" <<'PY' 2>&1
import json, sys

profile = json.load(open(sys.argv[1]))
allowed = set()
for rule in profile["syscalls"]:
    if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args") and not rule.get("includes"):
        allowed.update(rule["names"])
missing = {"io_uring_setup", "io_uring_enter", "io_uring_register"} - allowed
problems = []
if missing:
    problems.append("not allowed: " + ", ".join(sorted(missing)))
# A default profile denies what it does not list; an allow-all one is not it.
if profile.get("defaultAction") != "SCMP_ACT_ERRNO" or len(allowed) < 300:
    problems.append("not Docker's default profile (deny by default, ~370 calls allowed)")
if problems:
    sys.exit("\n".join(problems))
PY
    ); then
        ok "$profile is JSON, Docker's default plus io_uring_setup, io_uring_enter, io_uring_register"
    else
        fail "$profile" "$out"
    fi
}

check_env_example() {
    local example=deploy/.env.example vars missing="" var value bin dir port pid status=0
    if ! bin=$(built_binary); then
        # CI builds the binary before this script runs: missing there, it is a failure, not a skip.
        if [ "${CI:-}" = true ]; then
            fail "$example: no built binary ($target_dir/*/realtime) to list its variables"
        else
            skipped "$example: no built binary ($target_dir/*/realtime) to list its variables"
        fi
        return
    fi
    # The variables the server reads, as its own --help names them: the file
    # documents the binary it ships with, no more and no less.
    vars=$("$bin" serve --help | sed -n 's/.*\[env: \([A-Z_]*\)[]=].*/\1/p' | sort -u)
    if [ -z "$vars" ]; then
        fail "$bin serve --help names no [env: ...] variables"
        return
    fi
    for var in $vars; do
        # A variable whose empty value is refused (JWT_SECRET) is commented out.
        grep -Eq "^(# )?$var=" "$example" || missing="$missing $var"
    done
    if [ -n "$missing" ]; then
        fail "$example lacks:$missing"
        return
    fi
    ok "$example sets all $(wc -w <<<"$vars") variables that $bin serve --help names"
    bin=$(realpath "$bin")
    # The run below overrides PORT (a free one) and SHARDS (1, to be quick):
    # their values in the file are checked here instead.
    value=$(sed -n 's/^PORT=//p' "$example")
    if ! [[ "$value" =~ ^[1-9][0-9]{0,4}$ ]] || [ "$value" -gt 65535 ]; then
        fail "$example: PORT=$value is not a port number"
        return
    fi
    value=$(sed -n 's/^SHARDS=//p' "$example")
    if ! [[ "$value" =~ ^([1-9][0-9]*)?$ ]]; then
        fail "$example: SHARDS=$value is neither empty nor a positive number"
        return
    fi
    dir="$scratch/env" && mkdir -p "$dir" && cp "$example" "$dir/.env"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    (cd "$dir" && exec env PORT="$port" SHARDS=1 "$bin" >"$dir/stdout" 2>"$dir/stderr") &
    pid=$!
    for _ in $(seq 50); do
        grep -q listening "$dir/stderr" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q listening "$dir/stderr"; then
        kill -TERM "$pid"
        wait "$pid" || true
        ok "$example accepted by $bin as its .env"
    else
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" || status=$?
        fail "$example refused by $bin (exit $status)" "$(tail -n 5 "$dir/stderr")"
    fi
}

check_sysctl() {
    local conf=deploy/sysctl.conf line key value bad="" n=0
    while IFS= read -r line; do
        case "$line" in '' | '#'* | ';'*) continue ;; esac
        if [[ ! "$line" =~ ^-?[a-z0-9_.][a-z0-9_.-]*\ =\ [0-9][0-9\ ]*$ ]]; then
            bad="$bad"$'\n'"malformed: $line"
            continue
        fi
        n=$((n + 1))
        key=${line%% =*}
        # A "-" key may be absent (module not loaded); the others must exist.
        if [ "${key#-}" = "$key" ] && [ -d /proc/sys ] && [ ! -e "/proc/sys/${key//.//}" ]; then
            bad="$bad"$'\n'"unknown to this kernel: $key"
        fi
    done <"$conf"
    if [ -n "$bad" ]; then
        fail "$conf" "${bad#$'\n'}"
    else
        ok "$conf: $n settings, well-formed, keys known to this kernel"
    fi
}

check_dockerfile() {
    local file=deploy/Dockerfile problems=""
    [ "$(grep -c '^FROM ' "$file")" -ge 2 ] || problems="$problems not multi-stage;"
    grep -q '^USER [1-9]' "$file" || problems="$problems no non-root numeric USER;"
    grep -q '^HEALTHCHECK .*' "$file" && grep -q '/health' "$file" || problems="$problems no HEALTHCHECK on /health;"
    [ -f deploy/Dockerfile.dockerignore ] && grep -q '^target/' deploy/Dockerfile.dockerignore ||
        problems="$problems target/ not kept out of the build context;"
    if [ -n "$problems" ]; then
        fail "$file:$problems"
    else
        ok "$file: multi-stage, non-root USER, HEALTHCHECK on /health, target/ ignored (not built: no Docker engine)"
    fi
}

check_haproxy
check_compose
check_systemd
check_seccomp
check_env_example
check_sysctl
check_dockerfile

if [ "$failed" != 0 ]; then
    echo "deploy/check.sh: some checks FAILED"
    exit 1
fi
echo "deploy/check.sh: all checks passed"
