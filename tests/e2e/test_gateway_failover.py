"""Plain STOMP clients (stomp.py's WebSocket transport with a list of hosts) across several
gateways on one RabbitMQ: when their gateway is killed or drained they connect to the next
host of the list and subscribe again, and a queue loses nothing: what a consumer had not
acknowledged comes again, marked `redelivered:true`. README.md, "Scaling out", states it; the
client library's own failover (resends, gap reports, stream offsets) is checked in
tests/node/failover.test.js."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

stomp = pytest.importorskip("stomp")

from rabbit_util import private_rabbit, rabbit_gateway  # noqa: E402

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    yield from private_rabbit(tmp_path_factory)


def until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Client:
    """A stomp.py connection over the failover list `hosts`, and what it received."""

    def __init__(self, hosts, name: str, ack_now: bool = True):
        self.name = name
        self.ack_now = ack_now
        self.lock = threading.Lock()
        self.got: list[tuple[str, bool]] = []  # (body, redelivered)
        self.held: list = []  # frames not acknowledged yet
        self.receipts: set[str] = set()
        self.disconnected = threading.Event()
        self.subscription = None
        self.conn = stomp.WSStompConnection(
            hosts, ws_path="/ws", header={"Sec-WebSocket-Protocol": "v12.stomp"},
            reconnect_attempts_max=3, reconnect_sleep_initial=0.05, timeout=5, heartbeats=(0, 0))
        self.conn.set_listener(name, self)
        self.connect()

    # stomp.py listener callbacks (called on its receiver thread)
    def on_message(self, frame):
        with self.lock:
            self.got.append((frame.body, frame.headers.get("redelivered") == "true"))
            if not self.ack_now:
                self.held.append(frame)
                return
        self.conn.ack(frame.headers["ack"])

    def on_receipt(self, frame):
        with self.lock:
            self.receipts.add(frame.headers["receipt-id"])

    def on_disconnected(self):
        self.disconnected.set()

    def connect(self):
        self.disconnected.clear()
        self.conn.connect(wait=True, headers={"host": "/"})
        if self.subscription:
            self.subscribe(self.subscription)

    def subscribe(self, destination):
        self.subscription = destination
        rid = f"sub-{next(_ids)}"
        self.conn.subscribe(destination, id="s1", ack="client-individual",
                            headers={"receipt": rid, "prefetch-count": "20"})
        until(lambda: rid in self.receipts, 5, f"{self.name}: SUBSCRIBE receipt")

    def send(self, destination, body):
        rid = f"send-{next(_ids)}"
        self.conn.send(destination, body, headers={"receipt": rid, "persistent": "true"})
        until(lambda: rid in self.receipts, 5, f"{self.name}: RECEIPT for {body}")

    @property
    def host(self):
        return self.conn.transport.current_host_and_port

    def bodies(self):
        with self.lock:
            return list(self.got)

    def close(self):
        if self.conn.is_connected():
            self.conn.disconnect()


def hosts(gws, first):
    return [(gws[(first + i) % len(gws)].host, gws[(first + i) % len(gws)].port) for i in range(len(gws))]


@pytest.fixture
def three(rabbit, gateway_factory):
    return [rabbit_gateway(rabbit, gateway_factory, name=f"gw{i}") for i in range(3)]


def test_killed_gateway_loses_no_receipted_message(rabbit, three):
    """SIGKILL the gateway of a consumer holding unacknowledged messages, under receipted
    load: the consumer moves to the next host, and every receipted SEND reaches a consumer;
    the held ones come again marked redelivered, nothing else repeats."""
    q = f"/queue/failover-py.{next(_ids)}.{time.time_ns()}"
    holder = Client(hosts(three, 0), "holder", ack_now=False)
    holder.subscribe(q)
    other = Client(hosts(three, 1), "other")
    other.subscribe(q)
    pub = Client(hosts(three, 2), "publisher")
    n = 300
    for i in range(1, n // 3 + 1):
        pub.send(q, f"m{i}")
    until(lambda: len(holder.bodies()) > 0, 5, "messages held by the consumer on gw0")
    held = {b for b, _ in holder.bodies()}

    three[0].proc.kill()  # SIGKILL
    three[0].proc.wait(5)
    assert holder.disconnected.wait(5), "the holder saw its gateway go"
    holder.ack_now = True
    holder.connect()
    assert holder.host == (three[1].host, three[1].port), "the next host of the list"
    for i in range(n // 3 + 1, n + 1):
        pub.send(q, f"m{i}")

    want = {f"m{i}" for i in range(1, n + 1)}
    seen = lambda: {b for b, _ in holder.bodies() + other.bodies()}  # noqa: E731
    until(lambda: seen() >= want, 15, "every receipted message")
    time.sleep(0.5)
    deliveries = holder.bodies() + other.bodies()
    counts = {}
    for body, redelivered in deliveries:
        counts.setdefault(body, []).append(redelivered)
    for body, marks in counts.items():
        assert marks.count(False) <= 1, f"{body} delivered twice unmarked: {marks}"
    again = {b for b, marks in counts.items() if True in marks}
    assert held <= again, f"held but not redelivered: {sorted(held - again)[:5]}"
    assert set(counts) == want
    for c in (holder, other, pub):
        c.close()
    rabbit.ctl("delete_queue", q.removeprefix("/queue/"))


def test_drained_gateway_moves_its_consumer(rabbit, three):
    """SIGTERM: the gateway drains (exit 0), its consumer reconnects to the next host and the
    queue hands it what was sent meanwhile."""
    q = f"/queue/drain-py.{next(_ids)}.{time.time_ns()}"
    c = Client(hosts(three, 0), "consumer")
    c.subscribe(q)
    pub = Client(hosts(three, 1), "publisher")
    pub.send(q, "before")
    until(lambda: c.bodies() == [("before", False)], 5, "the first message")

    three[0].terminate()
    assert three[0].wait_exit(15) == 0, three[0].log()
    assert c.disconnected.wait(5)
    pub.send(q, "while away")
    c.connect()
    assert c.host != (three[0].host, three[0].port)
    pub.send(q, "after")
    until(lambda: len(c.bodies()) == 3, 5, "the messages after the move")
    assert [b for b, _ in c.bodies()] == ["before", "while away", "after"]
    for x in (c, pub):
        x.close()
    rabbit.ctl("delete_queue", q.removeprefix("/queue/"))
