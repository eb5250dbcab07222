"""The STOMP bridge on RabbitMQ (`backend = "amqp://..."`): a private RabbitMQ node started
by tests/scripts/rabbitmq.sh for the whole module, raw STOMP clients through the gateway,
pika on the AMQP side, rabbitmqctl to see what the broker holds.

Covers topic fan-out, STOMP <-> AMQP interop both ways, headers <-> properties, queue acks
and NACK redelivery, receipts after publisher confirms, temp-queue replies, RabbitMQ's
errors, offloading (1,000 subscribers = one queue, one consumer, the pool's connections),
pass-through logins. Broker outages and restarts are in test_stomp_faults.py (own node).

Skipped only when rabbitmq-server is not installed and CI is unset; with CI=true a missing
broker or pika fails.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import connect as ws_connect

from rabbit_util import (free_fixed_port, ids, messages, no_error_logs, no_frame, pika,
                         private_rabbit, rabbit_gateway, stomp, subscribe)
from stomp_util import RawStomp, encode, parse, stomp_service



@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    yield from private_rabbit(tmp_path_factory)


@pytest.fixture
def rgw(rabbit, gateway_factory):
    def make(**settings):
        return rabbit_gateway(rabbit, gateway_factory, **settings)
    return make


# --- messaging ------------------------------------------------------------------------

def test_topic_fan_out_and_amqp_interop(rabbit, rgw):
    gw = rgw()
    subs = [stomp(gw) for _ in range(3)]
    for c in subs:
        subscribe(c, "/topic/fx.*")
    # AMQP -> STOMP: a pika publisher on amq.topic reaches every STOMP subscriber.
    conn = rabbit.pika()
    ch = conn.channel()
    ch.basic_publish("amq.topic", "fx.EUR", b"1.08", pika.BasicProperties(
        content_type="text/plain", correlation_id="c-9", headers={"source": "pika", "n": 7}))
    for c in subs:
        (m,) = messages(c, 1)
        assert m.body == b"1.08"
        assert m.headers["destination"] == "/topic/fx.EUR"
        assert m.headers["subscription"] == "s1"
        assert m.headers["content-type"] == "text/plain"
        assert m.headers["correlation-id"] == "c-9"
        assert m.headers["source"] == "pika" and m.headers["n"] == "7"
    # STOMP -> AMQP: a SEND reaches a pika consumer bound to amq.topic, and the subscribers.
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.topic", "fx.#")
    pub = stomp(gw)
    pub.receipt("SEND", {"destination": "/topic/fx.USD", "x-note": "hi"}, "0.92", rid="p1")
    for c in subs:
        (m,) = messages(c, 1)
        assert (m.body, m.headers["destination"], m.headers["x-note"]) == (b"0.92", "/topic/fx.USD", "hi")
    method, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"0.92" and method.routing_key == "fx.USD"
    assert props.headers == {"x-note": "hi"}
    # Not matching the pattern: nothing.
    pub.receipt("SEND", {"destination": "/topic/other.USD"}, "x", rid="p2")
    for c in subs:
        no_frame(c)
    conn.close()


def test_receipt_only_after_confirm_and_headers_to_properties(rabbit, rgw):
    gw = rgw()
    c = stomp(gw)
    queue = f"work-{next(ids)}"
    c.receipt("SEND", {
        "destination": f"/queue/{queue}",
        "content-type": "application/json",
        "persistent": "true",
        "priority": "3",
        "correlation-id": "corr-1",
        "reply-to": "/queue/answers",
        "expiration": "60000",
        "amqp-message-id": "id-1",
        "x-trace": "t-1",
    }, '{"a":1}', rid="sent")
    # The RECEIPT came after the publisher confirm: the broker holds the message already.
    conn = rabbit.pika()
    ch = conn.channel()
    method, props, body = ch.basic_get(queue, auto_ack=True)
    assert method is not None, "RECEIPT before the message was in the queue"
    assert body == b'{"a":1}'
    assert props.content_type == "application/json"
    assert props.delivery_mode == 2
    assert props.priority == 3
    assert props.correlation_id == "corr-1"
    assert props.reply_to == "answers"
    assert props.expiration == "60000"
    assert props.message_id == "id-1"
    assert props.headers == {"x-trace": "t-1"}
    # /queue/ declares durable queues.
    ok = ch.queue_declare(queue, passive=True)
    assert ok.method.message_count == 0
    conn.close()
    assert gw.metric("gateway_stomp_broker_confirm_seconds_count") >= 1
    assert gw.metric("gateway_stomp_backend_messages_total", direction="out") >= 1
    # Values RabbitMQ would close the channel over are refused with an ERROR.
    bad = stomp(gw)
    bad.send("SEND", {"destination": f"/queue/{queue}", "expiration": "soon", "receipt": "r"}, "x")
    err = bad.expect_error()
    assert "expiration" in err.headers["message"] or "expiration" in err.text


def test_headers_round_trip_stomp_to_stomp(rabbit, rgw):
    gw = rgw()
    queue = f"rt-{next(ids)}"
    consumer = stomp(gw)
    subscribe(consumer, f"/queue/{queue}")
    sent = {"content-type": "text/plain", "persistent": "true", "correlation-id": "k1",
            "priority": "4", "expiration": "30000", "x-custom": "v", "symbol": "AAPL"}
    stomp(gw).receipt("SEND", {"destination": f"/queue/{queue}", **sent}, "body", rid="r")
    (m,) = messages(consumer, 1)
    assert m.body == b"body"
    assert m.headers["destination"] == f"/queue/{queue}"
    for k, v in sent.items():
        assert m.headers.get(k) == v, k


def test_queue_client_individual_ack_and_nack_redelivery(rabbit, rgw):
    gw = rgw()
    queue = f"jobs-{next(ids)}"
    conn = rabbit.pika()
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    ch.confirm_delivery()
    for n in (1, 2):
        ch.basic_publish("", queue, f"job{n}".encode())
    c = stomp(gw)
    subscribe(c, f"/amq/queue/{queue}", ack="client-individual", **{"prefetch-count": "1"})
    (m1,) = messages(c, 1)
    assert m1.body == b"job1" and "redelivered" not in m1.headers
    no_frame(c)  # prefetch 1: the second waits for the first to be settled
    c.receipt("NACK", {"id": m1.headers["ack"]}, rid="n1")
    (again,) = messages(c, 1)
    assert again.body == b"job1" and again.headers.get("redelivered") == "true"
    c.receipt("ACK", {"id": again.headers["ack"]}, rid="a1")
    (m2,) = messages(c, 1)
    assert m2.body == b"job2"
    # Leaving without acknowledging: the message goes back to the queue.
    c.ws.close()
    deadline = time.monotonic() + 5
    while True:
        count = ch.queue_declare(queue, passive=True).method.message_count
        if count == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert count == 1, "an unacknowledged message was not returned to its queue"
    method, _, body = ch.basic_get(queue, auto_ack=True)
    assert body == b"job2" and method.redelivered
    conn.close()


def test_auto_ack_queue_competing_consumers(rabbit, rgw):
    gw = rgw()
    queue = f"rr-{next(ids)}"
    a, b = stomp(gw), stomp(gw)
    subscribe(a, f"/queue/{queue}")
    subscribe(b, f"/queue/{queue}")
    pub = stomp(gw)
    for n in range(10):
        pub.receipt("SEND", {"destination": f"/queue/{queue}"}, str(n), rid=f"q{n}")
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 10 and time.monotonic() < deadline:
        for c in (a, b):
            try:
                f = c.recv(0.1)
            except AssertionError:
                continue
            got.append((c, f.body))
    assert sorted(int(body) for _, body in got) == list(range(10))
    assert {id(c) for c, _ in got} == {id(a), id(b)}, "both consumers should get some"
    # Taken by the sessions = acknowledged: nothing left in the queue.
    conn = rabbit.pika()
    deadline = time.monotonic() + 3
    while True:
        ok = conn.channel().queue_declare(queue, passive=True).method
        if ok.message_count == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert ok.message_count == 0
    rows = rabbit.rows("list_queues", "name", "messages_unacknowledged")
    assert [queue, "0"] in rows, rows
    conn.close()


def test_temp_queue_reply_from_amqp(rabbit, rgw):
    gw = rgw()
    queue = f"rpc-{next(ids)}"
    conn = rabbit.pika()
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    c = stomp(gw)
    c.receipt("SEND", {"destination": f"/queue/{queue}", "reply-to": "/temp-queue/answers",
                       "correlation-id": "q1"}, "ping", rid="req")
    method, props, body = ch.basic_get(queue, auto_ack=True)
    assert body == b"ping"
    assert props.reply_to.startswith("stomp-gw.")
    # An AMQP service answers on the reply queue through the default exchange.
    ch.basic_publish("", props.reply_to, b"pong", pika.BasicProperties(correlation_id="q1"))
    (m,) = messages(c, 1)
    assert m.body == b"pong"
    assert m.headers["subscription"] == "/temp-queue/answers"
    assert m.headers["correlation-id"] == "q1"
    conn.close()
    # A STOMP client can answer too, at the rewritten address.
    c.receipt("SEND", {"destination": f"/queue/{queue}", "reply-to": "/temp-queue/answers"}, "ping2", rid="req2")
    other = stomp(gw)
    subscribe(other, f"/queue/{queue}")
    (req,) = messages(other, 1)
    assert req.headers["reply-to"].startswith("/amq/queue/stomp-gw.")
    other.receipt("SEND", {"destination": req.headers["reply-to"]}, "pong2", rid="rep")
    (m,) = messages(c, 1)
    assert m.body == b"pong2"


def test_broker_refusals_are_errors(rabbit, rgw):
    gw = rgw()
    c = stomp(gw)
    c.send("SUBSCRIBE", {"destination": "/amq/queue/no-such-queue", "id": "x", "receipt": "r"})
    err = c.expect_error()
    assert "NOT_FOUND" in err.headers["message"] and "no-such-queue" in err.headers["message"]
    c = stomp(gw)
    c.send("SEND", {"destination": "/exchange/no-such-exchange/k", "receipt": "r"}, "x")
    err = c.expect_error()
    assert "NOT_FOUND" in err.headers["message"] and "no-such-exchange" in err.headers["message"]
    # A queue address that routes nowhere is not confirmed as delivered.
    c = stomp(gw)
    c.send("SEND", {"destination": "/amq/queue/missing-too", "receipt": "r"}, "x")
    err = c.expect_error()
    assert "no queue" in err.headers["message"] or "NO_ROUTE" in err.headers["message"]
    # /exchange/ works both ways when the exchange exists.
    d = stomp(gw)
    subscribe(d, "/exchange/amq.direct/k1")
    d.receipt("SEND", {"destination": "/exchange/amq.direct/k1"}, "direct", rid="e")
    (m,) = messages(d, 1)
    assert (m.body, m.headers["destination"]) == (b"direct", "/exchange/amq.direct/k1")
    # The client's mistakes are its ERROR frames, not errors in the gateway's log.
    no_error_logs(gw)


def test_pass_through_credentials(rabbit, rgw):
    rabbit.ctl("add_user", "alice", "wonderland")
    rabbit.ctl("set_permissions", "-p", "/", "alice", ".*", ".*", ".*")
    try:
        gw = rgw(credentials="pass-through")
        ok = stomp(gw, login="alice", passcode="wonderland")
        subscribe(ok, "/topic/pt.a")
        ok.receipt("SEND", {"destination": "/topic/pt.a"}, "mine", rid="s")
        (m,) = messages(ok, 1)
        assert m.body == b"mine"
        users = [r[0] for r in rabbit.rows("list_connections", "user")]
        assert "alice" in users
        ok.receipt("DISCONNECT", {}, rid="bye")
        deadline = time.monotonic() + 10
        while "alice" in [r[0] for r in rabbit.rows("list_connections", "user")]:
            assert time.monotonic() < deadline, "alice's connection outlived her session"
            time.sleep(0.2)
        bad = RawStomp(gw)
        bad.send("CONNECT", {"accept-version": "1.2", "host": "/", "login": "alice", "passcode": "nope"})
        err = bad.expect_error()
        assert "ACCESS_REFUSED" in err.headers["message"], err
        anon = RawStomp(gw)
        anon.send("CONNECT", {"accept-version": "1.2", "host": "/"})
        assert "login" in anon.expect_error().headers["message"]
    finally:
        rabbit.ctl("delete_user", "alice")


# --- offloading ---------------------------------------------------------------------

OFFLOAD_CLIENTS = 1000


def _frames(msg) -> list:
    return parse(msg.encode() if isinstance(msg, str) else msg)


async def _offload_client(gw, dest: str, opened: asyncio.Semaphore):
    """A WebSocket STOMP client subscribed to `dest` (its RECEIPT seen)."""
    async with opened:
        ws = await ws_connect(gw.url("/ws"), subprotocols=["v12.stomp"], compression=None,
                              open_timeout=60, ping_interval=None, close_timeout=2)
        await ws.send(encode("CONNECT", {"accept-version": "1.2", "host": "/"}))
        await ws.send(encode("SUBSCRIBE", {"destination": dest, "id": "sub-0", "receipt": "s"}))
        got = []
        while not any(f.command == "RECEIPT" for f in got):
            got += _frames(await asyncio.wait_for(ws.recv(), 60))
        assert [f.command for f in got] == ["CONNECTED", "RECEIPT"], got
        return ws


async def _next_message(ws, timeout: float):
    while True:
        frames = _frames(await asyncio.wait_for(ws.recv(), timeout))
        if frames:
            return frames[0]


async def _offloading(rabbit, gw) -> None:
    opened = asyncio.Semaphore(50)  # handshakes in flight: a steady ramp, no SYN floods
    clients = await asyncio.gather(*(_offload_client(gw, "/topic/load.tick", opened)
                                     for _ in range(OFFLOAD_CLIENTS)))
    try:
        # The broker side: one binding, one queue, one consumer for all of them ...
        bindings = [r for r in rabbit.rows("list_bindings", "source_name", "destination_name", "routing_key")
                    if r[0] == "amq.topic" and r[2] == "load.tick"]
        assert len(bindings) == 1, bindings
        queue = bindings[0][1]
        shared = [r for r in rabbit.rows("list_queues", "name", "consumers") if is_topic_queue(r[0])]
        assert shared == [[queue, "1"]], shared
        consumers = [r for r in rabbit.rows("list_consumers", "queue_name") if r[0] == queue]
        assert len(consumers) == 1, consumers
        # ... and the pool's connections, whatever the number of clients.
        ours = [r for r in rabbit.rows("list_connections", "channels", "client_properties")
                if "gateway stomp" in r[1]]
        assert len(ours) == 2, ours
        # The shared consumer's channel and nothing per client (publishing channels open
        # on first use).
        assert sum(int(r[0]) for r in ours) <= 3, ours
        assert gw.metric("gateway_stomp_backend_connections") == 2
        assert gw.metric("gateway_stomp_upstream_subscriptions") == 1
        assert gw.metric("gateway_stomp_upstream_local_subscribers") == OFFLOAD_CLIENTS
        # One AMQP publish reaches every client (one delivery into the gateway).
        conn = rabbit.pika()
        conn.channel().basic_publish("amq.topic", "load.tick", b"t1")
        conn.close()
        got = await asyncio.gather(*(_next_message(ws, 30) for ws in clients))
        assert {(f.command, f.body, f.headers["destination"]) for f in got} == {
            ("MESSAGE", b"t1", "/topic/load.tick")}
        assert gw.metric("gateway_stomp_backend_messages_total", direction="in") == 1
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


def test_offloading_one_upstream_for_1000_subscribers(rabbit, rgw):
    gw = rgw(pool_size=2)
    t0 = time.monotonic()
    asyncio.run(_offloading(rabbit, gw))
    print(f"{OFFLOAD_CLIENTS} clients subscribed, checked and served in {time.monotonic() - t0:.1f}s")
    # The last subscriber gone: consumer cancelled, queue deleted.
    assert gw.wait_metric("gateway_stomp_upstream_subscriptions", lambda v: v == 0, timeout=15) == 0
    deadline = time.monotonic() + 10
    while True:
        left = [r for r in rabbit.rows("list_queues", "name") if is_topic_queue(r[0])]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, "the shared queue outlived its last subscriber"


def is_topic_queue(name: str) -> bool:
    """The gateway's shared upstream topic queues: `stomp-gw.<node>.<random>.topic.<n>`."""
    return name.startswith("stomp-gw.") and ".topic." in name


