"""The STOMP bridge on a real ActiveMQ Classic broker (`backend = "stomp://..."`).

One broker per test session (tests/scripts/activemq.sh, private dir, STOMP only, password
logins, NACKed messages redelivered after 1 s, frames over 256 KiB refused); each test
starts its own gateway. Clients speak raw STOMP over WebSocket to the gateway and stomp.py
over TCP straight to the broker, to check what really reached it.

Without ActiveMQ installed the tests are skipped, unless CI is set: then they fail.
"""

from __future__ import annotations

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

from gwproc import HOST, ROOT, free_port  # noqa: E402
from stomp_util import Listener, RawStomp, stomp_service  # noqa: E402

SCRIPT = ROOT / "tests" / "scripts" / "activemq.sh"
BROKER_MAX_FRAME = 256 * 1024


def _installed() -> bool:
    return Path("/usr/share/activemq/bin/activemq.jar").exists() and shutil.which("java") is not None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def activemq(tmp_path_factory):
    if not _installed():
        why = "ActiveMQ is not installed (apt-get install activemq, or bash tests/scripts/install-deps.sh)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{why}; CI is set, so the ActiveMQ tests must run", pytrace=False)
        pytest.skip(f"{why}; set CI=true to make this a failure")
    d = tmp_path_factory.mktemp("activemq")
    port = 61623 if _port_free(61623) else free_port()
    env = dict(os.environ, ACTIVEMQ_STOMP_PORT=str(port), ACTIVEMQ_MAX_FRAME_SIZE=str(BROKER_MAX_FRAME))
    r = subprocess.run(["bash", str(SCRIPT), "start", str(d)], env=env, capture_output=True,
                       text=True, timeout=90)
    if r.returncode != 0:
        pytest.fail(f"activemq.sh start failed:\n{r.stderr}", pytrace=False)
    info = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    info["port"] = int(info["ACTIVEMQ_STOMP_PORT"])
    yield info
    subprocess.run(["bash", str(SCRIPT), "stop", str(d)], env=env, capture_output=True, timeout=30)


