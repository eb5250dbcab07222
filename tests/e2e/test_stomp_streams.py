"""Streams on the embedded broker: last-value snapshots on subscribe, numbered positions,
and resume after a reconnect (exactly the missed messages, or the snapshot when the
position cannot be resumed from), with raw STOMP clients. The same on RabbitMQ and
ActiveMQ is in test_stomp_rabbitmq.py and test_stomp_activemq.py."""

from __future__ import annotations

import time

from gwproc import metric_sum
from rabbit_util import messages, no_frame, stomp
from stomp_util import RawStomp, stomp_service

STREAM = {"destination": "/topic/prices.", "history": 50, "history_age": "1m", "snapshot_keys": 100}


def _gw(gateway_factory, **stream):
    return gateway_factory(services=[stomp_service(heart_beat=[0, 0], stream=[{**STREAM, **stream}])])


def _publish(gw, items):
    with RawStomp(gw) as p:
        p.connect()
        for dest, body in items:
            p.send("SEND", {"destination": dest}, body)
        p.receipt("DISCONNECT", {}, rid="bye")


def _seq(frame) -> int:
    return int(frame.headers["position"].split("-")[1])


def _epoch(frame) -> str:
    return frame.headers["position"].split("-")[0]


def test_snapshot_then_live_without_gap_or_duplicate(gateway_factory):
    gw = _gw(gateway_factory)
    _publish(gw, [("/topic/prices.A", "A1"), ("/topic/prices.B", "B1"), ("/topic/prices.A", "A2"),
                  ("/topic/news.x", "not in the stream")])
    c = stomp(gw)
    r = c.receipt("SUBSCRIBE", {"id": "s", "destination": "/topic/prices.*", "snapshot": "true"}, rid="r1")
    assert r.headers["position"].endswith("-3")
    snap = messages(c, 2)
    assert [m.body for m in snap] == [b"B1", b"A2"]
    assert all(m.headers["snapshot"] == "true" for m in snap)
    assert [_seq(m) for m in snap] == [2, 3]
    _publish(gw, [("/topic/prices.C", "C1"), ("/topic/prices.A", "A3")])
    live = messages(c, 2)
    assert [m.body for m in live] == [b"C1", b"A3"]
    assert [_seq(m) for m in live] == [4, 5]
    assert all("snapshot" not in m.headers for m in live)
    no_frame(c)
    # Without the header: live only, still numbered.
    plain = stomp(gw)
    r = plain.receipt("SUBSCRIBE", {"id": "p", "destination": "/topic/prices.A"}, rid="r2")
    no_frame(plain)
    _publish(gw, [("/topic/prices.A", "A4")])
    (m,) = messages(plain, 1)
    assert _seq(m) == 6 and m.headers["position"] == f"{_epoch(m)}-6"


def test_resume_gets_exactly_the_missed_messages_then_live(gateway_factory):
    gw = _gw(gateway_factory)
    c = stomp(gw)
    c.receipt("SUBSCRIBE", {"id": "s", "destination": "/topic/prices.*"}, rid="r")
    _publish(gw, [("/topic/prices.A", "1"), ("/topic/prices.B", "2")])
    last = messages(c, 2)[-1].headers["position"]
    c.ws.close()
    _publish(gw, [("/topic/prices.A", str(n)) for n in range(3, 9)])
    again = stomp(gw)
    r = again.receipt("SUBSCRIBE", {"id": "s", "destination": "/topic/prices.*", "resume": last,
                                    "snapshot": "true"}, rid="r")
    assert r.headers["resume"] == "ok"
    missed = messages(again, 6)
    assert [m.body.decode() for m in missed] == [str(n) for n in range(3, 9)]
    assert all(m.headers.get("resumed") == "true" for m in missed)
    _publish(gw, [("/topic/prices.B", "9")])
    (live,) = messages(again, 1)
    assert live.body == b"9" and _seq(live) == _seq(missed[-1]) + 1
    no_frame(again)


