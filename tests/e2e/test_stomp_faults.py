"""Faults under the STOMP bridge's broker backends, each broker private to this module
(RabbitMQ by tests/scripts/rabbitmq.sh, ActiveMQ by tests/scripts/activemq.sh with
persistence on; stopping and starting one on the same dir keeps durable queues and
persistent messages, and leaves other modules' brokers alone):

- The broker restarted while a publisher sends persistent messages with receipts and
  client-individual consumers ACK: every receipted message is delivered at least once;
  consumers holding unacknowledged messages get an ERROR naming the outage and reconnect.
  (RabbitMQ and ActiveMQ.)
- The gateway SIGKILLed mid-stream: another gateway on the same broker redelivers what a
  client-ack subscriber had not acknowledged. (RabbitMQ and ActiveMQ.)
- RabbitMQ stopped for a while: clients get prompt ERRORs, the gateway stays up with
  bounded memory and not ready, and recovers: new sessions work, subscribers that stayed
  connected get messages again, the gap shows in the metrics.
- RabbitMQ frozen (SIGSTOP) or blocking publishers (memory alarm): SENDs fail promptly
  with the reason, and everything works again afterwards.

The clients are the reconnecting apps of stomp_apps.py: what matters is counted end to end.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from rabbit_util import (ids, listening, messages, need, no_error_logs, no_frame, private_rabbit,
                         rabbit_gateway, stomp, subscribe, wait_ready)
from stomp_apps import Consumer, Publisher, wait_for
from stomp_util import RawStomp, stomp_service


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    yield from private_rabbit(tmp_path_factory)


def restart_under_load(make_gw, restart, outage: str):
    """A publisher sends persistent messages with receipts to a durable queue, two consumers
    ACK client-individual, and the broker restarts meanwhile. Every receipted message must
    be delivered; consumers holding unacknowledged messages must get an ERROR containing
    `outage` (and reconnect). Returns the gateway."""
    gw = make_gw()
    queue = f"/queue/restart-{next(ids)}"
    consumers = [Consumer(lambda: gw, queue, name=f"consumer{i}", prefetch=10) for i in range(2)]
    for c in consumers:
        c.start()
    for c in consumers:
        assert c.subscribed.wait(15), "consumer did not subscribe"
    # Three, so SENDs are likely in flight (published, not yet confirmed) at the cut.
    publishers = [Publisher(lambda: gw, queue, name=f"publisher{i}", first=i * 1_000_000)
                  for i in range(3)]
    for p in publishers:
        p.start()
    apps = [*publishers, *consumers]
    receipts = lambda: set().union(*(p.receipted for p in publishers))  # noqa: E731
    received = lambda: set().union(*(c.received for c in consumers))  # noqa: E731
    try:
        wait_for(lambda: len(receipts()) >= 60 and len(received()) >= 30, 30,
                 "traffic before the restart")
        before = len(receipts())
        restart()
        wait_ready(gw, 30)
        wait_for(lambda: len(receipts()) >= before + 60, 40, "receipts after the restart")
        for p in publishers:
            p.finish()
        receipted = receipts()
        wait_for(lambda: receipted <= received(), 40,
                 "every receipted message to be delivered after the restart")
    finally:
        for a in apps:
            a.stop.set()
    for a in apps:
        a.finish()
    lost = receipted - received()
    assert not lost, f"receipted but never delivered: {sorted(lost)[:20]}"
    # The consumers held unacknowledged messages when the broker went: they were told why
    # (and resubscribed, as above).
    for c in consumers:
        assert c.sessions >= 2, (c.name, c.errors, c.drops)
        assert c.errors, f"{c.name} reconnected without an ERROR (drops: {c.drops})"
        assert all(outage in e for e in c.errors), c.errors
    # The publishers' sessions were interrupted too: a SEND in flight then got an ERROR (or
    # its connection dropped), never a RECEIPT, or the subset check above would have failed.
    for p in publishers:
        assert p.sessions >= 2 and (p.errors or p.drops), (p.name, p.sessions)
        assert all(outage in e for e in p.errors), p.errors
    print(f"receipted {len(receipted)}, delivered {sum(c.deliveries for c in consumers)} "
          f"(redelivered {sum(len(c.redelivered) for c in consumers)}); publisher errors: "
          f"{[p.errors[:1] for p in publishers]}; consumer errors: {consumers[0].errors[:2]}; "
          f"slowest answer {max(p.slowest_answer for p in publishers):.2f}s")
    assert gw.metric("gateway_stomp_backend_reconnects_total") >= 1
    return gw


def gateway_killed_mid_stream(make_gw):
    """A client-ack subscriber holds unacknowledged messages while a publisher streams; the
    gateway is SIGKILLed and another started on the same broker: the held messages are
    redelivered (flagged) to a new client and every receipted message arrives. Returns the
    second gateway."""
    first = make_gw("doomed")
    current = {"gw": first}
    queue = f"/queue/kill-{next(ids)}"
    holder = Consumer(lambda: current["gw"], queue, name="holder", prefetch=25, ack=False)
    holder.start()
    assert holder.subscribed.wait(15)
    publisher = Publisher(lambda: current["gw"], queue, pause=0.005)
    publisher.start()
    apps = [holder, publisher]
    try:
        wait_for(lambda: len(holder.received) >= 25, 30, "the holder to fill its prefetch")
        held = set(holder.received)
        first.proc.kill()
        # Stopped only now, so its session lasts until the kill (and, while `current` is
        # the dead gateway, it cannot reconnect to the next one).
        holder.stop.set()
        first.proc.wait(10)
        current["gw"] = make_gw("after")
        wait_for(lambda: publisher.sessions >= 2 and len(publisher.receipted) >= 60, 30,
                 "the publisher to carry on through the new gateway")
        taker = Consumer(lambda: current["gw"], queue, name="taker", prefetch=50)
        taker.start()
        apps.append(taker)
        publisher.finish()
        wait_for(lambda: publisher.receipted <= taker.received | held, 30,
                 "every receipted message to be delivered")
        wait_for(lambda: held <= taker.received, 30, "the unacknowledged messages to be redelivered")
    finally:
        for a in apps:
            a.stop.set()
    for a in apps:
        a.finish()
    assert held <= taker.redelivered, sorted(held - taker.redelivered)[:10]
    assert not publisher.errors, publisher.errors
    return current["gw"]


# --- RabbitMQ ---------------------------------------------------------------------------

def test_rabbitmq_restart_loses_no_receipted_message(rabbit, gateway_factory):
    def restart():
        rabbit.script("stop")
        rabbit.script("start")
    gw = restart_under_load(lambda: rabbit_gateway(rabbit, gateway_factory), restart,
                            outage="RabbitMQ")
    no_error_logs(gw)


def test_rabbitmq_gateway_killed_mid_stream_redelivers(rabbit, gateway_factory):
    gw = gateway_killed_mid_stream(lambda name: rabbit_gateway(rabbit, gateway_factory, name=name))
    no_error_logs(gw)


def _burst_into_dead_broker(gw, clients: list[RawStomp], frames: int, size: int) -> None:
    """Every client pipelines `frames` SENDs of `size` bytes; each must end with a prompt
    ERROR (the rest is discarded, not buffered)."""
    body = "x" * size

    def send_all(c: RawStomp) -> None:
        try:
            for n in range(frames):
                c.send("SEND", {"destination": f"/queue/dead-{n % 7}", "receipt": f"d{n}"}, body)
        except Exception:  # the gateway closed the session after its ERROR
            pass

    senders = [threading.Thread(target=send_all, args=(c,), daemon=True) for c in clients]
    t0 = time.monotonic()
    for t in senders:
        t.start()
    for c in clients:
        err = c.expect_error(timeout=10)
        assert "unavailable" in err.headers["message"], err
    assert time.monotonic() - t0 < 10
    for t in senders:
        t.join(10)


def test_rabbitmq_outage_and_recovery(rabbit, gateway_factory):
    # A second service logs in to RabbitMQ as each client, on a connection of its own.
    own = {**stomp_service(backend=rabbit.url, heart_beat=[0, 0], credentials="pass-through"),
           "name": "own", "path": "/own"}
    gw = gateway_factory(services=[stomp_service(backend=rabbit.url, heart_beat=[0, 0]), own])
    wait_ready(gw, 10)
    as_client = RawStomp(gw, path="/own")
    as_client.connect(login="guest", passcode="guest")
    subscribe(as_client, "/topic/own.*")
    watcher = stomp(gw)
    subscribe(watcher, "/topic/status.*")
    # A queue subscriber with nothing to acknowledge keeps its session and consumes again.
    idle = stomp(gw)
    idle_queue = f"idle-{next(ids)}"
    subscribe(idle, f"/queue/{idle_queue}")
    queue = f"pending-{next(ids)}"
    worker = stomp(gw)
    subscribe(worker, f"/queue/{queue}", ack="client")
    # Persistent, so it outlives the broker's restart.
    stomp(gw).receipt("SEND", {"destination": f"/queue/{queue}", "persistent": "true"}, "unacked",
                      rid="u")
    (m,) = messages(worker, 1)
    assert m.body == b"unacked"
    publisher = stomp(gw)
    bursters = [stomp(gw) for _ in range(20)]
    late = RawStomp(gw)  # upgraded, not yet CONNECTed

    rabbit.script("stop")
    # The queue client holding an unacknowledged message is told, naming the outage.
    f = worker.recv(10)
    assert f.command == "ERROR", f
    assert "RabbitMQ" in f.headers["message"] and "redelivered" in f.headers["message"]
    # A client's own connection is not re-established for it: it is told to reconnect.
    f = as_client.recv(10)
    assert f.command == "ERROR" and "RabbitMQ connection lost" in f.headers["message"], f
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
    # A burst (20 clients x 500 x 16 KiB offered) leaves no trace in memory.
    rss = gw.rss_kb()
    _burst_into_dead_broker(gw, bursters, frames=500, size=16 * 1024)
    grown = gw.rss_kb() - rss
    print(f"RSS {rss} KiB before the burst, +{grown} KiB after")
    assert grown < 32 * 1024, f"RSS grew by {grown} KiB during the burst"
    # A client that CONNECTs meanwhile gets a clear ERROR.
    late.send("CONNECT", {"accept-version": "1.2", "host": "/"})
    err = late.expect_error()
    assert "RabbitMQ" in err.headers["message"] and "unavailable" in err.headers["message"], err
    assert late.close_code == 1014, (late.close_code, late.close_reason)
    # Subscribers with nothing outstanding keep their WebSockets through the outage.
    no_frame(watcher, 0.2)
    no_frame(idle, 0.2)

    rabbit.script("start")
    wait_ready(gw, 30)
    # The shared subscription is re-established; the same session gets new messages.
    assert gw.wait_metric("gateway_stomp_upstream_gaps_total", lambda v: (v or 0) >= 1) >= 1
    fresh = stomp(gw)
    deadline = time.monotonic() + 15
    while True:
        fresh.receipt("SEND", {"destination": "/topic/status.up"}, "back", rid=f"b{next(ids)}")
        try:
            f = watcher.recv(0.5)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "the topic subscription did not recover"
    assert f.command == "MESSAGE" and f.body == b"back"
    assert gw.metric("gateway_stomp_upstream_gap_seconds_count") >= 1
    # A client's own connection is not bridged over: its subscriptions end with it.
    assert not gw.metric("gateway_stomp_upstream_gaps_total", service="own")
    assert gw.metric("gateway_stomp_backend_reconnects_total") >= 1
    assert gw.metric("gateway_stomp_publish_failures_total") >= 1
    # The idle queue subscription was consumed again.
    fresh.receipt("SEND", {"destination": f"/queue/{idle_queue}"}, "again", rid="i")
    (m,) = messages(idle, 1, timeout=15)
    assert m.body == b"again"
    # The message the worker held was returned to its queue, for the next consumer.
    again = stomp(gw)
    subscribe(again, f"/queue/{queue}", ack="client-individual")
    (m,) = messages(again, 1, timeout=10)
    assert m.body == b"unacked" and m.headers.get("redelivered") == "true"
    # Clients logging in as themselves are back too.
    as_client = RawStomp(gw, path="/own")
    as_client.connect(login="guest", passcode="guest")
    subscribe(as_client, "/topic/own.*")
    as_client.receipt("SEND", {"destination": "/topic/own.x"}, "mine", rid="o")
    (m,) = messages(as_client, 1)
    assert m.body == b"mine"
    no_error_logs(gw)


def test_rabbitmq_frozen_is_noticed(rabbit, gateway_factory):
    """A broker that stops answering without closing its sockets (SIGSTOP: a hung VM, a
    partition) is noticed by missed heart-beats: SENDs fail within the confirm timeout,
    the service turns not ready, and everything resumes when the broker does."""
    gw = rabbit_gateway(rabbit, gateway_factory, backend=f"{rabbit.url}?heartbeat=2")
    watcher = stomp(gw)
    subscribe(watcher, "/topic/frozen.*")
    publisher = stomp(gw)
    pid = int((rabbit.dir / "rabbit.pid").read_text().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        publisher.send("SEND", {"destination": "/topic/frozen.a", "receipt": "r"}, "into the void")
        err = publisher.expect_error(timeout=20)
        assert "RabbitMQ" in err.headers["message"], err
        took = time.monotonic() - t0
        wait_ready(gw, 20, status=503)
        noticed = time.monotonic() - t0
        assert gw.http_get("/healthz")[0] == 200
        print(f"SEND failed after {took:.1f}s; not ready after {noticed:.1f}s")
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_ready(gw, 30)
    fresh = stomp(gw)
    deadline = time.monotonic() + 15
    while True:
        fresh.receipt("SEND", {"destination": "/topic/frozen.b"}, "thawed", rid=f"t{next(ids)}")
        try:
            f = watcher.recv(0.5)
            break
        except AssertionError:
            assert time.monotonic() - deadline < 0, "the topic subscription did not recover"
    assert f.command == "MESSAGE" and f.body == b"thawed"
    no_error_logs(gw)


def test_rabbitmq_memory_alarm_fails_sends_promptly(rabbit, gateway_factory):
    """A resource alarm blocks publishers: RabbitMQ stops reading their connections and
    says so only after they publish. A SEND then gets an ERROR naming the alarm at once,
    not after the confirm timeout, on every pooled connection; sending works again when
    the alarm clears."""
    gw = rabbit_gateway(rabbit, gateway_factory)
    stomp(gw).receipt("SEND", {"destination": "/topic/alarm.before"}, "ok", rid="before")
    rabbit.ctl("set_vm_memory_high_watermark", "absolute", "1")
    try:
        # Two sessions at least, so both pooled connections publish during the alarm.
        for n in range(3):
            c = stomp(gw)
            t0 = time.monotonic()
            c.send("SEND", {"destination": "/topic/alarm.during", "receipt": f"d{n}"}, "held")
            err = c.expect_error(timeout=15)
            took = time.monotonic() - t0
            assert "memory or disk alarm" in err.headers["message"], err
            assert took < 5, f"SEND {n} answered after {took:.1f}s"
    finally:
        rabbit.ctl("set_vm_memory_high_watermark", "0.4")
    deadline = time.monotonic() + 20
    while True:
        c = stomp(gw)
        c.send("SEND", {"destination": "/topic/alarm.after", "receipt": "a"}, "ok")
        f = c.recv(15)
        if f.command == "RECEIPT":
            break
        assert time.monotonic() < deadline, f"still refused after the alarm cleared: {f}"
        time.sleep(0.5)
    assert gw.metric("gateway_stomp_publish_failures_total", reason="blocked") >= 3
    no_error_logs(gw)


# --- ActiveMQ ---------------------------------------------------------------------------

AMQ_SCRIPT = Path(__file__).resolve().parents[2] / "tests" / "scripts" / "activemq.sh"


@dataclass
class ActiveMq:
    dir: Path
    env: dict
    port: int

    @property
    def url(self) -> str:
        return f"stomp://admin:admin@127.0.0.1:{self.port}"

    def script(self, cmd: str) -> None:
        r = subprocess.run(["bash", str(AMQ_SCRIPT), cmd, str(self.dir)], env=self.env,
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"activemq.sh {cmd} failed ({r.returncode}):\n{r.stderr}")


@pytest.fixture(scope="module")
def activemq(tmp_path_factory):
    need(Path("/usr/share/activemq/bin/activemq.jar").exists() and shutil.which("java") is not None,
         "ActiveMQ is not installed (apt-get install activemq)")
    # Persistent (KahaDB in its dir), so a restart keeps what it confirmed; a port of its
    # own, claimed with a lock file, so the restart finds it free.
    for port in range(61630, 61700):
        lock = open(f"/tmp/gateway-e2e-activemq-{port}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        if listening(port):
            lock.close()
            continue
        break
    else:
        raise RuntimeError("no free port for a private ActiveMQ in 61630..61699")
    env = dict(os.environ, ACTIVEMQ_STOMP_PORT=str(port), ACTIVEMQ_PERSISTENT="true")
    amq = ActiveMq(tmp_path_factory.mktemp("activemq"), env, port)
    try:
        amq.script("start")
        yield amq
    finally:
        amq.script("stop")
        lock.close()


def amq_gateway(activemq, gateway_factory, name=None):
    gw = gateway_factory(services=[stomp_service(backend=activemq.url, heart_beat=[0, 0])], name=name)
    wait_ready(gw, 15)
    return gw


def test_activemq_restart_loses_no_receipted_message(activemq, gateway_factory):
    def restart():
        activemq.script("stop")
        activemq.script("start")
    gw = restart_under_load(lambda: amq_gateway(activemq, gateway_factory), restart,
                            outage="STOMP broker")
    no_error_logs(gw)


def test_activemq_gateway_killed_mid_stream_redelivers(activemq, gateway_factory):
    gw = gateway_killed_mid_stream(lambda name: amq_gateway(activemq, gateway_factory, name))
    no_error_logs(gw)
