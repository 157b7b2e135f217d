#!/usr/bin/env python3
"""Server RSS under a connection attack, and how much of it comes back.

Starts BINARY (SHARDS=2 by default, a free loopback port), opens --conns
connections of one kind, holds them --hold seconds, closes them (all that
--waves times: a churn), and samples the server's RSS (VmRSS) and peak
(VmHWM) from /proc along the way:

  head      each sends the start of a request head of --head-kb KiB that
            never ends (the 390 KB head storm);
  idle      each connects and sends nothing;
  requests  each makes one keep-alive GET /health and stays open.

With --trim, glibc's malloc_trim(0) is called in the server through gdb
after the last sample, and RSS sampled once more: what the allocator held
that it could give back. The server's environment is this one's, so
MALLOC_ARENA_MAX or LD_PRELOAD (another allocator) apply to it.
Prints one JSON line. Loopback only; every wait is bounded.
"""

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def health(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wait_healthy(port, proc):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        if health(port):
            return
        time.sleep(0.05)
    sys.exit("server did not answer /health within 15 s")


def open_all(port, conns):
    socks = []
    for _ in range(conns):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    return socks


def send_heads(socks, head_kb, limit_s):
    """Sends each socket its unfinished head, as far as the server takes it."""
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (head_kb * 1024)
    sel = selectors.DefaultSelector()
    left = {}
    for s in socks:
        s.setblocking(False)
        left[s] = memoryview(head)
        sel.register(s, selectors.EVENT_WRITE)
    deadline = time.monotonic() + limit_s
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                n = s.send(left[s][:65536])
                left[s] = left[s][n:]
            except BlockingIOError:
                continue
            except OSError:
                left[s] = left[s][:0]
            if not left[s]:
                sel.unregister(s)
                del left[s]
    return len(socks) - len(left)


def keepalive_requests(socks):
    ok = 0
    for s in socks:
        try:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            if s.recv(4096).startswith(b"HTTP/1.1 200"):
                ok += 1
        except OSError:
            pass
    return ok


def trim(pid):
    subprocess.run(
        ["gdb", "-p", str(pid), "-batch", "-ex", "call (int) malloc_trim(0)"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--mode", choices=["head", "idle", "requests"], default="head")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--head-kb", type=int, default=390)
    ap.add_argument("--hold", type=float, default=5)
    ap.add_argument("--waves", type=int, default=1, help="open, hold and close the connections this often")
    ap.add_argument("--after", default="1,10,70", help="seconds after closing to sample RSS")
    ap.add_argument("--shards", default="2")
    ap.add_argument("--trim", action="store_true")
    ap.add_argument("--log", help="file for the server's stderr (RUST_LOG, default error)")
    args = ap.parse_args()

    port = free_port()
    env = dict(os.environ, JWT_SECRET="benchsecret", SHARDS=args.shards, PORT=str(port),
               BIND_ADDR="127.0.0.1")
    env.setdefault("RUST_LOG", "error")
    log = open(args.log, "w") if args.log else subprocess.DEVNULL
    proc = subprocess.Popen([args.binary], env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_healthy(port, proc)
        result = {"binary": args.binary, "mode": args.mode, "start_rss_kb": status_kb(proc.pid, "VmRSS")}
        result["opened"] = 0
        for _ in range(args.waves):
            socks = open_all(port, args.conns)
            result["opened"] += len(socks)
            if args.mode == "head":
                result["heads_sent"] = send_heads(socks, args.head_kb, 30)
            elif args.mode == "requests":
                result["answered"] = keepalive_requests(socks)
            time.sleep(args.hold)
            result["held_rss_kb"] = status_kb(proc.pid, "VmRSS")
            result["peak_rss_kb"] = status_kb(proc.pid, "VmHWM")
            result["still_open"] = sum(1 for s in socks if still_open(s))
            for s in socks:
                s.close()
        closed_at = time.monotonic()
        for after in (float(a) for a in args.after.split(",")):
            time.sleep(max(0.0, closed_at + after - time.monotonic()))
            result[f"rss_kb_{after:g}s_after"] = status_kb(proc.pid, "VmRSS")
        if args.trim:
            trim(proc.pid)
            result["rss_kb_after_trim"] = status_kb(proc.pid, "VmRSS")
        result["healthy_after"] = health(port)
        print(json.dumps(result))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def still_open(s):
    """Whether the server has not closed this connection (a peek, non-blocking)."""
    s.setblocking(False)
    try:
        data = s.recv(1, socket.MSG_PEEK)
        return data != b"" and not data.startswith(b"H")
    except BlockingIOError:
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
