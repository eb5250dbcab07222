"""tcp bridge against a real IRC server (ngircd), with real IRC clients.

    irc client A -> websocat (tcp-l -> ws) -> gateway /tcp (subprotocol binary) -> ngircd
    irc client B -----------------------------------------------------------> ngircd
"""

import socket
import time

import irc.client
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gwproc import echo_service, free_port, metric_sum
from servers import Ngircd, Websocat

CHANNEL = "#e2e"


def tcp_service(name, path, target, **over):
    s = {
        "name": name, "path": path, "bridge": "tcp",
        "allow_no_subprotocol": False, "allowed_origins": [], "allow_missing_origin": True,
        "require_auth": False, "require_roles": [],
        "settings": {"target": target, "connect_timeout": "2s"},
    }
    s.update(over)
    return s


@pytest.fixture(scope="module")
def ngircd(tmp_path_factory):
    srv = Ngircd(tmp_path_factory.mktemp("ngircd")).start()
    yield srv
    srv.stop()


@pytest.fixture
def tg(gateway_factory, ngircd):
    return gateway_factory(services=[
        tcp_service("irc", "/tcp", f"127.0.0.1:{ngircd.port}"),
        tcp_service("dead", "/dead", f"127.0.0.1:{free_port()}"),  # nothing listens there
        echo_service(),
    ])


