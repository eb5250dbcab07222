"""The STOMP bridge on RabbitMQ (`backend = "amqp://..."`): a private RabbitMQ node started
by tests/scripts/rabbitmq.sh for the whole module, raw STOMP clients through the gateway,
pika on the AMQP side, rabbitmqctl to see what the broker holds.

Covers topic fan-out, STOMP <-> AMQP interop both ways, headers <-> properties, queue acks
and NACK redelivery, receipts after publisher confirms, temp-queue replies, RabbitMQ's
errors, offloading (200 subscribers = one queue, one consumer), pass-through logins, and a
broker outage (ERROR to queue clients with pending acks, 503 while down, recovery).

Skipped only when rabbitmq-server is not installed and CI is unset; with CI=true a missing
broker or pika fails.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from stomp_util import RawStomp, stomp_service

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "scripts" / "rabbitmq.sh"
RMQ_BIN = Path("/usr/lib/rabbitmq/bin")
CI = bool(os.environ.get("CI"))

try:
    import pika
except ImportError:  # pragma: no cover - depends on the venv
    pika = None

_ids = itertools.count(1)


def _need(ok: bool, why: str) -> None:
    if ok:
        return
    if CI:
        pytest.fail(f"{why} (CI is set: tests/scripts/install-deps.sh must provide it)", pytrace=False)
    pytest.skip(why)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_fixed_port(start: int, stop: int, also=lambda p: True) -> int:
    """A free port below the ephemeral range (where the gateways take theirs)."""
    for p in range(start, stop):
        if not _listening(p) and also(p):
            return p
    raise RuntimeError(f"no free port in {start}..{stop}")


@dataclass
class Rabbit:
    dir: Path
    env: dict
    node: str
    port: int

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2f"

    def script(self, cmd: str, timeout: float = 90) -> str:
        r = subprocess.run(["bash", str(SCRIPT), cmd, str(self.dir)], env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"rabbitmq.sh {cmd} failed ({r.returncode}):\n{r.stderr}")
        return r.stdout

    def ctl(self, *args: str) -> str:
        # The Erlang cookie lives in the node's HOME (the script points HOME at its dir).
        r = subprocess.run([str(RMQ_BIN / "rabbitmqctl"), "-n", self.node, "-q", *args],
                           env={**self.env, "HOME": str(self.dir)}, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, f"rabbitmqctl {' '.join(args)}: {r.stderr}"
        return r.stdout

    def rows(self, *args: str) -> list[list[str]]:
        """`rabbitmqctl list_*` output as rows (header line dropped)."""
        lines = [ln for ln in self.ctl(*args, "--no-table-headers").splitlines() if ln.strip()]
        return [ln.split("\t") for ln in lines]

    def pika(self):
        return pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=self.port, credentials=pika.PlainCredentials("guest", "guest"),
            connection_attempts=3, retry_delay=0.5))


def _claim_ports():
    """(AMQP port, epmd port, lock) for a private node. The broker is stopped and restarted
    mid-module, so a port merely free now could be taken meanwhile by another run of these
    tests (e.g. a concurrent tests/run.sh): a lock file per port keeps runs apart."""
    for port in range(5700, 5800):
        lock = open(f"/tmp/gateway-e2e-rabbitmq-{port}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        epmd = port - 1330  # 4370..4469, next to the default 4369
        if any(_listening(p) for p in (port, port + 20000, epmd)):
            lock.close()
            continue
        return port, epmd, lock
    raise RuntimeError("no free port for a private RabbitMQ node in 5700..5799")


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    _need((RMQ_BIN / "rabbitmq-server").exists(),
          "rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    _need(pika is not None, "pika is not installed in the test venv")
    d = tmp_path_factory.mktemp("rabbitmq")
    port, epmd, lock = _claim_ports()
    env = dict(os.environ)
    env.update({
        "RABBITMQ_AMQP_PORT": str(port),
        "RABBITMQ_NODENAME": f"gwtest{port}@localhost",
        "RABBITMQ_PLUGINS": "",
        "ERL_EPMD_PORT": str(epmd),
    })
    r = Rabbit(d, env, env["RABBITMQ_NODENAME"], port)
    try:
        r.script("start")
        yield r
    finally:
        r.script("stop")
        lock.close()


@pytest.fixture
def rgw(rabbit, gateway_factory):
    def make(**settings):
        settings.setdefault("backend", rabbit.url)
        settings.setdefault("heart_beat", [0, 0])
        gw = gateway_factory(services=[stomp_service(**settings)])
        # The backend connects in the background; until then the service is not ready.
        deadline = time.monotonic() + 10
        while gw.http_get("/readyz")[0] != 200:
            assert time.monotonic() < deadline, "the RabbitMQ backend did not become ready"
            time.sleep(0.02)
        return gw
    return make


def stomp(gw, **connect_headers) -> RawStomp:
    c = RawStomp(gw)
    c.connect(**connect_headers)
    return c


def subscribe(c: RawStomp, dest: str, sid: str = "s1", **headers) -> None:
    c.receipt("SUBSCRIBE", {"destination": dest, "id": sid, **headers}, rid=f"sub-{next(_ids)}")


def messages(c: RawStomp, n: int, timeout: float = 5.0) -> list:
    out = []
    while len(out) < n:
        f = c.recv(timeout)
        assert f.command == "MESSAGE", f"expected MESSAGE, got {f}"
        out.append(f)
    return out


def no_frame(c: RawStomp, wait: float = 0.3) -> None:
    try:
        f = c.recv(wait)
    except AssertionError:
        return
    raise AssertionError(f"unexpected frame {f}")


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
    queue = f"work-{next(_ids)}"
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
    queue = f"rt-{next(_ids)}"
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
    queue = f"jobs-{next(_ids)}"
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
    queue = f"rr-{next(_ids)}"
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
    queue = f"rpc-{next(_ids)}"
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

def test_offloading_one_upstream_for_200_subscribers(rabbit, rgw):
    gw = rgw(pool_size=2)
    clients = []
    try:
        for _ in range(200):
            c = RawStomp(gw)
            c.connect()
            c.send("SUBSCRIBE", {"destination": "/topic/load.tick", "id": "sub-0"})
            clients.append(c)
        # A receipt on each after all subscribed: every subscription is in place.
        for i, c in enumerate(clients):
            c.receipt("SEND", {"destination": "/topic/load.sync"}, "", rid=f"sync{i}")
        bindings = [r for r in rabbit.rows("list_bindings", "source_name", "destination_name", "routing_key")
                    if r[0] == "amq.topic" and r[2] == "load.tick"]
        assert len(bindings) == 1, bindings
        queue = bindings[0][1]
        consumers = [r for r in rabbit.rows("list_consumers", "queue_name") if r[0] == queue]
        assert len(consumers) == 1, consumers
        ours = [r for r in rabbit.rows("list_connections", "channels", "client_properties")
                if "gateway stomp" in r[1]]
        assert len(ours) == 2, ours
        # The shared consumer, the publishing channels and nothing per client.
        assert sum(int(r[0]) for r in ours) <= 4, ours
        assert gw.metric("gateway_stomp_backend_connections") == 2
        assert gw.metric("gateway_stomp_upstream_subscriptions") == 1
        assert gw.metric("gateway_stomp_upstream_local_subscribers") == 200
        # One publish, 200 deliveries (one shared frame).
        clients[0].receipt("SEND", {"destination": "/topic/load.tick"}, "t1", rid="go")
        for c in clients:
            (m,) = messages(c, 1)
            assert m.body == b"t1"
        assert gw.metric("gateway_stomp_backend_messages_total", direction="in") >= 1
    finally:
        for c in clients:
            c.ws.close()
    # The last subscriber gone: consumer cancelled, queue deleted.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [r for r in rabbit.rows("list_queues", "name") if r[0] == queue]
        if not left:
            break
        time.sleep(0.1)
    assert not left, "the shared queue outlived its last subscriber"
    assert gw.wait_metric("gateway_stomp_upstream_subscriptions", lambda v: v == 0) == 0


# --- outages --------------------------------------------------------------------------

def test_unreachable_broker_at_start_is_not_ready(gateway_factory):
    port = _free_fixed_port(5800, 5900)
    gw = gateway_factory(services=[stomp_service(backend=f"amqp://guest:guest@127.0.0.1:{port}/%2f")])
    assert gw.http_get("/readyz")[0] == 503
    r = gw.refused("/ws", subprotocols=["v12.stomp"])
    assert r.status_code == 503
    assert gw.alive()


def test_broker_outage_and_recovery(rabbit, rgw):
    """Last in the module: it stops and restarts the broker."""
    gw = rgw()
    watcher = stomp(gw)
    subscribe(watcher, "/topic/status.*")
    queue = f"pending-{next(_ids)}"
    worker = stomp(gw)
    subscribe(worker, f"/queue/{queue}", ack="client")
    stomp(gw).receipt("SEND", {"destination": f"/queue/{queue}"}, "unacked", rid="u")
    (m,) = messages(worker, 1)
    assert m.body == b"unacked"
    publisher = stomp(gw)
    late = RawStomp(gw)  # upgraded, not yet CONNECTed

    rabbit.script("stop")
    # The queue client holding an unacknowledged message is told, naming the outage.
    f = worker.recv(10)
    assert f.command == "ERROR", f
    assert "RabbitMQ" in f.headers["message"] and "redelivered" in f.headers["message"]
    # Not ready, new handshakes refused; the gateway itself is fine.
    assert gw.wait_metric("gateway_stomp_backend_connections", lambda v: v == 0, timeout=10) == 0
    assert gw.http_get("/readyz")[0] == 503
    assert gw.refused("/ws", subprotocols=["v12.stomp"]).status_code == 503
    assert gw.http_get("/healthz")[0] == 200
    # Publishing into the dead broker fails fast with an ERROR.
    t0 = time.monotonic()
    publisher.send("SEND", {"destination": "/topic/status.x", "receipt": "dead"}, "lost")
    err = publisher.expect_error(timeout=5)
    assert "unavailable" in err.headers["message"], err
    assert time.monotonic() - t0 < 3
    # A client that CONNECTs meanwhile gets a clear ERROR.
    late.send("CONNECT", {"accept-version": "1.2", "host": "/"})
    err = late.expect_error()
    assert "RabbitMQ" in err.headers["message"] and "unavailable" in err.headers["message"], err
    assert late.close_code == 1014, (late.close_code, late.close_reason)
    # The topic subscriber keeps its WebSocket through the outage.
    no_frame(watcher, 0.2)

    rabbit.script("start")
    deadline = time.monotonic() + 30
    while gw.http_get("/readyz")[0] != 200:
        assert time.monotonic() < deadline, "not ready again after the broker came back"
        time.sleep(0.2)
    # The shared subscription is re-established; the same session gets new messages.
    assert gw.wait_metric("gateway_stomp_upstream_gaps_total", lambda v: (v or 0) >= 1) >= 1
    fresh = stomp(gw)
    deadline = time.monotonic() + 15
    while True:
        fresh.receipt("SEND", {"destination": "/topic/status.up"}, "back", rid=f"b{next(_ids)}")
        try:
            f = watcher.recv(0.5)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "the topic subscription did not recover"
    assert f.command == "MESSAGE" and f.body == b"back"
    assert gw.metric("gateway_stomp_backend_reconnects_total") >= 1
    assert gw.metric("gateway_stomp_publish_failures_total") >= 1
