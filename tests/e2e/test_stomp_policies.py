"""STOMP slow-consumer policies and metrics: a subscriber that stops reading is
disconnected, loses its oldest messages, or sees only the latest value per key, as its
destination's policy says; the bridge's metrics count sessions, frames and deliveries."""

from __future__ import annotations

import time

from stomp_util import RawStomp, stomp_service

BODY = "x" * 32 * 1024  # large enough to fill socket buffers quickly


def _policies(**kw):
    return stomp_service(
        subscription_queue=8,
        policy=[
            {"destination": "/topic/slow.", "policy": "disconnect", "queue": 4},
            {"destination": "/topic/lossy.", "policy": "drop-oldest", "queue": 4},
            {"destination": "/topic/latest.", "policy": "conflate", "conflate_key": "symbol", "queue": 4},
        ],
        **kw,
    )


def _stalled_subscriber(gw, destination):
    """Subscribes, then stops reading: websockets buffers at most max_queue messages,
    then stops reading the socket, so the gateway's queue for it fills."""
    s = RawStomp(gw)
    s.ws.close()
    s.ws = gw.ws("/ws", subprotocols=["v12.stomp"], max_queue=2)
    s.connect()
    s.receipt("SUBSCRIBE", {"id": "s", "destination": destination})
    return s


def _flood(gw, destination, n, headers_for=lambda i: {}):
    with RawStomp(gw) as p:
        p.connect()
        for i in range(n):
            p.send("SEND", {"destination": destination, "seq": str(i), **headers_for(i)}, BODY)
        p.receipt("SEND", {"destination": "/topic/sync.nobody"})


def _drain(s, until_seq, timeout=10.0):
    """Reads MESSAGE frames until the one with seq `until_seq`; returns them."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        f = s.recv(timeout=max(0.1, deadline - time.monotonic()))
        if f.command == "MESSAGE":
            got.append(f)
            if f.headers.get("seq") == str(until_seq):
                return got
    raise AssertionError(f"seq {until_seq} never arrived; got {[g.headers.get('seq') for g in got]}")


def test_disconnect_policy_drops_a_stalled_subscriber(gateway_factory):
    gw = gateway_factory(services=[_policies()])
    bystander = RawStomp(gw)
    bystander.connect()
    s = _stalled_subscriber(gw, "/topic/slow.a")
    _flood(gw, "/topic/slow.a", 400)
    err = None
    deadline = time.monotonic() + 10
    while err is None and time.monotonic() < deadline:
        f = s.recv(timeout=5)
        if f.command == "ERROR":
            err = f
    assert err is not None
    assert err.headers["message"] == "slow consumer"
    assert "s" in err.text
    try:  # then the close
        while True:
            s.recv(timeout=3)
    except AssertionError:
        pass
    assert s.close_code == 1008, s.close_code
    assert gw.wait_metric("gateway_stomp_slow_consumer_events_total", lambda v: (v or 0) >= 1,
                          policy="disconnect") >= 1
    # Others are unaffected.
    bystander.receipt("SEND", {"destination": "/topic/slow.a"}, "still fine")


def test_drop_oldest_keeps_the_newest(gateway_factory):
    gw = gateway_factory(services=[_policies()])
    s = _stalled_subscriber(gw, "/topic/lossy.a")
    # Enough to overflow the outbox (256 messages) and the kernel's socket buffers, whose
    # size varies with load, before the subscription's own queue must drop.
    n = 1000
    _flood(gw, "/topic/lossy.a", n)
    got = _drain(s, n - 1)
    seqs = [int(m.headers["seq"]) for m in got]
    assert seqs == sorted(seqs), "order kept"
    assert len(seqs) < n, "some were dropped"
    assert seqs[-1] == n - 1, "the newest one arrives"
    assert gw.wait_metric("gateway_stomp_slow_consumer_events_total", lambda v: (v or 0) >= 1,
                          policy="drop-oldest") >= 1


def test_conflate_by_header_delivers_the_latest_per_key(gateway_factory):
    gw = gateway_factory(services=[_policies()])
    s = _stalled_subscriber(gw, "/topic/latest.#")
    n = 400
    symbols = ["AAA", "BBB", "CCC"]
    _flood(gw, "/topic/latest.q", n, lambda i: {"symbol": symbols[i % 3]})
    got = _drain(s, n - 1)
    try:  # conflated entries may trail the newest one
        while True:
            f = s.recv(timeout=0.5)
            if f.command == "MESSAGE":
                got.append(f)
    except AssertionError:
        pass
    order = [(m.headers["symbol"], int(m.headers["seq"])) for m in got]
    assert len(got) < n, "updates were conflated"
    # Per key, values arrive oldest to newest: a newer value never precedes an older one.
    for k in symbols:
        seqs = [q for sym, q in order if sym == k]
        bad = next((i for i in range(1, len(seqs)) if seqs[i] < seqs[i - 1]), None)
        assert bad is None, (f"{k}: seq {seqs[bad]} delivered after seq {seqs[bad - 1]} "
                             f"(its deliveries: {seqs[max(0, bad - 4):bad + 3]})")
    last = {}
    for sym, q in order:
        last[sym] = q
    # The final value of every key arrives.
    final = {symbols[i % 3]: i for i in range(n)}
    assert last == final, f"latest per key {last}, expected {final}"

def test_stomp_metrics(gateway_factory):
    gw = gateway_factory(services=[stomp_service()])
    with RawStomp(gw) as a, RawStomp(gw, subprotocol="v11.stomp") as b:
        a.connect()
        b.connect(version="1.1")
        assert gw.wait_metric("gateway_stomp_sessions", lambda v: v == 1, version="1.2") == 1
        assert gw.wait_metric("gateway_stomp_sessions", lambda v: v == 1, version="1.1") == 1
        a.receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/m.x"})
        a.receipt("SUBSCRIBE", {"id": "2", "destination": "/queue/m.q"})
        b.receipt("SEND", {"destination": "/topic/m.x"}, "t")
        b.receipt("SEND", {"destination": "/queue/m.q"}, "q")
        assert {a.recv().text, a.recv().text} == {"t", "q"}
        text = gw.metrics_text()
    from gwproc import metric_sum
    assert metric_sum(text, "gateway_stomp_subscriptions") == 2
    assert metric_sum(text, "gateway_stomp_frames_in_total", command="SUBSCRIBE") == 2
    assert metric_sum(text, "gateway_stomp_frames_in_total", command="CONNECT") == 2
    assert metric_sum(text, "gateway_stomp_frames_out_total", command="CONNECTED") == 2
    assert metric_sum(text, "gateway_stomp_frames_out_total", command="MESSAGE") == 2
    assert metric_sum(text, "gateway_stomp_frames_out_total", command="RECEIPT") == 4
    assert metric_sum(text, "gateway_stomp_messages_published_total", kind="topic") >= 1
    assert metric_sum(text, "gateway_stomp_messages_published_total", kind="queue") == 1
    assert metric_sum(text, "gateway_stomp_messages_delivered_total") == 2
    assert gw.wait_metric("gateway_stomp_sessions", lambda v: not v) in (None, 0.0)
    assert gw.wait_metric("gateway_stomp_subscriptions", lambda v: not v) in (None, 0.0)
