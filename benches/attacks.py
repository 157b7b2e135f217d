#!/usr/bin/env python3
"""What one client (or a few) can make the server hold: the attacks of
README's "Sizing", measured against a server binary this script starts on a
free loopback port. Standard library only; one JSON line per run.

  benches/attacks.py ping-flood BINARY [--clients N] [--seconds S]
      N clients send 125-byte pings as fast as they can and never read.
      Reports the server's peak RSS and how many pings it took.
  benches/attacks.py stalled BINARY [--stalled N] [--seconds S]
      N clients never read (every session is in `all`); one publisher sends
      ~200-byte broadcasts to `all` back to back over one keep-alive
      connection. Reports publishes/s, publishes held, peak RSS.
  benches/attacks.py per-connection BINARY [--conns N]
      The server's RSS per connection for: idle connections; an unfinished
      64 KB fragmented message each; 128 subscriptions to the longest room
      names each, none shared; a send queue of its own events filled to its
      limit each (until the first is cut off as slow).

Every run starts a fresh server (SHARDS=1 unless --shards) and kills it.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

SECRET = "attacks-secret-0123456789abcdef"


def token(user, role):
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"userId": user, "role": role, "exp": int(time.time()) + 3600}).encode())
    signing = header + b"." + claims
    signature = b64(hmac.new(SECRET.encode(), signing, hashlib.sha256).digest())
    return (signing + b"." + signature).decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, shards, env=None):
        self.port = free_port()
        full_env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "REDIS_URL")}
        full_env.update(
            {"JWT_SECRET": SECRET, "PORT": str(self.port), "BIND_ADDR": "127.0.0.1", "SHARDS": str(shards)}
        )
        full_env.update(env or {})
        self.proc = subprocess.Popen([binary], env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 15
        while True:
            try:
                self.get("/health")
                break
            except OSError:
                if time.time() > deadline:
                    self.stop()
                    raise SystemExit("server did not become healthy")
                time.sleep(0.05)

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return r.read().decode()

    def metric(self, name):
        for line in self.get("/metrics").splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def status_kib(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def rss_kib(self):
        return self.status_kib("VmRSS")

    def peak_kib(self):
        return self.status_kib("VmHWM")

    def connections(self):
        return json.loads(self.get("/health"))["connections"]

    def wait_connections(self, n, timeout=30):
        deadline = time.time() + timeout
        while self.connections() != n:
            if time.time() > deadline:
                raise SystemExit(f"connections did not reach {n}")
            time.sleep(0.05)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def ws_connect(port, user, role, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.sendall(
        (
            f"GET /ws?token={token(user, role)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise SystemExit("handshake refused")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"handshake answered {head[:40]!r}")
    return s


def frame(opcode, payload, fin=True):
    """A client frame, masked with a zero key (the payload is unchanged)."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def ping_flood(args):
    server = Server(args.binary, args.shards)
    try:
        clients = [ws_connect(server.port, f"flooder{i}", "client") for i in range(args.clients)]
        server.wait_connections(args.clients)
        idle = server.rss_kib()
        ping = frame(0x9, b"p" * 125)
        batch = ping * 64
        sent = [0] * args.clients
        until = time.time() + args.seconds

        def flood(i, s):
            s.settimeout(0.5)
            while time.time() < until:
                try:
                    s.sendall(batch)
                    sent[i] += 64
                except socket.timeout:
                    continue
                except OSError:
                    return

        threads = [threading.Thread(target=flood, args=(i, s)) for i, s in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(
            json.dumps(
                {
                    "attack": "ping-flood",
                    "clients": args.clients,
                    "seconds": args.seconds,
                    "pings_written": sum(sent),
                    "rss_idle_kib": idle,
                    "peak_rss_kib": server.peak_kib(),
                    "rss_after_kib": server.rss_kib(),
                    "still_connected": server.connections(),
                }
            )
        )
    finally:
        server.stop()


def stalled(args):
    server = Server(args.binary, args.shards)
    try:
        readers = [ws_connect(server.port, f"stalled{i}", "client", rcvbuf=4096) for i in range(args.stalled)]
        server.wait_connections(args.stalled)
        body = json.dumps({"room": "all", "type": "bulk", "payload": {"blob": "x" * 150}}).encode()
        request = (
            f"POST /api/notifications/broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        conn = socket.create_connection(("127.0.0.1", server.port))
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = conn.makefile("rb")
        published = 0
        started = time.time()
        cpu_before = cpu_seconds(server.proc.pid)
        while time.time() - started < args.seconds:
            conn.sendall(request)
            status = reader.readline()
            length = 0
            while True:
                line = reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
            if b" 202 " not in status:
                raise SystemExit(f"publish answered {status!r}")
            published += 1
        elapsed = time.time() - started
        print(
            json.dumps(
                {
                    "attack": "stalled",
                    "stalled": args.stalled,
                    "seconds": round(elapsed, 2),
                    "publishes_per_s": round(published / elapsed),
                    "server_cpu_s": round(cpu_seconds(server.proc.pid) - cpu_before, 2),
                    "publishes_held": server.metric("realtime_publishes_held_total"),
                    "slow_client_closes": server.metric("realtime_slow_client_closes_total"),
                    "peak_rss_kib": server.peak_kib(),
                }
            )
        )
        del readers
    finally:
        server.stop()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_connection(args):
    n = args.conns
    results = {"attack": "per-connection", "conns": n}

    def measure(name, prepare, env=None):
        server = Server(args.binary, args.shards, env)
        try:
            base = server.rss_kib()
            clients = [ws_connect(server.port, f"u{i}", "admin", rcvbuf=4096) for i in range(n)]
            server.wait_connections(n)
            for s in clients:
                s.setblocking(True)
            prepare(server, clients)
            time.sleep(1)
            results[name + "_kib_per_conn"] = round((server.rss_kib() - base) / n, 1)
            del clients
        finally:
            server.stop()

    def idle(server, clients):
        pass

    def fragment(server, clients):
        # One fragment just under MAX_MESSAGE_SIZE (65536), never finished.
        part = frame(0x1, b"a" * 65000, fin=False)
        for s in clients:
            s.sendall(part)

    def rooms(server, clients):
        # Names of the longest kind, none shared with another connection.
        for c, s in enumerate(clients):
            s.sendall(
                b"".join(
                    frame(0x1, json.dumps({"type": "subscribe", "room": f"{i:064d}:{c:064d}"}).encode())
                    for i in range(128)
                )
            )

    def full_queue(server, clients):
        # Each client its own events (a shared event's bytes are held once),
        # round after round, until the first is cut off as slow.
        blob = "x" * 60000
        while server.metric("realtime_slow_client_closes_total") < 1:
            for c in range(len(clients)):
                body = json.dumps({"userId": f"u{c}", "type": "bulk", "payload": {"blob": blob}})
                req = urllib.request.Request(
                    f"http://127.0.0.1:{server.port}/api/notifications/send",
                    data=body.encode(),
                    headers={"Content-Type": "application/json"},
                )
                urllib.request.urlopen(req, timeout=10).read()

    measure("idle", idle)
    measure("fragment_64k", fragment)
    measure("rooms_128_long", rooms)
    measure("full_send_queue", full_queue)
    print(json.dumps(results))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="attack", required=True)
    for name, run, count, default in [
        ("ping-flood", ping_flood, "--clients", 1),
        ("stalled", stalled, "--stalled", 40),
        ("per-connection", per_connection, "--conns", 200),
    ]:
        p = sub.add_parser(name)
        p.add_argument("binary")
        p.add_argument(count, type=int, default=default)
        p.add_argument("--seconds", type=float, default=5 if run is ping_flood else 10)
        p.add_argument("--shards", type=int, default=1)
        p.set_defaults(run=run)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