def uniq(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def direct(activemq, user=None, password=None):
    """stomp.py straight to the broker over TCP."""
    conn = stomp.Connection12([(HOST, activemq["port"])], reconnect_attempts_max=1, timeout=5)
    lst = Listener()
    conn.set_listener("t", lst)
    conn.connect(user or activemq["ACTIVEMQ_USER"], password or activemq["ACTIVEMQ_PASS"], wait=True)
    return conn, lst


def wait_ready(gw, status: int = 200, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while gw.http_get("/readyz")[0] != status:
        assert time.monotonic() < deadline, f"/readyz did not turn {status} within {timeout}s"
        time.sleep(0.05)


def amq_gateway(gateway_factory, activemq, url=None, **settings):
    """A gateway whose STOMP service is on the broker, once it has reached it."""
    gw = gateway_factory(services=[stomp_service(backend=url or activemq["ACTIVEMQ_STOMP_URL"], **settings)])
    wait_ready(gw)
    return gw


def client(gw, version="1.2", **headers) -> RawStomp:
    c = RawStomp(gw, subprotocol={"1.2": "v12.stomp", "1.1": "v11.stomp"}[version])
    c.connect(version=version, **headers)
    return c


def hdr(frame, name: str) -> str:
    """A header value with STOMP 1.1/1.2 escapes undone (stomp_util's parser keeps them)."""
    raw, out, i = frame.headers[name], [], 0
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw):
            out.append({"c": ":", "n": "\n", "r": "\r", "\\": "\\"}[raw[i + 1]])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def messages(c: RawStomp, n: int, timeout: float = 5.0):
    out = []
    for _ in range(n):
        f = c.recv(timeout)
        assert f.command == "MESSAGE", f
        out.append(f)
    return out


def no_frame(c: RawStomp, wait: float = 0.4) -> None:
    try:
        f = c.recv(wait)
    except AssertionError:
        return
    raise AssertionError(f"unexpected frame {f}")


def drain_direct(activemq, dest: str, wait: float = 0.7) -> list:
    """Everything left on a broker queue, taken with a direct consumer."""
    conn, lst = direct(activemq)
    try:
        conn.subscribe(dest, id="drain", ack="auto")
        got = []
        while True:
            try:
                got.append(lst.message(timeout=wait))
            except AssertionError:
                return got
    finally:
        conn.disconnect()


def test_topic_fan_out_shares_one_upstream_subscription(gateway_factory, activemq):
    gw = amq_gateway(gateway_factory, activemq)
    topic = f"/topic/{uniq('fan')}"
    subs = [client(gw), client(gw), client(gw, version="1.1")]
    try:
        for i, c in enumerate(subs):
            c.receipt("SUBSCRIBE", {"destination": topic, "id": "sub-0" if i < 2 else "mine"})
        assert gw.wait_metric("gateway_stomp_upstream_subscriptions", lambda v: v == 1, service="stomp") == 1
        assert gw.metric("gateway_stomp_upstream_local_subscribers", service="stomp") == 3

        # Published straight to ActiveMQ by stomp.py: every gateway client gets it.
        pub, _ = direct(activemq)
        pub.send(topic, "from the broker side", headers={"x-trace": "t1", "content-type": "text/plain"})
        for i, c in enumerate(subs):
            (m,) = messages(c, 1)
            assert m.text == "from the broker side"
            assert m.headers["destination"] == topic
            assert m.headers["subscription"] == ("sub-0" if i < 2 else "mine")
            assert m.headers["x-trace"] == "t1"
            assert hdr(m, "message-id").startswith("ID:")

        # Published through the gateway: back through the broker to all three.
        subs[0].receipt("SEND", {"destination": topic}, "via the gateway")
        for c in subs:
            assert [m.text for m in messages(c, 1)] == ["via the gateway"]
        pub.disconnect()

        # A fourth subscriber on another topic is a second upstream subscription.
        other = client(gw)
        other.receipt("SUBSCRIBE", {"destination": f"/topic/{uniq('fan')}", "id": "x"})
        assert gw.wait_metric("gateway_stomp_upstream_subscriptions", lambda v: v == 2, service="stomp") == 2
        other.ws.close()

        # The last local subscriber out unsubscribes upstream.
        for c in subs:
            c.receipt("UNSUBSCRIBE", {"id": "sub-0" if c is not subs[2] else "mine"})
        assert gw.wait_metric("gateway_stomp_upstream_subscriptions", lambda v: v == 0, service="stomp") == 0
        assert gw.wait_metric("gateway_stomp_upstream_local_subscribers", lambda v: v == 0, service="stomp") == 0
        assert gw.metric("gateway_stomp_fanout_deliveries_total", kind="topic") >= 6
    finally:
        for c in subs:
            c.ws.close()


def test_wildcard_topic_subscription(gateway_factory, activemq):
    gw = amq_gateway(gateway_factory, activemq)
    base = uniq("wild")
    with client(gw) as c:
        c.receipt("SUBSCRIBE", {"destination": f"/topic/{base}.#", "id": "w"})
        pub, _ = direct(activemq)
        pub.send(f"/topic/{base}.a.b", "deep")
        (m,) = messages(c, 1)
        assert m.text == "deep"
        assert m.headers["destination"] == f"/topic/{base}.a.b"
        pub.disconnect()


def test_queue_client_individual_ack_and_nack_redelivery(gateway_factory, activemq):
    gw = amq_gateway(gateway_factory, activemq)
    queue = f"/queue/{uniq('work')}"
    with client(gw) as c:
        c.receipt("SUBSCRIBE", {"destination": queue, "id": "q", "ack": "client-individual"})
        for body in ("one", "two"):
            c.receipt("SEND", {"destination": queue, "persistent": "true"}, body)
        m1, m2 = messages(c, 2)
        assert [m1.text, m2.text] == ["one", "two"]
        assert m1.headers["ack"] != m2.headers["ack"]
        assert "redelivered" not in m1.headers
        c.receipt("ACK", {"id": m2.headers["ack"]})
        c.receipt("NACK", {"id": m1.headers["ack"]})
        # ActiveMQ's redelivery plugin (see activemq.sh) sends it again after 1 s.
        (again,) = messages(c, 1, timeout=6)
        assert again.text == "one"
        assert again.headers["redelivered"] == "true"
        c.receipt("ACK", {"id": again.headers["ack"]})
        no_frame(c, 1.5)
    # Everything was acknowledged: the broker holds nothing more.
    assert drain_direct(activemq, queue) == []


def test_unacked_queue_messages_go_back_when_the_client_leaves(gateway_factory, activemq):
    gw = amq_gateway(gateway_factory, activemq)
    queue = f"/queue/{uniq('left')}"
    with client(gw) as c:
        c.receipt("SUBSCRIBE", {"destination": queue, "id": "q", "ack": "client"})
        c.receipt("SEND", {"destination": queue}, "kept")
        (m,) = messages(c, 1)
        assert m.text == "kept"
    left = drain_direct(activemq, queue, wait=2.0)
    assert [m.body for m in left] == ["kept"]


def test_auto_ack_queue_is_acknowledged_by_the_gateway(gateway_factory, activemq):
    gw = amq_gateway(gateway_factory, activemq)
    queue = f"/queue/{uniq('auto')}"
    pub, _ = direct(activemq)
    with client(gw) as c:
        c.receipt("SUBSCRIBE", {"destination": queue, "id": "a"})
        for i in range(5):
            pub.send(queue, f"m{i}")
        assert [m.text for m in messages(c, 5)] == [f"m{i}" for i in range(5)]
        c.receipt("DISCONNECT", {})
    pub.disconnect()
    # All five were acknowledged upstream once the client had them: nothing comes back.
    assert drain_direct(activemq, queue, wait=1.5) == []


def test_prefetch_count_bounds_unacknowledged_messages(gateway_factory, activemq):
    gw = amq_gateway(gateway_factory, activemq)
    queue = f"/queue/{uniq('prefetch')}"
    pub, _ = direct(activemq)
    with client(gw) as c:
        c.receipt("SUBSCRIBE", {"destination": queue, "id": "p", "ack": "client-individual",
                                "prefetch-count": "1"})
        for i in range(3):
            pub.send(queue, f"p{i}")
        for i in range(3):
            (m,) = messages(c, 1)
            assert m.text == f"p{i}"
            no_frame(c, 0.3)  # the broker waits for the ACK before sending the next
            c.receipt("ACK", {"id": m.headers["ack"]})
    pub.disconnect()


def test_temp_queue_request_reply(gateway_factory, activemq):
    gw = amq_gateway(gateway_factory, activemq)
    service = f"/queue/{uniq('svc')}"
    with client(gw) as requester, client(gw) as responder:
        responder.receipt("SUBSCRIBE", {"destination": service, "id": "svc"})
        requester.receipt("SEND", {"destination": service, "reply-to": "/temp-queue/answers"}, "ping")
        (req,) = messages(responder, 1)
        reply_to = hdr(req, "reply-to")
        assert reply_to.startswith("/queue/gateway-tmp."), reply_to
        responder.receipt("SEND", {"destination": reply_to}, "pong")
        (rep,) = messages(requester, 1)
        assert rep.text == "pong"
        assert rep.headers["subscription"] == "/temp-queue/answers"


def test_send_receipt_means_the_broker_has_it(gateway_factory, activemq):
    gw = amq_gateway(gateway_factory, activemq)
    queue = f"/queue/{uniq('rcpt')}"
    with client(gw) as c:
        r = c.receipt("SEND", {"destination": queue, "x-order": "42", "content-type": "text/plain"},
                      "stored", rid="send-1")
        assert r.headers["receipt-id"] == "send-1"
        got = drain_direct(activemq, queue)
        assert [m.body for m in got] == ["stored"]
        assert got[0].headers["x-order"] == "42"
        # Receipts on other frames are answered too.
        c.receipt("SUBSCRIBE", {"destination": queue, "id": "s"}, rid="sub-1")
        c.receipt("UNSUBSCRIBE", {"id": "s"}, rid="unsub-1")


def test_message_sent_to_the_broker_reaches_a_queue_client(gateway_factory, activemq):
    gw = amq_gateway(gateway_factory, activemq)
    queue = f"/queue/{uniq('in')}"
    with client(gw) as c:
        c.receipt("SUBSCRIBE", {"destination": queue, "id": "q", "ack": "client-individual"})
        pub, _ = direct(activemq)
        pub.send(queue, "hello from stomp.py", headers={"k": "v:w"})
        (m,) = messages(c, 1)
        assert m.text == "hello from stomp.py"
        assert hdr(m, "k") == "v:w"
        c.receipt("ACK", {"id": m.headers["ack"]})
        pub.disconnect()


def test_broker_error_is_relayed(gateway_factory, activemq):
    gw = amq_gateway(gateway_factory, activemq)
    with client(gw) as c:
        c.send("SEND", {"destination": f"/queue/{uniq('big')}", "receipt": "r"}, "x" * (BROKER_MAX_FRAME + 1024))
        err = c.expect_error(timeout=5)
        assert "The maximum frame size was exceeded" in err.headers["message"], err
        assert c.close_code == 1008
    assert gw.metric("gateway_stomp_error_frames_total", reason="backend_refused") == 1


def test_pass_through_credentials(gateway_factory, activemq):
    gw = amq_gateway(gateway_factory, activemq, url=f"stomp://127.0.0.1:{activemq['port']}",
                     credentials="pass-through")
    user, password = activemq["ACTIVEMQ_USER2"], activemq["ACTIVEMQ_PASS2"]
    topic = f"/topic/{uniq('pt')}"
    with client(gw, login=user, passcode=password) as c:
        c.receipt("SUBSCRIBE", {"destination": topic, "id": "t"})
        c.receipt("SEND", {"destination": topic}, "as user")
        assert [m.text for m in messages(c, 1)] == ["as user"]
    # Pass-through topics are per session, not shared.
    assert not gw.metric("gateway_stomp_upstream_subscriptions", service="stomp")

    with RawStomp(gw) as bad:
        bad.send("CONNECT", {"accept-version": "1.2", "host": "localhost", "login": user, "passcode": "wrong"})
        err = bad.expect_error()
        assert f"User name [{user}] or password is invalid" in err.headers["message"], err
        assert bad.close_code == 1008

    with RawStomp(gw) as anon:
        anon.send("CONNECT", {"accept-version": "1.2", "host": "localhost"})
        err = anon.expect_error()
        assert "needs login and passcode" in err.headers["message"], err


class Relay:
    """A TCP relay between the gateway and the broker that the test can cut and restore,
    to play a broker outage without restarting ActiveMQ."""

    def __init__(self, target_port: int):
        self.target = (HOST, target_port)
        self.port = free_port()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.srv: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.up()

    def up(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((HOST, self.port))
        srv.listen(16)
        self.srv = srv
        self.thread = threading.Thread(target=self._accept, args=(srv,), daemon=True)
        self.thread.start()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self.srv is not None:
            self.srv.close()
            self.srv = None
        self.thread.join(2)
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.conns.clear()

    def _accept(self, srv: socket.socket) -> None:
        srv.settimeout(0.1)
        while True:
            try:
                a, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                b = socket.create_connection(self.target)
            except OSError:
                a.close()
                continue
            with self.lock:
                self.conns += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(x, y), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_broker_outage_readiness_and_reconnect(gateway_factory, activemq):
    relay = Relay(activemq["port"])
    gw = amq_gateway(gateway_factory, activemq,
                     url=f"stomp://{activemq['ACTIVEMQ_USER']}:{activemq['ACTIVEMQ_PASS']}@{HOST}:{relay.port}")
    topic = f"/topic/{uniq('outage')}"
    with client(gw) as c, client(gw) as q:
        c.receipt("SUBSCRIBE", {"destination": topic, "id": "s"})
        # A queue subscription rides the session's own broker connection.
        q.receipt("SUBSCRIBE", {"destination": f"/queue/{uniq('outage')}", "id": "q", "ack": "client"})
        sink = f"/queue/{uniq('sink')}"
        c.receipt("SEND", {"destination": sink}, "before")  # opens c's own connection
        relay.down()
        wait_ready(gw, 503)
        # Its session cannot get its unacknowledged messages back: it is told at once.
        err = q.recv(5)
        assert err.command == "ERROR", err
        assert "STOMP broker" in hdr(err, "message"), err
        # New clients are refused while the broker is unreachable, with a reason.
        resp = gw.refused("/ws", subprotocols=["v12.stomp"])
        assert resp.status_code == 503
        assert b"not ready" in resp.body

        relay.up()
        wait_ready(gw, 200, timeout=15)
        assert gw.metric("gateway_stomp_backend_reconnects_total", service="stomp") >= 1
        # c's own connection carried only SENDs, so it lost nothing: it is simply reopened.
        c.receipt("SEND", {"destination": sink}, "after")
        assert [m.body for m in drain_direct(activemq, sink)] == ["before", "after"]
        # The shared subscription was made again on the new connection.
        pub, _ = direct(activemq)
        deadline = time.monotonic() + 5
        got = None
        while got is None and time.monotonic() < deadline:
            pub.send(topic, "after the outage")
            try:
                got = c.recv(0.5)
            except AssertionError:
                pass
        assert got is not None and got.text == "after the outage", got
        pub.disconnect()
    relay.down()


def test_unreachable_broker_is_not_ready(gateway_factory):
    gw = gateway_factory(services=[stomp_service(backend=f"stomp://u:p@{HOST}:{free_port()}")])
    assert gw.http_get("/readyz")[0] == 503
    assert gw.refused("/ws", subprotocols=["v12.stomp"]).status_code == 503


def test_stream_snapshot_and_resume_on_activemq(gateway_factory, activemq):
    prefix = uniq("quotes")
    gw = amq_gateway(gateway_factory, activemq,
                     stream=[{"destination": f"/topic/{prefix}.", "history": 100, "snapshot_keys": 100}])
    conn, _ = direct(activemq)
    try:
        def subscribe_when_fed(c):
            # The stream's own subscription reaches the broker in the background.
            deadline = time.monotonic() + 10
            while True:
                conn.send(f"/topic/{prefix}.probe", "p")
                time.sleep(0.1)
                r = c.receipt("SUBSCRIBE", {"id": "s", "destination": f"/topic/{prefix}.*"}, rid="r")
                if not r.headers["position"].endswith("-0") or time.monotonic() > deadline:
                    return r
                c.send("UNSUBSCRIBE", {"id": "s"})
                c.pending.clear()

        first = client(gw)
        subscribe_when_fed(first)
        first.ws.close()
        for sym, body in [("A", "A1"), ("B", "B1"), ("A", "A2")]:
            conn.send(f"/topic/{prefix}.{sym}", body)
        deadline = time.monotonic() + 5
        while True:  # a fresh client each time, until the stream has heard all three
            c = client(gw)
            c.receipt("SUBSCRIBE", {"id": "s", "destination": f"/topic/{prefix}.*", "snapshot": "true"},
                      rid="r2")
            snap = []
            try:
                while True:
                    snap.append(c.recv(0.3))
            except AssertionError:
                pass
            snap = [m for m in snap if m.headers.get("snapshot")]  # live ones may follow
            bodies = sorted(m.body for m in snap)
            if b"A2" in bodies and b"B1" in bodies or time.monotonic() > deadline:
                break
            c.ws.close()
        assert b"A1" not in bodies and {b"A2", b"B1"} <= set(bodies), bodies
        last = max((m.headers["position"] for m in snap), key=lambda p: int(p.split("-")[1]))
        c.ws.close()
        for n in range(4):
            conn.send(f"/topic/{prefix}.C", f"C{n}")
        time.sleep(0.5)
        back = client(gw)
        r = back.receipt("SUBSCRIBE", {"id": "s", "destination": f"/topic/{prefix}.*", "resume": last}, rid="r3")
        assert r.headers["resume"] == "ok", r.headers
        assert [m.body for m in messages(back, 4)] == [f"C{n}".encode() for n in range(4)]
        no_frame(back)
    finally:
        conn.disconnect()
