#!/usr/bin/env python3
"""Disconnects sent while an instance's subscribers are away (README,
Presence and control): how many answered 202 and closed nothing.

Starts a redis-server and two instances of BINARY on free loopback ports (A
on a Redis user of its own, B on the default one; SHARDS=2 each). Each round
opens --sessions sessions of a fresh user on A, cuts A's subscribers off
(`ACL SETUSER a off`, `CLIENT KILL TYPE pubsub USER a`: its publishers stay)
and waits until A's /health says `disconnected`, sends the disconnect to B,
lets A back in and waits until A says `connected`, then gives the sessions
--grace seconds to be closed with 4003. Prints one JSON line. Standard
library only (and redis-server, redis-cli); every wait is bounded.

  benches/control_blip.py BINARY [--rounds 10] [--sessions 4] [--grace 3]
"""

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attacks import Server, free_port, ws_connect  # noqa: E402


def redis_cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10)
    return out.stdout.strip()


def health(server):
    return json.loads(server.get("/health"))


def wait_redis(server, state, timeout=30):
    deadline = time.time() + timeout
    while health(server).get("redis") != state:
        if time.time() > deadline:
            raise SystemExit(f"redis did not become {state} within {timeout} s")
        time.sleep(0.05)


def disconnect(server, user):
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/api/users/{user}/disconnect", data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def closed_with(sock, deadline):
    """The close code the server sent before `deadline`, or None."""
    buf = b""
    while True:
        left = deadline - time.time()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            return None
        if not chunk:
            return None
        buf += chunk
        while len(buf) >= 2:
            opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                n, at = struct.unpack(">H", buf[2:4])[0], 4
            elif n == 127:
                n, at = struct.unpack(">Q", buf[2:10])[0], 10
            if len(buf) < at + n:
                break
            if opcode == 8:
                return struct.unpack(">H", buf[at:at + 2])[0] if n >= 2 else 1005
            buf = buf[at + n:]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--grace", type=float, default=3)
    args = ap.parse_args()

    rport = free_port()
    workdir = tempfile.mkdtemp(prefix="control-blip-")
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no",
                              "--dir", workdir], stdout=subprocess.DEVNULL)
    servers = []
    try:
        deadline = time.time() + 10
        while redis_cli(rport, "PING") != "PONG":
            if time.time() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)
        redis_cli(rport, "ACL", "SETUSER", "a", "on", ">a-pw", "allkeys", "allchannels", "+@all")
        a = Server(args.binary, 2, {"REDIS_URL": f"redis://a:a-pw@127.0.0.1:{rport}"})
        servers.append(a)
        b = Server(args.binary, 2, {"REDIS_URL": f"redis://127.0.0.1:{rport}"})
        servers.append(b)
        wait_redis(a, "connected")
        wait_redis(b, "connected")
        result = {"binary": args.binary, "rounds": args.rounds, "sessions": args.sessions,
                  "answered_202": 0, "other_answers": [], "sessions_closed": 0, "did_nothing_202": 0}
        for r in range(args.rounds):
            user = f"blip-{r}"
            socks = [ws_connect(a.port, user, "client") for _ in range(args.sessions)]
            redis_cli(rport, "ACL", "SETUSER", "a", "off")
            redis_cli(rport, "CLIENT", "KILL", "TYPE", "pubsub", "USER", "a")
            wait_redis(a, "disconnected")
            status = disconnect(b, user)
            redis_cli(rport, "ACL", "SETUSER", "a", "on")
            wait_redis(a, "connected")
            deadline = time.time() + args.grace
            closed = sum(1 for s in socks if closed_with(s, deadline) == 4003)
            for s in socks:
                s.close()
            if status == 202:
                result["answered_202"] += 1
                result["did_nothing_202"] += closed == 0
            else:
                result["other_answers"].append(status)
            result["sessions_closed"] += closed
        print(json.dumps(result))
    finally:
        for s in servers:
            s.stop()
        redis.kill()
        redis.wait()


if __name__ == "__main__":
    main()
