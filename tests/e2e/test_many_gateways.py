"""Several gateways on one RabbitMQ, each with its own `server.node`: what a client of one
publishes reaches the clients of the others (topics, queues, temp-queue replies, with
stomp.py over WebSocket), and replies cross with RabbitMQ's own STOMP plugin too; each
gateway keeps one broker queue per topic pattern, named after it, and its pool's
connections, however many clients it has; each says which node it is in `/metrics`, the
admin API and its log.

One private RabbitMQ node for the module (rabbit_util.private_rabbit), with its STOMP plugin.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid

import pytest

stomp = pytest.importorskip("stomp")

from gwproc import parse_metrics  # noqa: E402
from rabbit_util import private_rabbit, wait_ready  # noqa: E402
from stomp_util import Listener, encode, parse, stomp_service  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402

NODES = ("gw-a", "gw-b", "gw-c")
POOL_SIZE = 2
TOKEN = "many-gateways-admin-token"
SUBSCRIBERS_PER_GATEWAY = 1000
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    # With RabbitMQ's own STOMP plugin beside the gateways, as a mixed deployment has it.
    def configure(d, port):
        configure.stomp = port + 300  # next to the claimed AMQP port, as test_backend_tls
        return {"RABBITMQ_PLUGINS": "rabbitmq_stomp", "RABBITMQ_STOMP_PORT": str(configure.stomp)}

    for r in private_rabbit(tmp_path_factory, configure):
        r.stomp_port = configure.stomp
        yield r


@pytest.fixture
def gateways(rabbit, gateway_factory):
    """Three gateways, one node name each, on the same RabbitMQ vhost."""
    gws = []
    for node in NODES:
        gws.append(gateway_factory(
            name=node,
            server={"node": node},
            admin={"token": TOKEN},
            services=[stomp_service(backend=rabbit.url, pool_size=POOL_SIZE, heart_beat=[0, 0])],
        ))
    for g in gws:
        wait_ready(g, 15)
    return gws


@pytest.fixture
def client():
    conns = []

    def make(gw):
        conn = stomp.WSStompConnection([(gw.host, gw.port)], ws_path="/ws",
                                       header={"Sec-WebSocket-Protocol": "v12.stomp"},
                                       reconnect_attempts_max=1, timeout=5, vhost="/")
        lst = Listener()
        conn.set_listener("t", lst)
        conn.connect(wait=True)
        conns.append(conn)
        return conn, lst

    yield make
    for c in conns:
        if c.is_connected():
            c.disconnect()


def subscribe(conn, lst, dest: str, sid: str, **headers) -> None:
    rid = f"sub-{next(_ids)}"
    conn.subscribe(dest, id=sid, headers={"receipt": rid, **headers})
    assert lst.receipts.get(timeout=5) == rid


def send(conn, lst, dest: str, body: str, **headers) -> None:
    rid = f"send-{next(_ids)}"
    conn.send(dest, body, headers={"receipt": rid, **headers})
    assert lst.receipts.get(timeout=5) == rid


def test_topics_queues_and_replies_cross_gateways(gateways, client):
    a, b, c = gateways
    tag = uuid.uuid4().hex[:8]
    # Topics: subscribers on A and C hear what B and C publish, one copy each.
    (ca, la), (cb, lb), (cc, lc) = client(a), client(b), client(c)
    topic = f"/topic/news.{tag}"
    subscribe(ca, la, topic, "t-a")
    subscribe(cc, lc, f"/topic/news.*", "t-c")
    send(cb, lb, topic, "from-b")
    send(cc, lc, topic, "from-c")
    for lst in (la, lc):
        got = sorted(lst.message(5).body for _ in range(2))
        assert got == ["from-b", "from-c"], got
        lst.no_message(0.3)

    # Queues: competing consumers on B and C share what A sends, each message once.
    work = f"/queue/work.{tag}"
    subscribe(cb, lb, work, "q-b")
    subscribe(cc, lc, work, "q-c")
    for i in range(10):
        send(ca, la, work, f"job-{i}")
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 10 and time.monotonic() < deadline:
        for lst in (lb, lc):
            try:
                got.append(lst.messages.get(timeout=0.1).body)
            except Exception:
                pass
    assert sorted(got) == sorted(f"job-{i}" for i in range(10)), got

    # Temp-queue replies: A asks with reply-to:/temp-queue/..., C answers at the address it
    # was given, and the answer comes back to A's session.
    rpc = f"/queue/rpc.{tag}"
    (responder, lr) = client(c)
    subscribe(responder, lr, rpc, "rpc")
    send(ca, la, rpc, "ping", **{"reply-to": "/temp-queue/answers", "correlation-id": "c1"})
    req = lr.message(5)
    reply_to = req.headers["reply-to"]
    assert reply_to.startswith("/amq/queue/stomp-gw.gw-a."), reply_to
    send(responder, lr, reply_to, "pong", **{"correlation-id": req.headers["correlation-id"]})
    rep = la.message(5)
    assert (rep.body, rep.headers["subscription"], rep.headers["correlation-id"]) == (
        "pong", "/temp-queue/answers", "c1")
    # B can answer too: the address works from any gateway on the broker.
    send(cb, lb, reply_to, "pong-b")
    assert la.message(5).body == "pong-b"


def test_gateway_and_rabbitmq_stomp_plugin_clients_answer_each_other(rabbit, gateways, client):
    """Replies cross between the gateways and RabbitMQ's STOMP plugin: each side's
    rewritten reply-to is an address the other can SEND to."""
    a, b, _ = gateways
    tag = uuid.uuid4().hex[:8]
    plugin = stomp.Connection12([("127.0.0.1", rabbit.stomp_port)], vhost="/", reconnect_attempts_max=1,
                                timeout=5)
    lp = Listener()
    plugin.set_listener("t", lp)
    plugin.connect("guest", "guest", wait=True)
    try:
        # The plugin's client asks; a client of gw-b answers at the plugin's reply queue
        # (RabbitMQ's amq.gen-... name, which the gateway shows as /amq/queue/NAME).
        (responder, lr) = client(b)
        subscribe(responder, lr, f"/queue/ask-gw.{tag}", "rpc")
        plugin.send(f"/queue/ask-gw.{tag}", "ping", headers={"reply-to": "/temp-queue/plugin"})
        req = lr.message(5)
        assert req.headers["reply-to"].startswith("/amq/queue/amq.gen-"), req.headers
        send(responder, lr, req.headers["reply-to"], "pong from gw-b")
        rep = lp.message(5)
        assert rep.body == "pong from gw-b" and rep.headers["subscription"] == "/temp-queue/plugin", rep.headers
        # A client of gw-a asks; the plugin shows its client the gateway's temp queue as
        # /reply-queue/stomp-gw.gw-a... (its own form for a bare queue name), and the
        # answer sent there reaches gw-a's client.
        plugin.subscribe(f"/queue/ask-plugin.{tag}", id="p-rpc", ack="auto", headers={"receipt": "p-sub"})
        assert lp.receipts.get(timeout=5) == "p-sub"
        (asker, la) = client(a)
        send(asker, la, f"/queue/ask-plugin.{tag}", "ping", **{"reply-to": "/temp-queue/gw"})
        req = lp.message(5)
        assert req.headers["reply-to"].startswith("/reply-queue/stomp-gw.gw-a."), req.headers
        plugin.send(req.headers["reply-to"], "pong from the plugin")
        rep = la.message(5)
        assert rep.body == "pong from the plugin" and rep.headers["subscription"] == "/temp-queue/gw"
    finally:
        plugin.disconnect()


# --- many subscribers ------------------------------------------------------------------


def _frames(msg) -> list:
    return parse(msg.encode() if isinstance(msg, str) else msg)


async def _subscriber(gw, dest: str, opened: asyncio.Semaphore):
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


async def _message(ws, timeout: float):
    while True:
        frames = _frames(await asyncio.wait_for(ws.recv(), timeout))
        if frames:
            return frames[0]


async def _many(rabbit, gateways, dest: str, routing_key: str) -> None:
    opened = asyncio.Semaphore(60)
    clients = await asyncio.gather(*(_subscriber(g, dest, opened)
                                     for g in gateways for _ in range(SUBSCRIBERS_PER_GATEWAY)))
    try:
        bound = [r for r in rabbit.rows("list_bindings", "source_name", "destination_name", "routing_key")
                 if r[0] == "amq.topic" and r[2] == routing_key]
        queues = sorted(r[1] for r in bound)
        # One queue per gateway, named after it.
        assert len(queues) == len(gateways), queues
        for node, q in zip(sorted(NODES), queues):
            assert q.startswith(f"stomp-gw.{node}.") and ".topic." in q, (node, q)
        ours = [r for r in rabbit.rows("list_connections", "client_properties") if "gateway stomp" in r[0]]
        assert len(ours) == len(gateways) * POOL_SIZE, ours
        for node in NODES:
            assert sum(f"(node {node}." in r[0] for r in ours) == POOL_SIZE, (node, ours)
        for g in gateways:
            assert g.metric("gateway_stomp_upstream_subscriptions") == 1
            assert g.metric("gateway_stomp_upstream_local_subscribers") == SUBSCRIBERS_PER_GATEWAY
        # One publish reaches all of them: one delivery into each gateway.
        conn = rabbit.pika()
        conn.channel().basic_publish("amq.topic", routing_key, b"tick")
        conn.close()
        got = await asyncio.gather(*(_message(ws, 30) for ws in clients))
        assert {(f.command, f.body) for f in got} == {("MESSAGE", b"tick")}
        for g in gateways:
            assert g.metric("gateway_stomp_backend_messages_total", direction="in") == 1
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


def test_three_gateways_1000_subscribers_each_one_queue_per_gateway(rabbit, gateways):
    key = f"load.{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    asyncio.run(_many(rabbit, gateways, f"/topic/{key}", key))
    print(f"{len(gateways)} x {SUBSCRIBERS_PER_GATEWAY} subscribers served in {time.monotonic() - t0:.1f}s")
    # The last subscriber gone, each gateway's queue goes too.
    deadline = time.monotonic() + 15
    while True:
        left = [r for r in rabbit.rows("list_bindings", "source_name", "routing_key")
                if r[0] == "amq.topic" and r[1] == key]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, left


# --- identity --------------------------------------------------------------------------


def _admin(gw, path: str):
    status, body = gw.http_get(path, admin=True, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, (path, status, body)
    return json.loads(body)


def test_each_gateway_names_its_node(gateways, client):
    for g, node in zip(gateways, NODES):
        info = [(labels, v) for name, labels, v in parse_metrics(g.metrics_text()) if name == "gateway_info"]
        assert len(info) == 1, info
        labels, value = info[0]
        assert value == 1 and labels["node"] == node and labels["version"], info
        assert _admin(g, "/api/info")["node"] == node
        conn, _ = client(g)
        page = _admin(g, "/api/sessions")
        assert page["total"] == 1 and page["sessions"][0]["node"] == node, page
        one = _admin(g, f"/api/sessions/{page['sessions'][0]['id']}")
        assert one["node"] == node
        conn.disconnect()
        assert f"starting as node {node}" in g.log()

