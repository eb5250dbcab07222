"""The AMQP bridge on a private RabbitMQ (tests/scripts/rabbitmq.sh), seen from a raw AMQP
0-9-1 client over the gateway's WebSocket (amqp_util.RawAmqp) and from pika straight to the
broker:

- roles' permissions (configure/write/read) decide per client; a denial closes only the
  channel (403) and the connection carries on;
- exclusive and server-named queues belong to the session that declared them: others get
  405 RESOURCE_LOCKED, and they are gone once it leaves;
- many clients share pool_size broker connections;
- a drain tells clients CONNECTION_FORCED; a broker outage tells them CONNECTION_FORCED naming
  the broker, refuses new upgrades and /readyz with 503, and the service recovers.
The outage test stops the module's broker, so it runs last.
"""

from __future__ import annotations

import signal
import time

import bcrypt
import pytest

from amqp_util import (RawAmqp, amqp_service, method, publish, queue_declare_args,
                       shortstr, table, QUEUE_DECLARE)
from rabbit_util import private_rabbit, wait_ready

USERS = {"worker": ("w-pass", ["worker"]), "ops": ("o-pass", ["ops"])}
ACL = [
    {"roles": ["worker"], "configure": ["jobs.*"], "write": ["amq.default"], "read": ["jobs.*"]},
    {"roles": ["ops"], "configure": ["*"], "write": ["*"], "read": ["*"]},
]
_ids = iter(range(10**6))


def exchange_declare_args(name: str, kind: str) -> bytes:
    # reserved-1, exchange, type, passive/durable/auto-delete/internal/no-wait bits, arguments
    return b"\x00\x00" + shortstr(name) + shortstr(kind) + b"\x00" + table({})


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    yield from private_rabbit(tmp_path_factory)


def realm(tmp_path) -> str:
    out = []
    for name, (pw, roles) in USERS.items():
        h = bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()
        quoted = ", ".join(f'"{r}"' for r in roles)
        out.append(f'[[user]]\nname = "{name}"\npassword_hash = \'{h}\'\nroles = [{quoted}]\n')
    path = tmp_path / "users.toml"
    path.write_text("\n".join(out))
    return str(path)


@pytest.fixture
def gw(rabbit, gateway_factory, tmp_path):
    g = gateway_factory(services=[amqp_service(backend=rabbit.url, pool_size=2, acl=ACL)],
                        auth={"realm_file": realm(tmp_path)})
    wait_ready(g, 20)
    return g


def login(gw, user: str) -> RawAmqp:
    c = RawAmqp(gw)
    c.handshake(user, USERS[user][0])
    return c


def test_permissions_are_per_role_and_a_denial_closes_only_the_channel(gw):
    q = f"jobs.{time.time_ns()}"
    with login(gw, "worker") as w:
        w.open_channel(1)
        assert w.declare_queue(1, q) == q
        w.send(publish(1, "", q, b"job-1"))
        assert w.get_eventually(1, q).body == b"job-1"
        # Outside the worker's configure patterns: refused, named, and only channel 1 goes.
        w.send(method(1, *QUEUE_DECLARE, queue_declare_args("secret.queue")))
        close = w.expect_channel_close(1)
        assert close.reply_code == 403, close
        assert "secret.queue" in close.reply_text and "worker" in close.reply_text, close
        w.open_channel(2)
        w.send(publish(2, "", q, b"job-2"))
        assert w.get_eventually(2, q).body == b"job-2"
        # Publishing to an exchange the role may not write to.
        w.send(publish(2, "amq.topic", "x", b"nope"))
        assert w.expect_channel_close(2).reply_code == 403
        w.close()
    with login(gw, "ops") as o:
        o.open_channel(1)
        assert o.declare_queue(1, f"secret.{time.time_ns()}").startswith("secret.")
        o.close()
    assert 'code="403"' in gw.metrics_text()


