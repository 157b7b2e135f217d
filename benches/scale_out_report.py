#!/usr/bin/env python3
"""The one JSON line of benches/scale_out.sh: the load generator's result
under "result", and beside it what the script measured of the deployment
(kernel sockets, Redis's CPU and output, the restarts), turned into the
figures per connection, per event and per restart step.

    scale_out_report.py SCENARIO SERVERS CONNS EXTRA_JSON RESULT_JSON
"""
import json
import sys


def per(value, count, places=3):
    return round(value / count, places) if count else None


def redis_window(extra):
    """Redis's CPU seconds and output bytes over the window the script read them in."""
    cpu = extra["redis_cpu_s"][1] - extra["redis_cpu_s"][0]
    out = extra["redis_output_bytes"][1] - extra["redis_output_bytes"][0]
    return cpu, out, extra["redis_window_s"]


def idle(extra, result):
    connected = result.get("connected", 0)
    cpu, out, window = redis_window(extra)
    return {
        "rss_per_conn_kib": result.get("rss_per_conn_kib"),
        "server_rss_kib": result.get("rss_after_kib"),
        "kernel_tcp_sockets": extra["kernel_tcp_sockets"],
        # Both ends of every connection are on this host: two sockets each.
        "kernel_tcp_buffers_kib_per_conn": per(extra["kernel_tcp_mem_kib"], connected),
        "kernel_slab_kib_per_conn": per(extra["kernel_slab_kib"], connected),
        "connect_s": result.get("connect_s"),
        # What the held connections cost Redis (presence keeping them fresh).
        "redis_cpu_pct": round(cpu * 100 / window, 2),
        "redis_output_bytes_per_s": round(out / window),
    }


def fanout(extra, result):
    """Redis's figures per event over the window: RATE events a second."""
    cpu, out, window = redis_window(extra)
    events = extra["rate"] * window
    return {
        "deliveries_per_s": result.get("deliveries_per_s"),
        "lost": result.get("lost"),
        "latency_ms": result.get("latency_ms"),
        "server_cpu_s_per_million": result.get("server_cpu_s_per_million"),
        "redis_cpu_pct": round(cpu * 100 / window, 2),
        "redis_cpu_us_per_event": per(cpu * 1e6, events, 1),
        "redis_output_bytes_per_s": round(out / window),
        "redis_output_bytes_per_event": per(out, events, 1),
    }


def storm(extra, result):
    return {
        "handshakes": result.get("handshakes"),
        "handshakes_per_s": result.get("handshakes_per_s"),
        "server_cpu_us_per_handshake": result.get("server_cpu_us_per_handshake"),
        "errors": result.get("errors"),
    }


def rolling(extra, result):
    """Each step: its SIGTERM, how long the old process took to exit, and
    when the last client closed between it and the next step's was back
    (closes are counted in 100 ms slots)."""
    outages = {int(slot): o for slot, o in result.get("reconnect", {}).get("outages", {}).items()}
    restarts = extra["restarts"]
    steps = []
    for i, step in enumerate(restarts):
        start = step["sigterm_ms"] - step["sigterm_ms"] % 100
        end = restarts[i + 1]["sigterm_ms"] - restarts[i + 1]["sigterm_ms"] % 100 if i + 1 < len(restarts) else float("inf")
        mine = [o for slot, o in outages.items() if start <= slot < end]
        back = max((o["last_back_ms"] for o in mine), default=None)
        steps.append({
            "clients": sum(o["clients"] for o in mine),
            "old_exit_s": round((step["exited_ms"] - step["sigterm_ms"]) / 1000, 3),
            "all_back_s": round((back - step["sigterm_ms"]) / 1000, 3) if back else None,
        })
    last_back = max((o["last_back_ms"] for o in outages.values()), default=None)
    reconnect = result.get("reconnect", {})
    return {
        "lost": result.get("lost"),
        "duplicates": result.get("duplicates"),
        "delivered": result.get("delivered"),
        "expected": result.get("expected"),
        "lost_by_offsets": reconnect.get("lost_by_offsets"),
        # Publishes a stopping or starting server refused (503): the publisher
        # knows these were not delivered, so they are not lost, but a REST
        # service must retry them.
        "publishes_refused": result.get("publish_rejected"),
        "publishes_unanswered": result.get("publish_failed"),
        "reconnects": reconnect.get("reconnects"),
        "recovered": reconnect.get("recovered"),
        "not_recovered": reconnect.get("not_recovered"),
        "offset_gaps": reconnect.get("offset_gaps"),
        "disconnects": result.get("disconnects"),
        "away_ms": reconnect.get("away_ms"),
        "steps": steps,
        "all_back_s": round((last_back - restarts[0]["sigterm_ms"]) / 1000, 3) if last_back and restarts else None,
        # Publishing went on past the last restart: the whole restart ran under load.
        "restarts_under_load": extra["restarts_done_ms"] <= extra["ready_ms"] + result.get("publish_s", 0) * 1000,
    }


def main():
    scenario, servers, conns, extra, result = sys.argv[1:6]
    extra = json.loads(extra)
    result = json.loads(result)
    line = {"scenario": scenario, "servers": int(servers), "conns": int(conns), "ok": result.get("ok") is True}
    if line["ok"]:
        line.update(globals()[scenario](extra, result))
    line["result"] = result
    print(json.dumps(line))
    return 0 if line["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