def _broker_log(rabbit) -> str:
    """The node's own log (where RabbitMQ logs each connection opening and closing)."""
    return (rabbit.dir / "log" / f"{rabbit.node}.log").read_text(errors="replace")


def _gateway_connections(rabbit) -> list:
    """The gateway's pooled connections (named "gateway stomp SERVICE" in client_properties)."""
    return [r for r in rabbit.rows("list_connections", "client_properties") if "gateway stomp" in r[0]]


def test_shutdown_closes_the_pooled_connections_politely(rabbit, rgw):
    gw = rgw(pool_size=2)
    with stomp(gw) as s:  # a live session, which the drain ends first
        subscribe(s, "/topic/drain.a", "sub-0")
        deadline = time.monotonic() + 15
        while True:
            ours = _gateway_connections(rabbit)
            if len(ours) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(ours) == 2, ours
        before = _broker_log(rabbit)
        assert gw.stop() == 0
    # Gone as soon as the gateway has exited, each with AMQP's connection.close (RabbitMQ
    # logs "closing AMQP connection"), not a dropped socket ("unexpectedly closed").
    assert not _gateway_connections(rabbit)
    deadline = time.monotonic() + 10
    while True:
        after = _broker_log(rabbit)[len(before):]
        if after.count("closing AMQP connection") >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after.count("closing AMQP connection") >= 2, after[-2000:]
    assert "unexpectedly closed TCP connection" not in after, after[-2000:]