def test_positions_that_cannot_be_resumed_get_the_snapshot(gateway_factory):
    gw = _gw(gateway_factory, history=3)
    _publish(gw, [("/topic/prices.A", f"A{n}") for n in range(1, 8)])
    probe = stomp(gw)
    pos = probe.receipt("SUBSCRIBE", {"id": "s", "destination": "/topic/prices.*"}, rid="r").headers["position"]
    epoch = pos.split("-")[0]
    other = "1" if epoch != "1" else "2"
    for resume, reason in [(f"{epoch}-1", "older"), (f"{epoch}-999", "ahead"), (f"{other}-5", "epoch")]:
        c = stomp(gw)
        r = c.receipt("SUBSCRIBE", {"id": "s", "destination": "/topic/prices.*", "resume": resume}, rid="r")
        assert r.headers["resume"] == "reset", r.headers
        assert reason in r.headers["resume-reason"]
        (m,) = messages(c, 1)
        assert m.body == b"A7" and m.headers["snapshot"] == "true"
        no_frame(c)
        c.ws.close()


def test_malformed_resume_is_an_error_and_others_carry_on(gateway_factory):
    gw = _gw(gateway_factory)
    bystander = stomp(gw)
    bystander.receipt("SUBSCRIBE", {"id": "s", "destination": "/topic/prices.*"}, rid="r")
    for bad in ["yesterday", "12", "zz-1", "1-x", "-5"]:
        c = stomp(gw)
        c.send("SUBSCRIBE", {"id": "s", "destination": "/topic/prices.*", "resume": bad})
        err = c.expect_error()
        assert err.headers["message"] == "bad resume header"
        assert bad in err.body.decode()
    c = stomp(gw)
    c.send("SUBSCRIBE", {"id": "s", "destination": "/topic/prices.*", "snapshot": "please"})
    assert c.expect_error().headers["message"] == "bad snapshot header"
    _publish(gw, [("/topic/prices.A", "still here")])
    assert messages(bystander, 1)[0].body == b"still here"


def test_restart_is_a_new_epoch(gateway_factory):
    gw = _gw(gateway_factory)
    c = stomp(gw)
    c.receipt("SUBSCRIBE", {"id": "s", "destination": "/topic/prices.*"}, rid="r")
    _publish(gw, [("/topic/prices.A", "before")])
    last = messages(c, 1)[0].headers["position"]
    c.ws.close()
    gw.stop()
    gw.start()
    again = stomp(gw)
    r = again.receipt("SUBSCRIBE", {"id": "s", "destination": "/topic/prices.*", "resume": last}, rid="r")
    assert r.headers["resume"] == "reset" and "epoch" in r.headers["resume-reason"]
    assert r.headers["position"].split("-")[0] != last.split("-")[0]


def test_destinations_outside_streams_say_resume_is_unavailable(gateway_factory):
    gw = _gw(gateway_factory)
    c = stomp(gw)
    r = c.receipt("SUBSCRIBE", {"id": "s", "destination": "/topic/news.*", "resume": "1-1"}, rid="r")
    assert r.headers["resume"] == "unavailable"
    _publish(gw, [("/topic/news.x", "n")])
    (m,) = messages(c, 1)
    assert "position" not in m.headers
    # A forged position header from a publisher is not passed on.
    _publish(gw, [])
    with RawStomp(gw) as p:
        p.connect()
        p.send("SEND", {"destination": "/topic/news.x", "position": "1-1", "snapshot": "true"}, "f")
    (m,) = messages(c, 1)
    assert "position" not in m.headers and "snapshot" not in m.headers


def test_history_is_bounded_and_counted(gateway_factory):
    gw = _gw(gateway_factory, history=20, snapshot_keys=5)
    _publish(gw, [(f"/topic/prices.S{n % 9}", "x" * 100) for n in range(200)])
    deadline = time.monotonic() + 5
    while True:
        text = gw.metrics_text()
        held = metric_sum(text, "gateway_stomp_stream_retained_messages", kind="history")
        keys = metric_sum(text, "gateway_stomp_stream_retained_messages", kind="snapshot")
        if held == 20 and keys == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (held, keys) == (20, 5)
    assert 5 * 100 < metric_sum(text, "gateway_stomp_stream_retained_bytes", kind="snapshot") < 5 * 1000
    assert metric_sum(text, "gateway_stomp_stream_keys_evicted_total") > 0


def test_default_service_snapshots_the_demo_prices(gateway_factory):
    gw = gateway_factory(services=[])  # none configured: the built-in ones, demo feed on /ws
    c = RawStomp(gw, path="/ws")
    c.connect()
    time.sleep(0.6)  # a couple of demo ticks
    c.receipt("SUBSCRIBE", {"id": "s", "destination": "/topic/prices.*", "snapshot": "true"}, rid="r")
    snap = messages(c, 8, timeout=2)
    assert all(m.headers.get("snapshot") == "true" for m in snap)
    assert len({m.headers["destination"] for m in snap}) == 8