def test_a_publish_to_a_missing_exchange_closes_the_channel_with_the_brokers_404_at_once(gw):
    # No confirm.select: the client expects RabbitMQ's asynchronous Channel.Close all the same.
    with login(gw, "ops") as c:
        c.open_channel(1)
        c.send(publish(1, "no-such-exchange", "k", b"lost"))
        close = c.expect_channel_close(1, timeout=3)
        assert close.reply_code == 404, close
        assert "no-such-exchange" in close.reply_text, close
        c.open_channel(2)
        q = c.declare_queue(2, "", exclusive=True)
        c.send(publish(2, "", q, b"still here"))
        assert c.get_eventually(2, q).body == b"still here"
        c.close()


def test_an_exchange_type_the_broker_may_not_have_is_refused_to_that_client_alone(gw):
    # RabbitMQ closes the whole connection for an unknown type; here it is shared, so the
    # gateway answers itself and everyone else on the pooled connection carries on.
    other = login(gw, "ops")
    other.open_channel(1)
    with login(gw, "ops") as c:
        c.open_channel(1)
        c.send(method(1, 40, 10, exchange_declare_args("odd.x", "x-not-installed")))
        close = c.expect_connection_close()
        assert close.reply_code == 503, close
        assert "x-not-installed" in close.reply_text, close
    q = other.declare_queue(1, "", exclusive=True)
    other.send(publish(1, "", q, b"unaffected"))
    assert other.get_eventually(1, q).body == b"unaffected"
    other.close()


def test_exclusive_and_server_named_queues_belong_to_their_session(gw, rabbit):
    name = f"jobs.excl.{next(_ids)}.{time.time_ns()}"
    a = login(gw, "ops")
    a.open_channel(1)
    a.declare_queue(1, name, exclusive=True)
    generated = a.declare_queue(1, "")
    assert generated.startswith("amq.gen-"), generated
    with login(gw, "ops") as b:
        b.open_channel(1)
        # Both clients may share one pooled broker connection: the gateway, not RabbitMQ,
        # keeps the exclusive queue to its owner.
        b.send(method(1, *QUEUE_DECLARE, queue_declare_args(name, passive=True)))
        close = b.expect_channel_close(1)
        assert close.reply_code == 405, close
        a.close()
        # Gone with its session, like an exclusive queue with its connection.
        deadline = time.monotonic() + 5
        while True:
            queues = rabbit.ctl("list_queues", "name")
            if name not in queues and generated not in queues:
                break
            assert time.monotonic() < deadline, queues
            time.sleep(0.1)
        b.open_channel(2)
        b.send(method(2, *QUEUE_DECLARE, queue_declare_args(name, passive=True)))
        assert b.expect_channel_close(2).reply_code == 404
        b.close()


def test_many_clients_share_the_pools_broker_connections(gw, rabbit):
    clients = [login(gw, "worker") for _ in range(12)]
    try:
        for i, c in enumerate(clients):
            c.open_channel(1)
            c.declare_queue(1, f"jobs.pool.{i}.{time.time_ns()}", exclusive=True)
        # Each row's client_properties carry the connection_name lapin sends.
        rows = rabbit.ctl("list_connections", "client_properties").split("\n")
        ours = [r for r in rows if "gateway amqp amqp" in r]
        assert len(ours) == 2, rows
    finally:
        for c in clients:
            c.close()


def test_a_drain_tells_clients_connection_forced(gw):
    c = login(gw, "worker")
    c.open_channel(1)
    gw.proc.send_signal(signal.SIGTERM)
    close = c.expect_connection_close(10)
    assert close.reply_code == 320, close
    assert "shutting down" in close.reply_text, close
    assert gw.wait_exit(15) == 0


def test_a_broker_outage_closes_sessions_with_320_and_the_service_recovers(gw, rabbit):
    c = login(gw, "worker")
    c.open_channel(1)
    rabbit.script("stop")
    try:
        close = c.expect_connection_close(15)
        assert close.reply_code == 320, close
        assert rabbit.url.split("@")[-1].split("/")[0] in close.reply_text, close
        wait_ready(gw, 15, status=503)
        status, _ = gw.http_get("/amqp", headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert status == 503
    finally:
        rabbit.script("start")
    wait_ready(gw, 30)
    with login(gw, "worker") as again:
        again.open_channel(1)
        q = again.declare_queue(1, f"jobs.back.{time.time_ns()}", exclusive=True)
        again.send(publish(1, "", q, b"after"))
        assert again.get_eventually(1, q).body == b"after"
        again.close()
