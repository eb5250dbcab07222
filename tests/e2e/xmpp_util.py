"""XMPP over WebSocket (RFC 7395) by hand, for the XMPP bridge tests: a raw client on the
`websockets` sync API, a Prosody fixture driven by tests/scripts/prosody.sh, and fake
"servers" that answer TCP with garbage or stall during TLS.

Every WebSocket message is one complete XML element, parsed with ElementTree.
"""

from __future__ import annotations

import base64
import itertools
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from gwproc import echo_service, free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "scripts" / "prosody.sh"

NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
NS_STREAM = "http://etherx.jabber.org/streams"
NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_CLIENT = "jabber:client"
NS_ROSTER = "jabber:iq:roster"

_ids = itertools.count(1)


def q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def open_el(domain: str = "localhost") -> str:
    return f'<open xmlns="{NS_FRAMING}" to="{domain}" version="1.0"/>'


CLOSE = f'<close xmlns="{NS_FRAMING}"/>'


def plain(user: str, password: str, authzid: str = "") -> str:
    payload = base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()
    return f'<auth xmlns="{NS_SASL}" mechanism="PLAIN">{payload}</auth>'


class StreamClosed(Exception):
    """The WebSocket closed; `code` is its close code."""

    def __init__(self, code, reason=""):
        super().__init__(f"WebSocket closed with {code} {reason!r}")
        self.code = code
        self.reason = reason


@dataclass
class Ended:
    """How a session ended: the stream error condition (if any) and the close code."""
    condition: str | None
    text: str
    close_code: int | None
    messages: list


class XmppWs:
    """One XMPP-over-WebSocket session through the gateway."""

    def __init__(self, gw, path: str = "/xmpp", **kw):
        kw.setdefault("open_timeout", 20)
        self.ws = gw.ws(path, subprotocols=["xmpp"], **kw)
        assert self.ws.subprotocol == "xmpp", self.ws.subprotocol
        self.jid: str | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.ws.close()
        except Exception:
            pass

    def send(self, text: str | bytes) -> None:
        self.ws.send(text)

    def recv_raw(self, timeout: float = 20):
        from websockets.exceptions import ConnectionClosed
        try:
            return self.ws.recv(timeout=timeout)
        except ConnectionClosed as e:
            rcvd = e.rcvd
            raise StreamClosed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from None

    def recv(self, timeout: float = 20) -> ET.Element:
        raw = self.recv_raw(timeout)
        assert isinstance(raw, str), f"binary message from the gateway: {raw!r}"
        return ET.fromstring(raw)

    def recv_until(self, pred, timeout: float = 20) -> ET.Element:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "timed out waiting for an element"
            el = self.recv(left)
            if pred(el):
                return el

    def open(self, domain: str = "localhost") -> ET.Element:
        """Sends <open/>; returns the stream features."""
        self.send(open_el(domain))
        opened = self.recv()
        assert opened.tag == q(NS_FRAMING, "open"), ET.tostring(opened)
        features = self.recv()
        assert features.tag == q(NS_STREAM, "features"), ET.tostring(features)
        return features

    def auth(self, user: str, password: str, authzid: str = "") -> ET.Element:
        """SASL PLAIN; returns <success/> or <failure/>."""
        self.send(plain(user, password, authzid))
        return self.recv()

    def login(self, user: str, password: str, domain: str = "localhost", resource: str = "e2e"):
        features = self.open(domain)
        mechs = [m.text for m in features.iter(q(NS_SASL, "mechanism"))]
        assert "PLAIN" in mechs, mechs
        answer = self.auth(user, password)
        assert answer.tag == q(NS_SASL, "success"), ET.tostring(answer)
        features = self.open(domain)
        assert features.find(q(NS_BIND, "bind")) is not None, ET.tostring(features)
        result = self.iq("set", f'<bind xmlns="{NS_BIND}"><resource>{resource}</resource></bind>')
        self.jid = result.find(f"{q(NS_BIND, 'bind')}/{q(NS_BIND, 'jid')}").text
        return self.jid

    def iq(self, kind: str, payload: str, to: str | None = None) -> ET.Element:
        iq_id = f"iq{next(_ids)}"
        to_attr = f' to="{to}"' if to else ""
        self.send(f'<iq xmlns="{NS_CLIENT}" type="{kind}" id="{iq_id}"{to_attr}>{payload}</iq>')
        result = self.recv_until(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iq_id)
        assert result.get("type") == "result", ET.tostring(result)
        return result

    def expect_end(self, timeout: float = 30) -> Ended:
        """Reads until the WebSocket closes; returns the stream error seen on the way."""
        condition, text, messages = None, "", []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"session did not end within {timeout}s; got {messages}"
            try:
                raw = self.recv_raw(left)
            except StreamClosed as e:
                return Ended(condition, text, e.code, messages)
            except TimeoutError:
                continue
            messages.append(raw)
            if isinstance(raw, bytes):
                continue
            el = ET.fromstring(raw)
            if el.tag == q(NS_STREAM, "error"):
                for child in el:
                    if child.tag == q(NS_STREAMS, "text"):
                        text = child.text or ""
                    elif child.tag.startswith(f"{{{NS_STREAMS}}}") and condition is None:
                        condition = child.tag.split("}", 1)[1]


# --- Prosody ------------------------------------------------------------------------


