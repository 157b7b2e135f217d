#!/usr/bin/env python3
"""What a client, or Redis's own past, can do to history with Redis: the
attacks of issue 24 items 3 and 4, against a server binary this script
starts on a free loopback port with a redis-server of its own. Standard
library only (and `redis-server`, `redis-cli` on PATH); one JSON line per run.

  benches/history_redis_attacks.py recovery-flood BINARY [--seconds S] [--send-queue-bytes B]
      A room of 100 events of 60 KB (6 MB of history). One connection sends
      8 `subscribe`s with `since` the room's start every 250 ms, while one
      publisher publishes small events back to back. Reports the shard
      subscribers Redis closed for passing their output buffer limit (its
      log's "overcoming of output buffer limits" lines), the publishes
      answered 503 and the subscribes answered `unavailable`.
  benches/history_redis_attacks.py restore BINARY
      100 events, an RDB snapshot, 50 more (offset 150); Redis restarted
      from the snapshot; 60 more. Reports what a client with `since`
      {150, epoch} was told and how many accepted events it silently
      missed, and how many (epoch, offset) pairs a client connected
      throughout got twice.

Every run starts a fresh server (SHARDS=2) and redis-server, and kills both.
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attacks import Server, free_port, frame, ws_connect  # noqa: E402


class Redis:
    def __init__(self, *args, dir=None):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="realtime-redis-", suffix=".log")
        self.args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.args += ["--logfile", self.log.name]
        if dir:
            self.args += ["--dir", dir, "--dbfilename", "dump.rdb"]
        self.args += list(args)
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["redis-server", *self.args], stdout=subprocess.DEVNULL)
        deadline = time.time() + 10
        while self.cli("PING") != "PONG":
            if time.time() > deadline:
                raise SystemExit("redis-server did not answer")
            time.sleep(0.05)

    def cli(self, *command):
        done = subprocess.run(["redis-cli", "-p", str(self.port), *command], capture_output=True, text=True)
        return done.stdout.strip()

    def subscribers_closed(self):
        with open(self.log.name) as log:
            return sum(1 for line in log if "overcoming of output buffer limits" in line)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Reader(threading.Thread):
    """Reads a connection's frames (unmasked, from the server) and keeps
    each JSON message."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.file = sock.makefile("rb")
        self.messages = []
        self.lock = threading.Lock()

    def run(self):
        try:
            while True:
                head = self.file.read(2)
                if len(head) < 2:
                    return
                n = head[1] & 0x7F
                if n == 126:
                    n = int.from_bytes(self.file.read(2), "big")
                elif n == 127:
                    n = int.from_bytes(self.file.read(8), "big")
                payload = self.file.read(n)
                if head[0] & 0x0F == 0x1:
                    with self.lock:
                        self.messages.append(json.loads(payload))
        except (OSError, ValueError):
            return

    def taken(self):
        with self.lock:
            return list(self.messages)

    def wait(self, done, timeout=30):
        deadline = time.time() + timeout
        while not done(self.taken()):
            if time.time() > deadline:
                raise SystemExit("the expected messages did not come")
            time.sleep(0.02)
        return self.taken()


def send(sock, message):
    sock.sendall(frame(0x1, json.dumps(message).encode()))


