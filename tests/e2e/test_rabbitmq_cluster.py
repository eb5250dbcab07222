"""The RabbitMQ backend on a cluster (tests/scripts/rabbitmq-cluster.sh, 3 nodes on loopback,
started once for the module): the pool spread over the nodes, failover to a surviving node
when the pool's node is stopped, quorum queues (`queue_types`) losing nothing that was
receipted and acknowledged, no duplicates when a quorum queue's leader is stopped during
consumption, and a clear ERROR for a queue type mismatch. Clients are stomp.py over the
gateway's WebSocket."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

stomp = pytest.importorskip("stomp")

from cluster_util import CLUSTER_SIZE, private_cluster  # noqa: E402
from rabbit_util import wait_ready  # noqa: E402
from stomp_util import Listener, RawStomp, stomp_service  # noqa: E402

ids = itertools.count(1)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from private_cluster(tmp_path_factory)


@pytest.fixture(autouse=True)
def all_nodes(cluster):
    """Every test starts with all nodes up: one a test stopped is started again before the
    next test (not after the last: the module's teardown stops the cluster anyway)."""
    for i in range(1, cluster.size + 1):
        if not cluster.running(i):
            cluster.start_node(i)


def cluster_gateway(cluster, gateway_factory, order=None, pool_size=None, **settings):
    settings.setdefault("backend", cluster.backend(order))
    settings.setdefault("pool_size", pool_size or cluster.size)
    settings.setdefault("heart_beat", [0, 0])
    settings.setdefault("queue_types", {"/queue/": "quorum"})
    gw = gateway_factory(services=[stomp_service(**settings)])
    wait_ready(gw, 20)
    return gw


def node_connections(gw, cluster) -> dict[int, float]:
    return {i: gw.metric("gateway_stomp_backend_node_connections", node=cluster.endpoint(i)) or 0
            for i in range(1, cluster.size + 1)}


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        time.sleep(0.1)


class PyClient:
    """A stomp.py client of the gateway that reconnects when its session ends (an ERROR, a
    refused CONNECT while the backend fails over)."""

    def __init__(self, gw, name: str):
        self.gw, self.name = gw, name
        self.conn = None
        self.lst = Listener()
        self.errors: list[str] = []
        self.connect()

    def connect(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            conn = stomp.WSStompConnection(
                [(self.gw.host, self.gw.port)], ws_path="/ws",
                header={"Sec-WebSocket-Protocol": "v12.stomp"},
                reconnect_attempts_max=1, timeout=5, heartbeats=(0, 0))
            lst = Listener()
            conn.set_listener(self.name, lst)
            try:
                conn.connect(wait=True, headers={"host": "/"})
                if conn.is_connected():
                    self.conn, self.lst = conn, lst
                    return
            except Exception:  # noqa: BLE001 - refused while the gateway is not ready
                pass
            try:
                conn.disconnect()
            except Exception:  # noqa: BLE001
                pass
            assert time.monotonic() < deadline, f"{self.name}: no STOMP session within {timeout}s"
            time.sleep(0.3)

    def ok(self) -> bool:
        return self.conn.is_connected() and self.lst.errors.empty() and not self.lst.disconnected

    def take_error(self) -> str | None:
        try:
            f = self.lst.errors.get_nowait()
        except Exception:  # noqa: BLE001 - queue.Empty
            return None
        self.errors.append(f.headers.get("message", ""))
        return self.errors[-1]

    def call(self, send, rid: str, timeout: float = 15) -> bool:
        """`send(receipt_headers)` then wait for RECEIPT `rid`; False on ERROR/disconnect."""
        try:
            send({"receipt": rid})
        except Exception:  # noqa: BLE001 - not connected
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = self.lst.receipts.get(timeout=0.05)
                if got == rid:
                    return True
            except Exception:  # noqa: BLE001 - queue.Empty
                pass
            if not self.lst.errors.empty() or self.lst.disconnected or not self.conn.is_connected():
                return False
        return False

    def send(self, dest: str, body: str) -> bool:
        return self.call(lambda h: self.conn.send(dest, body, headers={**h, "persistent": "true"}),
                         f"{self.name}-{next(ids)}")

    def subscribe(self, dest: str, sid: str, ack: str = "auto", **headers) -> bool:
        return self.call(lambda h: self.conn.subscribe(dest, id=sid, ack=ack, headers={**h, **headers}),
                         f"{self.name}-sub-{next(ids)}")

    def ack(self, frame) -> bool:
        return self.call(lambda h: self.conn.ack(frame.headers["ack"], receipt=h["receipt"]),
                         f"{self.name}-ack-{next(ids)}")

    def close(self) -> None:
        try:
            if self.conn.is_connected():
                self.conn.disconnect()
        except Exception:  # noqa: BLE001
            pass


class Publisher(threading.Thread):
    """Sends numbered messages with receipts until stopped, reconnecting after failures;
    `receipted[dest]` is what the gateway confirmed."""

    def __init__(self, gw, dests: list[str]):
        super().__init__(daemon=True)
        self.client = PyClient(gw, "pub")
        self.dests = dests
        self.receipted: dict[str, list[int]] = {d: [] for d in dests}
        self.failed = 0
        self.seq = itertools.count(1)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            n = next(self.seq)
            for d in self.dests:
                if self.client.send(d, str(n)):
                    self.receipted[d].append(n)
                else:
                    self.failed += 1
                    self.client.take_error()
                    errors = self.client.errors
                    self.client.close()
                    self.client.connect(timeout=60)
                    self.client.errors = errors
            time.sleep(0.01)

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
        self.client.close()


def test_the_pool_is_spread_over_the_nodes(cluster, gateway_factory):
    amqp = {"name": "amqp", "path": "/amqp", "bridge": "amqp", "allow_missing_origin": True,
            "settings": {"backend": cluster.backend(), "credentials": "service", "pool_size": cluster.size}}
    gw = gateway_factory(services=[stomp_service(backend=cluster.backend(), pool_size=cluster.size,
                                                 heart_beat=[0, 0]), amqp])
    wait_ready(gw, 20)
    nodes = [cluster.node(i) for i in range(1, cluster.size + 1)]
    for bridge in ("stomp", "amqp"):
        by_node = wait_for(lambda: (lambda m: m if sum(map(len, m.values())) == cluster.size else None)(
            cluster.connections_by_node(f"gateway {bridge} ")), 10, f"{cluster.size} {bridge} connections")
        # One pooled connection on each node, as rabbitmqctl sees them.
        assert sorted(by_node) == nodes, by_node
        assert all(len(v) == 1 for v in by_node.values()), by_node
    assert node_connections(gw, cluster) == {i: 1 for i in range(1, cluster.size + 1)}
    assert gw.metric("gateway_amqp_backend_node_connections", node=cluster.endpoint(2)) == 1


def test_a_queue_of_another_type_is_a_clear_error(cluster, gateway_factory):
    name = f"classic-{next(ids)}"
    with cluster.pika(1) as conn:
        conn.channel().queue_declare(name, durable=True)
    gw = cluster_gateway(cluster, gateway_factory)
    for frame in ("SEND", "SUBSCRIBE"):
        c = RawStomp(gw)
        c.connect(host="/")
        c.send(frame, {"destination": f"/queue/{name}", "id": "s1", "receipt": "r"}, "x")
        err = c.expect_error(timeout=10)
        msg = err.headers["message"]
        assert f"queue '{name}' already exists with another type" in msg, msg
        assert "quorum queue (queue_types)" in msg and "PRECONDITION_FAILED" in msg, msg
    assert cluster.queue_info(name, "type") == {"type": "classic"}


def test_failover_to_a_surviving_node_loses_nothing_receipted(cluster, gateway_factory):
    """The pool's only connection is on node 1; node 1 is stopped mid-stream."""
    if CLUSTER_SIZE < 3:
        pytest.skip("a quorum queue survives a node loss with 3 nodes or more")
    gw = cluster_gateway(cluster, gateway_factory, order=[1, 2, 3], pool_size=1)
    queue, topic = f"/queue/orders-{next(ids)}", f"/topic/ticks.{next(ids)}"
    consumer = PyClient(gw, "worker")
    assert consumer.subscribe(queue, "q", ack="client-individual", **{"prefetch-count": "20"})
    watcher = PyClient(gw, "watcher")
    assert watcher.subscribe(topic, "t")
    assert cluster.queue_info(queue.removeprefix("/queue/"), "type") == {"type": "quorum"}
    assert node_connections(gw, cluster)[1] == 1

    pub = Publisher(gw, [queue, topic])
    pub.start()
    acked: set[int] = set()
    deliveries: list[tuple[int, bool]] = []
    after_ack: list[int] = []
    held: list = []  # delivered, deliberately not acknowledged when the node goes
    holding = [True]

    def consume(until, timeout: float):
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, (
                f"consuming: {len(acked)} acked, receipted {len(pub.receipted[queue])}, errors {consumer.errors}"
                f"\n{gw.log()[-6000:]}")
            if consumer.take_error() is not None or not consumer.ok():
                consumer.close()
                consumer.connect(timeout=60)
                assert consumer.subscribe(queue, "q", ack="client-individual", **{"prefetch-count": "20"})
                continue
            try:
                m = consumer.lst.messages.get(timeout=0.1)
            except Exception:  # noqa: BLE001 - queue.Empty
                continue
            n = int(m.body)
            if n in acked:
                after_ack.append(n)
            deliveries.append((n, m.headers.get("redelivered") == "true"))
            if holding[0] and len(held) < 5 and n > 20:
                held.append(m)
                continue
            if consumer.ack(m):
                acked.add(n)

    consume(lambda: len(held) == 5 and len(acked) >= 40, 30)
    held_ids = [int(m.body) for m in held]
    holding[0] = False
    t0 = time.monotonic()
    cluster.stop_node(1)

    # The worker held unacknowledged messages on the lost node: it is told, with the node
    # and where the gateway goes now.
    err = wait_for(consumer.take_error, 20, "an ERROR for the worker")
    assert cluster.endpoint(1) in err and "reconnects to another node" in err, err
    assert "unacknowledged" in err and "redelivered" in err, err
    # The pool moved to a surviving node.
    moved = wait_for(lambda: (lambda m: m if m[1] == 0 and m[2] + m[3] == 1 else None)(node_connections(gw, cluster)),
                     20, "the pool's connection on node 2 or 3")
    failover_s = time.monotonic() - t0
    survivor = 2 if moved[2] == 1 else 3
    assert gw.metric("gateway_stomp_backend_node_reconnects_total", node=cluster.endpoint(survivor)) >= 1
    assert "lost the RabbitMQ connection" in gw.log()
    # The topic watcher kept its session; its shared subscription is re-declared on the
    # survivor (the gap is counted), and it gets what is published from then on.
    assert wait_for(lambda: gw.metric("gateway_stomp_upstream_gap_seconds_count") or 0, 30,
                    "the shared subscription re-established") >= 1
    before = len(pub.receipted[topic])
    wait_for(lambda: len(pub.receipted[topic]) >= before + 20, 60, "20 more topic messages receipted")
    pub.stop()
    after = set(pub.receipted[topic][before:])
    got: set[int] = set()
    deadline = time.monotonic() + 10
    while not after <= got and time.monotonic() < deadline:
        try:
            got.add(int(watcher.lst.messages.get(timeout=0.2).body))
        except Exception:  # noqa: BLE001 - queue.Empty
            pass
    assert after <= got, f"topic messages missing after the resubscription: {sorted(after - got)[:10]}"
    assert watcher.ok(), watcher.errors

    # Every receipted queue message reaches the worker; the held ones come back flagged.
    receipted = set(pub.receipted[queue])
    consume(lambda: receipted <= acked, 90)
    assert not after_ack, f"acknowledged messages delivered again: {after_ack[:10]}"
    redelivered = {n for n, flag in deliveries if flag}
    assert set(held_ids) <= redelivered, (held_ids, sorted(redelivered)[:20])
    seen: set[int] = set()
    unflagged = []
    for n, flag in deliveries:
        if n in seen and not flag:
            unflagged.append(n)
        seen.add(n)
    assert not unflagged, f"copies delivered again without redelivered:true: {unflagged[:10]}"
    print(f"failover: pool on node {survivor} {failover_s:.1f}s after the stop; "
          f"{len(receipted)} queue messages receipted, all delivered; {pub.failed} SENDs failed "
          f"(not receipted) during the failover, e.g. {sorted(set(pub.client.errors))[:3]}; "
          f"{len(redelivered)} redelivered")
    consumer.close()
    watcher.close()


def test_no_duplicates_when_a_quorum_leader_is_stopped_during_consumption(cluster, gateway_factory):
    """The gateway is on node 2; the queue's leader (declared on node 1) goes away."""
    if CLUSTER_SIZE < 3:
        pytest.skip("a quorum queue survives a node loss with 3 nodes or more")
    name = f"jobs-{next(ids)}"
    with cluster.pika(1) as conn:
        conn.channel().queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    leader = cluster.wait_for_quorum_leader(name)
    assert leader == cluster.node(1), leader
    gw = cluster_gateway(cluster, gateway_factory, order=[2, 3, 1], pool_size=1)
    pub = PyClient(gw, "filler")
    total = 300
    for n in range(1, total + 1):
        assert pub.send(f"/queue/{name}", str(n)), pub.take_error()
    pub.close()

    worker = PyClient(gw, "worker")
    assert worker.subscribe(f"/queue/{name}", "q", ack="client-individual", **{"prefetch-count": "10"})
    acked: set[int] = set()
    again: list[int] = []
    stopped_at = None
    deadline = time.monotonic() + 90
    while len(acked) < total:
        assert time.monotonic() < deadline, f"{len(acked)} of {total} acked; errors {worker.errors}"
        if worker.take_error() is not None or not worker.ok():
            worker.close()
            worker.connect(timeout=60)
            assert worker.subscribe(f"/queue/{name}", "q", ack="client-individual", **{"prefetch-count": "10"})
            continue
        try:
            m = worker.lst.messages.get(timeout=0.1)
        except Exception:  # noqa: BLE001 - queue.Empty
            continue
        n = int(m.body)
        if n in acked:
            again.append(n)
        if worker.ack(m):
            acked.add(n)
        if stopped_at is None and len(acked) == 100:
            cluster.stop_node(1)
            stopped_at = len(acked)
    assert stopped_at == 100
    assert acked == set(range(1, total + 1))
    assert not again, f"acknowledged messages delivered again: {again[:10]}"
    new_leader = cluster.wait_for_quorum_leader(name, not_on=cluster.node(1))
    assert new_leader in (cluster.node(2), cluster.node(3))
    print(f"leader moved to {new_leader}; {total} messages each delivered and acknowledged once; "
          f"worker errors: {worker.errors}")
    worker.close()