class IrcWorld:
    """Runs a reactor and records events per connection nickname."""

    def __init__(self):
        self.reactor = irc.client.Reactor()
        self.events = []  # (nick of our connection, type, source nick, target, text)
        for ev in ("welcome", "join", "pubmsg", "privmsg", "quit", "part", "error", "disconnect"):
            self.reactor.add_global_handler(ev, self._on)

    def _on(self, conn, event):
        src = event.source.nick if event.source and hasattr(event.source, "nick") else str(event.source)
        text = event.arguments[0] if event.arguments else ""
        self.events.append((conn.get_nickname(), event.type, src, event.target, text))

    def connect(self, port, nick):
        return self.reactor.server().connect("127.0.0.1", port, nick, username=nick, ircname=f"e2e {nick}")

    def wait(self, pred, timeout=15.0, what="event"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.reactor.process_once(0.05)
            hit = [e for e in self.events if pred(e)]
            if hit:
                return hit[0]
        raise AssertionError(f"timed out waiting for {what}; events: {self.events[-20:]}")


def test_irc_through_gateway(tg, ngircd, tmp_path):
    ws = Websocat(tmp_path, tg.url("/tcp")).start()
    world = IrcWorld()
    try:
        a = world.connect(ws.port, "alice")      # through websocat + gateway
        b = world.connect(ngircd.port, "bob")    # direct
        world.wait(lambda e: e[:2] == ("alice", "welcome"), what="alice welcome (via gateway)")
        world.wait(lambda e: e[:2] == ("bob", "welcome"), what="bob welcome")

        a.join(CHANNEL)
        world.wait(lambda e: e[:3] == ("alice", "join", "alice"), what="alice joined")
        b.join(CHANNEL)
        world.wait(lambda e: e[:3] == ("alice", "join", "bob"), what="alice sees bob join")

        a.privmsg(CHANNEL, "hello from alice via websocket")
        e = world.wait(lambda e: e[:3] == ("bob", "pubmsg", "alice"), what="bob gets alice's message")
        assert e[3] == CHANNEL and e[4] == "hello from alice via websocket"

        b.privmsg(CHANNEL, "hello back from bob")
        e = world.wait(lambda e: e[:3] == ("alice", "pubmsg", "bob"), what="alice gets bob's message")
        assert e[4] == "hello back from bob"

        b.privmsg("alice", "private ü✓ for alice")
        e = world.wait(lambda e: e[:3] == ("alice", "privmsg", "bob"), what="alice gets bob's private message")
        assert e[4] == "private ü✓ for alice"

        a.privmsg("bob", "x" * 400)  # a long line, maybe split across WS messages
        e = world.wait(lambda e: e[:3] == ("bob", "privmsg", "alice"), what="bob gets alice's long message")
        assert e[4] == "x" * 400

        during = tg.metrics_text()

        # alice drops her TCP connection without QUIT: websocat closes the
        # WebSocket, the gateway closes its TCP connection, ngircd tells bob.
        a.socket.shutdown(socket.SHUT_RDWR)  # no QUIT can be sent after this
        e = world.wait(lambda e: e[:3] == ("bob", "quit", "alice"), what="bob sees alice quit")
        assert tg.wait_metric("gateway_sessions_active", lambda v: v == 0, service="irc") == 0
        # Metrics seen while alice was connected.
        assert metric_sum(during, "gateway_sessions_active", service="irc") == 1
        assert metric_sum(during, "gateway_handshakes_total", service="irc", result="accepted") == 1
        assert (metric_sum(during, "gateway_bytes_in_total", service="irc") or 0) > 0
        assert (metric_sum(during, "gateway_bytes_out_total", service="irc") or 0) > 0
    finally:
        world.reactor.disconnect_all()
        ws.stop()


def test_ws_client_close_reaches_ngircd(tg, ngircd):
    world = IrcWorld()
    b = world.connect(ngircd.port, "bob2")
    world.wait(lambda e: e[:2] == ("bob2", "welcome"), what="bob2 welcome")
    b.join(CHANNEL)
    world.wait(lambda e: e[:3] == ("bob2", "join", "bob2"), what="bob2 joined")
    try:
        with tg.ws("/tcp", subprotocols=["binary"]) as c:
            assert c.subprotocol == "binary"
            c.send(b"NICK carol\r\nUSER carol 0 * :carol\r\n")
            got = b""
            deadline = time.monotonic() + 10
            while b" 001 carol " not in got:
                assert time.monotonic() < deadline, got[-500:]
                m = c.recv(timeout=10)
                assert isinstance(m, bytes), "tcp bridge must send binary messages"
                got += m
            c.send(f"JOIN {CHANNEL}\r\n".encode())
            world.wait(lambda e: e[:3] == ("bob2", "join", "carol"), what="bob2 sees carol join")
        # WebSocket closed by the client (close handshake, no IRC QUIT sent).
        world.wait(lambda e: e[:3] == ("bob2", "quit", "carol"), what="bob2 sees carol's disconnect")
    finally:
        world.reactor.disconnect_all()


def test_backend_closes_session_closes(tg):
    with tg.ws("/tcp", subprotocols=["binary"]) as c:
        c.send(b"NICK dan\r\nUSER dan 0 * :dan\r\nQUIT :bye\r\n")
        got = b""
        with pytest.raises(ConnectionClosed):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                got += c.recv(timeout=10)
        assert b"ERROR" in got, got[-300:]


def test_backend_unreachable_1014(tg):
    try:
        c = tg.ws("/dead", subprotocols=["binary"])
    except InvalidStatus as e:
        pytest.fail(f"handshake refused with HTTP {e.response.status_code}; expected an accepted session closed with 1014")
    with c:
        with pytest.raises(ConnectionClosed) as e:
            c.recv(timeout=10)
    assert e.value.rcvd is not None, "dropped without a close frame"
    assert e.value.rcvd.code == 1014
    assert (tg.wait_metric("gateway_tcp_connect_failures_total", lambda v: (v or 0) >= 1) or 0) >= 1
    # still serving
    with tg.ws("/echo") as c:
        c.send("alive")
        assert c.recv(timeout=5) == "alive"


def test_tcp_connect_metric(tg):
    with tg.ws("/tcp", subprotocols=["binary"]) as c:
        c.send(b"NICK erin\r\nUSER erin 0 * :erin\r\n")
        got = b""
        while b" 001 erin " not in got:
            got += c.recv(timeout=10)
    text = tg.metrics_text()
    assert "gateway_tcp_connect_seconds" in text
    assert (metric_sum(text, "gateway_tcp_connect_seconds_count") or 0) >= 1