def publish(port, room, payload):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"room": room, "type": "t", "payload": payload})
    conn.request("POST", "/api/notifications/broadcast", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    answer = response.read()
    conn.close()
    return response.status, answer


def taken(port, room, payload, timeout=30):
    """Publishes until the server takes it (503 while a link comes back)."""
    deadline = time.time() + timeout
    while True:
        status, answer = publish(port, room, payload)
        if status == 202:
            return json.loads(answer)["id"]
        if time.time() > deadline:
            raise SystemExit(f"publish answered {status}")
        time.sleep(0.02)


def position(redis):
    epoch, offset = redis.cli("HMGET", "realtime:history-meta:orders", "epoch", "offset").splitlines()
    return epoch, int(offset)


def recovery_flood(args):
    redis = Redis()
    env = {"REDIS_URL": f"redis://127.0.0.1:{redis.port}", "HISTORY_SIZE": "100"}
    env["SEND_QUEUE_BYTES"] = str(args.send_queue_bytes)
    server = Server(args.binary, 2, env)
    try:
        pad = "x" * 60_000
        for n in range(100):
            taken(server.port, "orders", {"n": n, "pad": pad})
        epoch, _ = position(redis)
        attacker = ws_connect(server.port, "attacker", "seller")
        reader = Reader(attacker)
        reader.start()
        stop = threading.Event()
        statuses = {}

        def publisher():
            while not stop.is_set():
                status, _ = publish(server.port, "ticks", {})
                statuses[status] = statuses.get(status, 0) + 1

        thread = threading.Thread(target=publisher)
        thread.start()
        asked = 0
        until = time.time() + args.seconds
        while time.time() < until:
            for _ in range(8):
                send(attacker, {"type": "subscribe", "room": "orders", "since": {"offset": 0, "epoch": epoch}})
            asked += 8
            time.sleep(0.25)
        stop.set()
        thread.join()
        def answers_in(got):
            return [m for m in got if "id" not in m and m.get("type") != "connected"]

        answers = answers_in(reader.wait(lambda got: len(answers_in(got)) >= asked))
        total = sum(statuses.values())
        print(
            json.dumps(
                {
                    "attack": "recovery-flood",
                    "seconds": args.seconds,
                    "send_queue_bytes": args.send_queue_bytes,
                    "subscribes": asked,
                    "subscriber_kills": redis.subscribers_closed(),
                    "publishes": total,
                    "publishes_503": statuses.get(503, 0),
                    "publishes_503_pct": round(100 * statuses.get(503, 0) / max(total, 1), 1),
                    "answers_unavailable": sum(1 for m in answers if m.get("payload", {}).get("code") == "unavailable"),
                    "answers_recovered_true": sum(1 for m in answers if m.get("recovered") is True),
                    "answers_recovered_false": sum(1 for m in answers if m.get("recovered") is False),
                }
            )
        )
    finally:
        server.stop()
        redis.stop()


def restore(args):
    dir = tempfile.mkdtemp(prefix="realtime-restore-")
    redis = Redis(dir=dir)
    server = Server(args.binary, 2, {"REDIS_URL": f"redis://127.0.0.1:{redis.port}", "HISTORY_SIZE": "200"})
    try:
        throughout = ws_connect(server.port, "throughout", "seller")
        reader = Reader(throughout)
        reader.start()
        send(throughout, {"type": "subscribe", "room": "orders"})
        reader.wait(lambda got: any(m.get("type") == "subscribed" for m in got))
        for n in range(100):
            taken(server.port, "orders", {"n": n})
        redis.cli("SAVE")
        snapshot = os.path.join(dir, "old.rdb")
        shutil.copy(os.path.join(dir, "dump.rdb"), snapshot)
        for n in range(100, 150):
            taken(server.port, "orders", {"n": n})
        epoch, latest = position(redis)
        redis.stop()
        shutil.copy(snapshot, os.path.join(dir, "dump.rdb"))
        redis.start()
        after = [taken(server.port, "orders", {"n": n}) for n in range(150, 210)]

        again = ws_connect(server.port, "again", "seller")
        replay = Reader(again)
        replay.start()
        send(again, {"type": "subscribe", "room": "orders", "since": {"offset": latest, "epoch": epoch}})
        marker = taken(server.port, "all", {"marker": True})
        got = replay.wait(lambda got: any(m.get("id") == marker for m in got))
        answer = next(m for m in got if m.get("type") == "subscribed")
        replayed = {m["id"] for m in got if m.get("room") == "orders" and "id" in m}
        missed = len([i for i in after if i not in replayed]) if answer.get("recovered") else 0

        seen = reader.wait(lambda got: any(m.get("id") == marker for m in got))
        pairs = [(m["epoch"], m["offset"]) for m in seen if m.get("room") == "orders" and "id" in m]
        print(
            json.dumps(
                {
                    "attack": "restore",
                    "since": {"offset": latest, "epoch_is_old": True},
                    "answer_recovered": answer.get("recovered"),
                    "answer_offset": answer.get("offset"),
                    "accepted_after_restore": len(after),
                    "silently_missed": missed,
                    "throughout_resyncs": sum(1 for m in seen if m.get("type") == "resync"),
                    "throughout_repeated_pairs": len(pairs) - len(set(pairs)),
                }
            )
        )
    finally:
        server.stop()
        redis.stop()
        shutil.rmtree(dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="attack", required=True)
    flood = sub.add_parser("recovery-flood")
    flood.add_argument("binary")
    flood.add_argument("--seconds", type=float, default=15)
    flood.add_argument("--send-queue-bytes", type=int, default=1_048_576)
    flood.set_defaults(run=recovery_flood)
    back = sub.add_parser("restore")
    back.add_argument("binary")
    back.set_defaults(run=restore)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
