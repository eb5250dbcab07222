"""The STOMP-broker backend's failover list (`backend = "failover:(stomp://b1,stomp://b2)"`)
on two real ActiveMQ Classic brokers (tests/scripts/activemq.sh, two private dirs and
ports, no network between them): the gateway uses the first broker that answers; when it
goes away, topic subscribers keep getting messages from the second, and a client whose
queue subscription cannot follow is told the broker changed.

Without ActiveMQ installed the tests are skipped, unless CI is set: then they fail.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

stomp = pytest.importorskip("stomp")

from gwproc import HOST, ROOT  # noqa: E402
from stomp_util import Listener, RawStomp, stomp_service  # noqa: E402

SCRIPT = ROOT / "tests" / "scripts" / "activemq.sh"
# Ports below the ephemeral range, apart from test_stomp_activemq.py's broker (61623).
PORTS = range(25750, 25790)


def _installed() -> bool:
    return Path("/usr/share/activemq/bin/activemq.jar").exists() and shutil.which("java") is not None


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _claim_ports(n: int):
    """`n` ports of PORTS, each held by a lock file (a broker is stopped and started again
    on its port mid-module: another run of these tests must not take it meanwhile)."""
    claimed = []
    for port in PORTS:
        lock = open(f"/tmp/gateway-e2e-activemq-{port}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        if not _free(port):
            lock.close()
            continue
        claimed.append((port, lock))
        if len(claimed) == n:
            return claimed
    for _, lock in claimed:
        lock.close()
    raise RuntimeError(f"no {n} free ports in {PORTS.start}..{PORTS.stop - 1}")


class Broker:
    def __init__(self, d: Path, port: int):
        self.dir, self.port = d, port
        self.env = dict(os.environ, ACTIVEMQ_STOMP_PORT=str(port))

    def script(self, cmd: str) -> None:
        r = subprocess.run(["bash", str(SCRIPT), cmd, str(self.dir)], env=self.env,
                           capture_output=True, text=True, timeout=90)
        if r.returncode != 0:
            raise RuntimeError(f"activemq.sh {cmd} (port {self.port}) failed:\n{r.stderr}")

    @property
    def uri(self) -> str:
        return f"stomp://admin:admin@{HOST}:{self.port}"

    def direct(self):
        conn = stomp.Connection12([(HOST, self.port)], reconnect_attempts_max=1, timeout=5)
        lst = Listener()
        conn.set_listener("t", lst)
        conn.connect("admin", "admin", wait=True)
        return conn, lst


@pytest.fixture(scope="module")
def brokers(tmp_path_factory):
    if not _installed():
        why = "ActiveMQ is not installed (apt-get install activemq, or bash tests/scripts/install-deps.sh)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{why}; CI is set, so the ActiveMQ tests must run", pytrace=False)
        pytest.skip(f"{why}; set CI=true to make this a failure")
    claimed = _claim_ports(2)
    pair = [Broker(tmp_path_factory.mktemp(f"activemq{i}"), p) for i, (p, _) in enumerate(claimed)]
    # Both JVMs boot at once: half the wait.
    errors = []

    def start(b):
        try:
            b.script("start")
        except RuntimeError as e:
            errors.append(e)

    threads = [threading.Thread(target=start, args=(b,)) for b in pair]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        if errors:
            pytest.fail(str(errors[0]), pytrace=False)
        yield pair
    finally:
        for b in pair:
            b.script("stop")
        for _, lock in claimed:
            lock.close()


def wait_ready(gw, status: int = 200, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while gw.http_get("/readyz")[0] != status:
        assert time.monotonic() < deadline, f"/readyz did not turn {status} within {timeout}s"
        time.sleep(0.05)


def client(gw) -> RawStomp:
    c = RawStomp(gw)
    c.connect()
    return c


def uniq(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def until_received(c: RawStomp, publish, timeout: float = 10.0):
    """Publish again and again until `c` gets one (a resubscription takes a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publish()
        try:
            return c.recv(0.5)
        except AssertionError:
            pass
    raise AssertionError(f"nothing received within {timeout}s")


def test_topic_subscribers_follow_the_failover_and_queue_subscribers_are_told(gateway_factory, brokers):
    b1, b2 = brokers
    gw = gateway_factory(services=[stomp_service(
        backend=f"failover:({b1.uri},{b2.uri})?randomize=false&initialReconnectDelay=100",
        heart_beat=[0, 0])])
    wait_ready(gw)
    topic = f"/topic/{uniq('fo')}"
    with client(gw) as sub, client(gw) as other, client(gw) as q, client(gw) as pub:
        sub.receipt("SUBSCRIBE", {"destination": topic, "id": "s"})
        other.receipt("SUBSCRIBE", {"destination": topic, "id": "s"})
        q.receipt("SUBSCRIBE", {"destination": f"/queue/{uniq('fo')}", "id": "q", "ack": "client"})
        # On the first broker of the list.
        direct1, _ = b1.direct()
        direct1.send(topic, "from b1")
        assert sub.recv(5).text == "from b1" and other.recv(5).text == "from b1"
        direct1.disconnect()
        pub.receipt("SEND", {"destination": topic}, "via the gateway")  # pub's own connection
        assert sub.recv(5).text == "via the gateway" and other.recv(5).text == "via the gateway"

        b1.script("stop")
        # The queue subscription lived on b1: its client hears the broker changed.
        err = q.recv(10)
        assert err.command == "ERROR", err
        assert "fails over to the next broker" in err.headers["message"].replace("\\c", ":"), err
        assert gw.wait_metric("gateway_stomp_backend_failovers_total", lambda v: v == 1,
                              timeout=15, service="stomp") == 1
        wait_ready(gw)

        # The topic subscribers were not told anything: they get b2's messages now.
        direct2, _ = b2.direct()
        got = until_received(sub, lambda: direct2.send(topic, "from b2"))
        assert got.command == "MESSAGE" and got.text == "from b2", got
        direct2.disconnect()
        while True:  # what the retries left queued
            f = other.recv(3)
            assert f.command == "MESSAGE" and f.text == "from b2", f
            try:
                sub.recv(0.3)
            except AssertionError:
                break
        # A SEND through the gateway reaches them too: its own connection reopened on b2.
        pub.receipt("SEND", {"destination": topic}, "after the switch")
        for c in (sub, other):
            while (f := c.recv(5)).text == "from b2":
                pass
            assert f.text == "after the switch", f
    log = gw.log()
    assert "failed over to STOMP broker 2 of 2" in log, log[-2000:]
    # Put b1 back for the tests after this one.
    b1.script("start")


def test_a_broker_that_does_not_answer_is_skipped(gateway_factory, brokers):
    b1, b2 = brokers
    with socket.socket() as s:
        s.bind((HOST, 0))
        dead = s.getsockname()[1]
    gw = gateway_factory(services=[stomp_service(
        backend=f"failover:(stomp://admin:admin@{HOST}:{dead},{b2.uri})", heart_beat=[0, 0])])
    wait_ready(gw)
    topic = f"/topic/{uniq('skip')}"
    with client(gw) as c:
        c.receipt("SUBSCRIBE", {"destination": topic, "id": "s"})
        direct2, _ = b2.direct()
        direct2.send(topic, "on b2")
        assert c.recv(5).text == "on b2"
        direct2.disconnect()
    assert gw.metric("gateway_stomp_backend_failovers_total", service="stomp") == 0


def test_pass_through_sessions_use_the_broker_that_answers(gateway_factory, brokers):
    b1, b2 = brokers
    with socket.socket() as s:
        s.bind((HOST, 0))
        dead = s.getsockname()[1]
    gw = gateway_factory(services=[stomp_service(
        backend=f"failover:(stomp://{HOST}:{dead},stomp://{HOST}:{b2.port})",
        credentials="pass-through", heart_beat=[0, 0])])
    wait_ready(gw)
    queue = f"/queue/{uniq('pt')}"
    c = RawStomp(gw)
    c.connect(login="admin", passcode="admin")
    with c:
        c.receipt("SEND", {"destination": queue}, "kept")
    direct2, lst = b2.direct()
    direct2.subscribe(queue, id="d", ack="auto")
    assert lst.message(5).body == "kept"
    direct2.disconnect()
    # A wrong login is the broker's answer, not a reason to try another broker.
    bad = RawStomp(gw)
    bad.send("CONNECT", {"accept-version": "1.2", "host": "/", "login": "admin", "passcode": "wrong"})
    err = bad.expect_error(5)
    assert err.command == "ERROR"


def test_bad_failover_lists_name_the_setting(gateway_factory):
    for backend, words in [
        ("failover:(stomp://h1:1,stomp://h2:2", "unclosed"),
        ("failover:(stomp://h1:1)?backup=true", "unknown failover option"),
        ("failover:(stomp://h1:1,amqp://h2)", "failover member 2"),
    ]:
        g = gateway_factory(services=[stomp_service(backend=backend)], start=False)
        with pytest.raises(RuntimeError) as e:
            g.start()
        assert "settings.backend" in str(e.value) and words in str(e.value), str(e.value)
