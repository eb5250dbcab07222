#!/usr/bin/env python3
"""A plain AMQP consumer on RabbitMQ that times the messages `loadgen stomp-fanout` publishes.

Binds a private, exclusive queue to `amq.topic` with the topic's routing key (a STOMP SEND to
/topic/bench reaches amq.topic with key "bench", whether it came through the gateway or
Web-STOMP), consumes without acks, and reads `ts=<ns since the epoch>;` at the start of each
body: latency = receive time - ts, one clock, one machine. It is the baseline for the STOMP
paths: what a client talking AMQP to the same broker sees.

    tests/.venv/bin/python tests/loadgen/amqp-latency.py --url amqp://guest:guest@127.0.0.1:5672/%2f \
        --key bench [--duration 600] [--skip 2]

Prints "ready" on stderr once bound; on SIGTERM (or after --duration) a human-readable line
and a JSON line on stdout. Messages of the first --skip seconds after the first one (the
publisher's warm-up) are not counted. Needs pika.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

import pika


def percentile(sorted_ms: list[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    i = min(len(sorted_ms) - 1, max(0, int(round(q / 100 * len(sorted_ms) + 0.5)) - 1))
    return sorted_ms[i]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="amqp://user:pass@host:port/vhost")
    ap.add_argument("--exchange", default="amq.topic")
    ap.add_argument("--key", default="bench", help="routing key (STOMP /topic/NAME -> NAME)")
    ap.add_argument("--duration", type=float, default=600.0, help="most seconds to consume (SIGTERM ends it)")
    ap.add_argument("--skip", type=float, default=0.0, help="ignore messages of the first seconds")
    args = ap.parse_args()

    conn = pika.BlockingConnection(pika.URLParameters(args.url))
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
    ch.queue_bind(q, args.exchange, args.key)
    lat_ms: list[float] = []
    bad = 0
    first_at = None

    def on_message(_ch, _method, _props, body: bytes) -> None:
        nonlocal bad, first_at
        now = time.time_ns()
        if first_at is None:
            first_at = now
        if not body.startswith(b"ts="):
            bad += 1
            return
        try:
            ts = int(body[3:body.index(b";")])
        except ValueError:
            bad += 1
            return
        if now - first_at >= args.skip * 1e9:
            lat_ms.append((now - ts) / 1e6)

    ch.basic_consume(q, on_message, auto_ack=True)
    print("ready", file=sys.stderr, flush=True)
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    deadline = time.monotonic() + args.duration
    while not stop and time.monotonic() < deadline:
        conn.process_data_events(time_limit=min(0.2, max(0.0, deadline - time.monotonic())))
    conn.close()

    lat_ms.sort()
    summary = {
        "scenario": "amqp-latency",
        "received": len(lat_ms),
        "unparsed": bad,
        "p50_ms": percentile(lat_ms, 50),
        "p90_ms": percentile(lat_ms, 90),
        "p99_ms": percentile(lat_ms, 99),
        "max_ms": lat_ms[-1] if lat_ms else None,
    }
    fmt = lambda v: "-" if v is None else f"{v:.2f} ms"  # noqa: E731
    print(f"AMQP consumer: {summary['received']} messages timed ({bad} unparsed); "
          f"p50 {fmt(summary['p50_ms'])}, p90 {fmt(summary['p90_ms'])}, "
          f"p99 {fmt(summary['p99_ms'])}, max {fmt(summary['max_ms'])}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