# --- outages --------------------------------------------------------------------------

def test_unreachable_broker_at_start_is_not_ready(gateway_factory):
    port = free_fixed_port(5800, 5900)
    gw = gateway_factory(services=[stomp_service(backend=f"amqp://guest:guest@127.0.0.1:{port}/%2f")])
    assert gw.http_get("/readyz")[0] == 503
    r = gw.refused("/ws", subprotocols=["v12.stomp"])
    assert r.status_code == 503
    assert gw.alive()


# --- streams: snapshot and resume kept by the gateway's own upstream subscription ------

def test_stream_snapshot_and_resume_cost_the_broker_one_queue(rabbit, rgw):
    gw = rgw(stream=[{"destination": "/topic/quotes.", "history": 100, "snapshot_keys": 100}])

    def stream_bindings():
        return [r for r in rabbit.rows("list_bindings", "source_name", "destination_name", "routing_key")
                if r[0] == "amq.topic" and r[2] == "quotes.#"]

    deadline = time.monotonic() + 10
    while not stream_bindings():
        assert time.monotonic() < deadline, "the stream's upstream subscription never appeared"
        time.sleep(0.1)
    conn = rabbit.pika()
    ch = conn.channel()
    for key, body in [("quotes.A", b"A1"), ("quotes.B", b"B1"), ("quotes.A", b"A2")]:
        ch.basic_publish("amq.topic", key, body)
    subs = []
    for n in range(20):
        c = stomp(gw)
        deadline = time.monotonic() + 5
        tries = 0
        while True:  # the feed's messages arrive asynchronously
            r = c.receipt("SUBSCRIBE", {"id": f"s{n}", "destination": "/topic/quotes.*",
                                        "snapshot": "true"}, rid=f"r{n}")
            if r.headers["position"].endswith("-3") or time.monotonic() > deadline:
                break
            # The receipt comes after every MESSAGE of the dropped subscription, so none of
            # its snapshot is left to be taken for the next one's.
            tries += 1
            c.receipt("UNSUBSCRIBE", {"id": f"s{n}"}, rid=f"u{n}-{tries}")
            c.pending.clear()
            time.sleep(0.1)
        snap = messages(c, 2)
        assert [m.body for m in snap] == [b"B1", b"A2"], snap
        assert all(m.headers["snapshot"] == "true" for m in snap)
        subs.append(c)
    # However many subscribers: the stream's one queue and no other.
    (binding,) = stream_bindings()
    shared = [r for r in rabbit.rows("list_queues", "name", "consumers") if is_topic_queue(r[0])]
    assert shared == [[binding[1], "1"]], shared
    last = None
    ch.basic_publish("amq.topic", "quotes.C", b"C1")
    for c in subs:
        (m,) = messages(c, 1)
        assert m.body == b"C1" and m.headers["position"].endswith("-4")
        last = m.headers["position"]
    # A client that drops and comes back gets what it missed from the gateway.
    subs[0].ws.close()
    for n in range(5):
        ch.basic_publish("amq.topic", "quotes.D", str(n).encode())
    messages(subs[1], 5)
    back = stomp(gw)
    r = back.receipt("SUBSCRIBE", {"id": "s", "destination": "/topic/quotes.*", "resume": last}, rid="rr")
    assert r.headers["resume"] == "ok"
    assert [m.body for m in messages(back, 5)] == [str(n).encode() for n in range(5)]
    no_frame(back)
    conn.close()