@dataclass
class Prosody:
    dir: Path
    env: dict
    port: int
    domain: str
    ca: str

    def script(self, cmd: str, timeout: float = 60) -> str:
        r = subprocess.run(["bash", str(SCRIPT), cmd, str(self.dir)], env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"prosody.sh {cmd} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def start(self) -> None:
        out = self.script("start")
        # Values are shell-quoted (printf %q).
        values = {k: (shlex.split(v) or [""])[0]
                  for k, v in (line.split("=", 1) for line in out.splitlines() if "=" in line)}
        self.port = int(values["PROSODY_C2S_PORT"])
        self.domain = values.get("PROSODY_DOMAIN", "localhost")
        self.ca = values["PROSODY_CA"]

    def stop(self) -> None:
        self.script("stop")


def start_prosody(workdir: Path, pick_port) -> Prosody:
    """Starts Prosody on a port from `pick_port()`; a port found free can be taken before
    Prosody binds it, so a refused start is retried on another one."""
    for attempt in range(3):
        port = pick_port()
        env = {**os.environ, "PROSODY_C2S_PORT": str(port)}
        p = Prosody(dir=workdir, env=env, port=port, domain="localhost", ca="")
        try:
            p.start()
            return p
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# --- bad servers ----------------------------------------------------------------------


class FakeServer:
    """A TCP listener that runs `handler(conn)` per connection, in threads."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self.handler(conn)
        except OSError:
            pass

    def close(self):
        self._stop.set()
        self._thread.join(2)
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()


def read_some(conn: socket.socket, until: bytes, timeout: float = 10) -> bytes:
    conn.settimeout(timeout)
    data = b""
    while until not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def garbage_server(conn: socket.socket) -> None:
    """Answers the stream header with bytes that are not XML."""
    read_some(conn, b">")
    conn.sendall(b"\x00\xff\xfeHTTP/1.1 400 Bad Request\r\n\r\n<<<<>>>>")
    time.sleep(5)


def tls_stall_server(conn: socket.socket) -> None:
    """Offers STARTTLS, says <proceed/>, then never speaks TLS."""
    read_some(conn, b">")
    conn.sendall(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='s1' version='1.0'>"
        b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
        b"</starttls></stream:features>"
    )
    read_some(conn, b"starttls")
    conn.sendall(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    # Read (and ignore) the ClientHello; answer nothing.
    conn.settimeout(60)
    while conn.recv(4096):
        pass


class TlsObserver:
    """A "server" with the given certificate that opens the secure stream (STARTTLS, or
    XEP-0368 direct TLS), offers PLAIN, then only records what the gateway sends: what a real
    server's idle timer sees."""

    HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              b"xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='%s' "
              b"version='1.0'>")

    def __init__(self, cert: str, key: str, direct: bool = False):
        self.direct = direct
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.received = b""
        self.server = FakeServer(self._serve)
        self.port = self.server.port

    def _serve(self, conn: socket.socket) -> None:
        if not self.direct:
            read_some(conn, b">")
            conn.sendall(self.HEADER % b"pre" + b"<stream:features><starttls "
                         b"xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>")
            read_some(conn, b"starttls")
            conn.sendall(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        tls = self.ctx.wrap_socket(conn, server_side=True)
        read_some(tls, b">")
        tls.sendall(self.HEADER % b"post" + b"<stream:features><mechanisms "
                    b"xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
                    b"</mechanisms></stream:features>")
        tls.settimeout(60)
        while True:
            chunk = tls.recv(4096)
            if not chunk:
                break
            self.received += chunk

    def close(self):
        self.server.close()


# --- fixtures and helpers shared by the test_xmpp* modules ------------------------------

CI = bool(os.environ.get("CI"))
BIG = 16 * 1024 * 1024


def need_prosody():
    if shutil.which("prosody") and shutil.which("prosodyctl"):
        return
    if CI:
        pytest.fail("prosody missing (tests/scripts/install-deps.sh must install it)", pytrace=False)
    pytest.skip("prosody is not installed")


@pytest.fixture(scope="module")
def prosody(tmp_path_factory):
    need_prosody()
    p = start_prosody(tmp_path_factory.mktemp("prosody"), free_port)
    yield p
    p.stop()


def xmpp_service(name="xmpp", path="/xmpp", **settings) -> dict:
    s = echo_service(name=name, path=path, bridge="xmpp", allow_no_subprotocol=False)
    # Generous: a loaded CI machine may take seconds for a TLS handshake.
    s["settings"] = {"domains": ["localhost"], "tls_timeout": "15s", "connect_timeout": "10s",
                     **settings}
    return s


def prosody_service(prosody, **over) -> dict:
    return xmpp_service(server=f"127.0.0.1:{prosody.port}", ca_file=prosody.ca, **over)


@pytest.fixture
def xgw(gateway_factory, prosody):
    """A gateway with the Prosody service at /xmpp; messages up to 16 MiB reach the bridge."""
    return gateway_factory(
        limits={"max_message_size": BIG, "max_frame_size": BIG},
        services=[prosody_service(prosody)],
    )


def login(gw, user, path="/xmpp", **kw) -> XmppWs:
    c = XmppWs(gw, path, **kw)
    c.login(user, f"{user}-pass", resource=f"r{time.monotonic_ns()}")
    return c


def assert_still_serves(gw, path="/xmpp"):
    """A fresh session through the same gateway logs in and round-trips an iq."""
    with login(gw, "carol", path) as c:
        c.iq("get", f'<query xmlns="{NS_ROSTER}"/>')
