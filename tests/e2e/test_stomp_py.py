"""The STOMP bridge through stomp.py's WebSocket transport (stomp.WSStompConnection, STOMP
1.2 over websocket-client): connect, subscribe, send/receive, client-individual ack and
nack, transactions, receipts, disconnect."""

from __future__ import annotations

import itertools

import pytest

stomp = pytest.importorskip("stomp")

from stomp_util import Listener, stomp_service  # noqa: E402

_ids = itertools.count(1)


@pytest.fixture
def sgw(gateway_factory):
    return gateway_factory(services=[stomp_service()])


@pytest.fixture
def connect(sgw):
    conns = []

    def make(**kw):
        conn = stomp.WSStompConnection(
            [(sgw.host, sgw.port)],
            ws_path="/ws",
            header={"Sec-WebSocket-Protocol": "v12.stomp"},
            reconnect_attempts_max=1,
            timeout=5,
            **kw,
        )
        lst = Listener()
        conn.set_listener("t", lst)
        conn.connect(wait=True)
        conns.append(conn)
        return conn, lst

    yield make
    for c in conns:
        if c.is_connected():
            rid = f"bye-{next(_ids)}"
            c.disconnect(receipt=rid)


def sync(conn, lst, rid=None):
    """Round trip: once this receipt is back, every earlier frame was handled."""
    rid = rid or f"sync-{next(_ids)}"
    conn.send("/topic/sync.nobody", "", headers={"receipt": rid})
    lst.receipt(rid)


def test_connect_send_receive(connect):
    conn, lst = connect()
    frame = lst.connected.get(timeout=3)
    assert frame.headers["version"] == "1.2"
    assert frame.headers["server"].startswith("gateway/")

    conn.subscribe("/topic/py.hello", id="s1")
    sync(conn, lst)
    conn.send("/topic/py.hello", "hello from stomp.py", content_type="text/plain", headers={"x-custom": "yes"})
    m = lst.message()
    assert m.body == "hello from stomp.py"
    assert m.headers["destination"] == "/topic/py.hello"
    assert m.headers["subscription"] == "s1"
    assert m.headers["content-type"] == "text/plain"
    assert m.headers["x-custom"] == "yes"
    assert m.headers["content-length"] == str(len("hello from stomp.py"))


def test_two_connections_and_unsubscribe(connect):
    pub, publ = connect()
    sub, subl = connect()
    sub.subscribe("/topic/py.two", id="a")
    sync(sub, subl)
    for i in range(3):
        pub.send("/topic/py.two", f"n{i}")
    assert [subl.message().body for _ in range(3)] == ["n0", "n1", "n2"]
    sub.unsubscribe(id="a")
    sync(sub, subl)
    pub.send("/topic/py.two", "after")
    sync(pub, publ)
    subl.no_message()


def test_client_individual_ack_and_nack(connect):
    pub, publ = connect()
    c1, l1 = connect()
    c1.subscribe("/queue/py.work", id="w", ack="client-individual")
    sync(c1, l1)
    for body in ("job-1", "job-2", "job-3"):
        pub.send("/queue/py.work", body)
    msgs = [l1.message() for _ in range(3)]
    assert [m.body for m in msgs] == ["job-1", "job-2", "job-3"]
    assert all("ack" in m.headers for m in msgs)
    c1.ack(msgs[0].headers["ack"])
    c1.ack(msgs[2].headers["ack"])
    c1.nack(msgs[1].headers["ack"])
    again = l1.message()
    assert again.body == "job-2"
    assert again.headers.get("redelivered") == "true"
    # Left unacked, it goes to the next consumer when this one leaves; the ACKed ones don't.
    c2, l2 = connect()
    c2.subscribe("/queue/py.work", id="w2", ack="auto")
    sync(c2, l2)
    c1.disconnect(receipt="c1-bye")
    m = l2.message()
    assert m.body == "job-2"
    assert m.headers.get("redelivered") == "true"
    l2.no_message()


def test_transaction_commit_and_abort(connect):
    conn, lst = connect()
    conn.subscribe("/queue/py.tx", id="t")
    sync(conn, lst)
    tx = conn.begin()
    conn.send("/queue/py.tx", "in-tx-1", transaction=tx)
    conn.send("/queue/py.tx", "in-tx-2", transaction=tx)
    sync(conn, lst)
    lst.no_message(0.2)
    conn.commit(tx)
    assert [lst.message().body, lst.message().body] == ["in-tx-1", "in-tx-2"]

    tx2 = conn.begin()
    conn.send("/queue/py.tx", "rolled-back", transaction=tx2)
    conn.abort(tx2)
    conn.send("/queue/py.tx", "plain")
    assert lst.message().body == "plain"
    lst.no_message(0.2)


def test_receipts_and_disconnect(connect, sgw):
    conn, lst = connect()
    conn.subscribe("/topic/py.r", id="r", headers={"receipt": "sub-1"})
    lst.receipt("sub-1")
    conn.send("/topic/py.r", "x", headers={"receipt": "send-1"})
    lst.receipt("send-1")
    assert lst.message().body == "x"
    conn.unsubscribe(id="r", headers={"receipt": "unsub-1"})
    lst.receipt("unsub-1")
    tx = conn.begin(headers={"receipt": "begin-1"})
    lst.receipt("begin-1")
    conn.commit(tx, headers={"receipt": "commit-1"})
    lst.receipt("commit-1")
    conn.disconnect(receipt="bye-1")
    lst.receipt("bye-1")
    assert sgw.wait_metric("gateway_stomp_sessions", lambda v: not v, timeout=5) in (None, 0.0)
