#!/usr/bin/env python3
"""The presence attacks of issue 24, scaled down, against a server binary
this script starts (SHARDS=2, a free loopback port; helpers from attacks.py).
Standard library only; one JSON line per run.

  benches/presence_attack.py crowd BINARY [--members N] [--admins K] [--redis URL]
      N sellers and K admins in `all` each send one
      {"type":"presence","room":"all"} at once and read their answer.
      Reports the server's RSS before, its peak (VmHWM) and RSS 2 s after
      the last answer; with --redis (a running redis-server), Redis's
      used_memory_peak too.
  benches/presence_attack.py rate BINARY [--members N] [--askers 10] [--per-second 95] [--seconds S] [--redis URL]
      N idle members; the askers send presence queries of `all` at the
      given rate each. Reports server CPU seconds per wall second and how
      many queries were answered and refused.
  benches/presence_attack.py churn BINARY [--members N] [--seconds S] [--redis URL]
      PRESENCE_EVENTS=true, N sellers in `orders` (read by one thread); one
      token connects, subscribes to `orders` and closes, in a loop.
      Reports cycles, deliveries (realtime_deliveries_total) and server
      CPU seconds, over the loop and the 3 s after it.

Without a server build of your own: cargo build --release, then
benches/presence_attack.py crowd target/release/realtime --members 3000.
"""

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attacks import Server, cpu_seconds, frame, ws_connect  # noqa: E402


def read_frame(sock):
    """One unmasked server frame's (opcode, payload); None at end of stream."""

    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    head = exactly(2)
    if head is None:
        return None
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(exactly(2), "big")
    elif n == 127:
        n = int.from_bytes(exactly(8), "big")
    return head[0] & 0x0F, exactly(n)


def read_json(sock):
    while True:
        got = read_frame(sock)
        if got is None:
            raise SystemExit("connection closed")
        opcode, payload = got
        if opcode == 1:
            return json.loads(payload)


def connect(server, user, role, rooms=()):
    sock = ws_connect(server.port, user, role)
    sock.settimeout(30)
    assert read_json(sock)["type"] == "connected"
    for room in rooms:
        sock.sendall(frame(1, json.dumps({"type": "subscribe", "room": room}).encode()))
        assert read_json(sock)["type"] == "subscribed"
    return sock


ASK = frame(1, b'{"type":"presence","room":"all"}')


def crowd(args):
    server = Server(args.binary, 2, redis_env(args))
    try:
        socks = [connect(server, f"s{i}", "seller") for i in range(args.members)]
        socks += [connect(server, f"a{i}", "admin") for i in range(args.admins)]
        redis_peak = lambda: redis_info(args.redis, "used_memory_peak")  # noqa: E731
        before, redis_before = server.rss_kib(), redis_peak()
        for s in socks:
            s.sendall(ASK)
        answers = [read_json(s) for s in socks]
        kinds = {}
        for a in answers:
            kinds[a["type"]] = kinds.get(a["type"], 0) + 1
        peak = server.peak_kib()
        time.sleep(2)
        print(
            json.dumps(
                {
                    "attack": "crowd",
                    "members": len(socks),
                    "redis": bool(args.redis),
                    "answers": kinds,
                    "rss_before_kib": before,
                    "rss_peak_kib": peak,
                    "rss_after_kib": server.rss_kib(),
                    "redis_used_memory_peak_before": redis_before,
                    "redis_used_memory_peak": redis_peak(),
                }
            )
        )
    finally:
        server.stop()


def redis_info(url, field):
    if not url:
        return None
    port = url.rsplit(":", 1)[1].split("/")[0]
    out = subprocess.run(["redis-cli", "-p", port, "INFO", "memory"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":")[1])
    return None


def redis_env(args):
    return {"REDIS_URL": args.redis} if args.redis else {}


def rate(args):
    server = Server(args.binary, 2, redis_env(args))
    try:
        idle = [connect(server, f"m{i}", "seller") for i in range(args.members)]
        askers = [connect(server, f"q{i}", "seller") for i in range(args.askers)]
        counts = {"presence": 0, "error": 0}
        stop = time.time() + args.seconds

        def ask(sock):
            gap = 1.0 / args.per_second
            next_at = time.time()
            while time.time() < stop:
                sock.sendall(ASK)
                counts[read_json(sock)["type"]] += 1
                next_at += gap
                time.sleep(max(0.0, next_at - time.time()))

        cpu0, t0 = cpu_seconds(server.proc.pid), time.time()
        threads = [threading.Thread(target=ask, args=(s,)) for s in askers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu = (cpu_seconds(server.proc.pid) - cpu0) / (time.time() - t0)
        result = {"attack": "rate", "members": len(idle), "redis": bool(args.redis), "answers": counts}
        print(json.dumps({**result, "server_cpu": round(cpu, 3)}))
    finally:
        server.stop()


def churn(args):
    server = Server(args.binary, 2, {"PRESENCE_EVENTS": "true", "HISTORY_SIZE": "0", **redis_env(args)})
    try:
        members = [connect(server, f"m{i}", "seller", ["orders"]) for i in range(args.members)]
        for s in members:
            s.setblocking(False)
        done = threading.Event()

        def drain():
            sel = selectors.DefaultSelector()
            for s in members:
                sel.register(s, selectors.EVENT_READ)
            while not done.is_set():
                for key, _ in sel.select(0.2):
                    try:
                        key.fileobj.recv(1 << 16)
                    except BlockingIOError:
                        pass

        reader = threading.Thread(target=drain)
        reader.start()
        delivered0, cpu0 = server.metric("realtime_deliveries_total"), cpu_seconds(server.proc.pid)
        cycles, stop = 0, time.time() + args.seconds
        while time.time() < stop:
            s = connect(server, "churner", "seller", ["orders"])
            s.sendall(frame(8, b"\x03\xe8"))
            s.close()
            server.wait_connections(len(members))
            cycles += 1
        time.sleep(3)
        delivered = server.metric("realtime_deliveries_total") - delivered0
        cpu = cpu_seconds(server.proc.pid) - cpu0
        done.set()
        reader.join()
        print(
            json.dumps(
                {
                    "attack": "churn",
                    "members": len(members),
                    "redis": bool(args.redis),
                    "cycles": cycles,
                    "deliveries": int(delivered),
                    "deliveries_per_cycle": round(delivered / max(cycles, 1), 1),
                    "server_cpu_seconds": round(cpu, 2),
                }
            )
        )
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="attack", required=True)
    p = sub.add_parser("crowd")
    p.add_argument("binary")
    p.add_argument("--members", type=int, default=3000)
    p.add_argument("--admins", type=int, default=0)
    p.add_argument("--redis")
    p.set_defaults(run=crowd)
    p = sub.add_parser("rate")
    p.add_argument("binary")
    p.add_argument("--members", type=int, default=3000)
    p.add_argument("--askers", type=int, default=10)
    p.add_argument("--per-second", type=float, default=95)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--redis")
    p.set_defaults(run=rate)
    p = sub.add_parser("churn")
    p.add_argument("binary")
    p.add_argument("--members", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=11)
    p.add_argument("--redis")
    p.set_defaults(run=churn)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