def test_rabbitmq_stream_queue_read_from_an_offset(rabbit, rgw):
    """History that survives a gateway restart: a RabbitMQ stream queue, read through
    /amq/queue/NAME from `x-stream-offset`, as RabbitMQ's STOMP plugin reads it."""
    gw = rgw()
    conn = rabbit.pika()
    ch = conn.channel()
    name = f"ticks-{next(ids)}"
    ch.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})
    for n in range(5):
        ch.basic_publish("", name, f"t{n}".encode())
    c = stomp(gw)
    subscribe(c, f"/amq/queue/{name}", "all", ack="client-individual", **{"prefetch-count": "10",
                                                                          "x-stream-offset": "first"})
    got = messages(c, 5)
    assert [m.body for m in got] == [f"t{n}".encode() for n in range(5)]
    assert [m.headers["x-stream-offset"] for m in got] == [str(n) for n in range(5)]
    for m in got:
        c.send("ACK", {"id": m.headers["ack"]})
    # A client back later (or after a gateway restart) reads on from where it was.
    later = stomp(gw)
    subscribe(later, f"/amq/queue/{name}", "from3", ack="client-individual", **{"prefetch-count": "10",
                                                                                "x-stream-offset": "offset=3"})
    assert [m.body for m in messages(later, 2)] == [b"t3", b"t4"]
    no_frame(later)
    bad = stomp(gw)
    bad.send("SUBSCRIBE", {"id": "x", "destination": f"/amq/queue/{name}", "x-stream-offset": "soon"})
    assert bad.expect_error().headers["message"] == "bad x-stream-offset header"
    conn.close()
