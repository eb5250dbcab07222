"""PROXY protocol from a trusted load balancer: Debian's HAProxy in front of the gateway
with `send-proxy-v2` and `send-proxy` (v1), clients on their own loopback addresses, and
the per-IP handshake rate limit.

HAProxy connects to the gateway from LB_IP, the one address in `server.proxy_protocol`;
the test harness's own requests (from 127.0.0.1) stay direct.
"""

from __future__ import annotations

import http.client
import re
import json
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
import websockets.sync.client as wsc
from websockets.exceptions import InvalidStatus

from servers import wait_listening
from gwproc import HOST, free_port
from test_tls import client_ctx, pki  # noqa: F401  (pki is a fixture)

LB_IP = "127.0.0.10"
HAPROXY = Path("/usr/sbin/haproxy")
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
DEBUG_LOG = {"RUST_LOG": "info,gateway=debug"}


class HAProxy:
    """HAProxy in the foreground (-db) in TCP mode: frontend `v2` sends PROXY v2 (and its
    health checks send v2 LOCAL), frontend `v1` sends PROXY v1, both to the gateway. With
    `tls`, HAProxy passes TLS through and its checks speak TLS after the header."""

    def __init__(self, workdir: Path, gw_port: int, tls: bool = False):
        check_tls = " check-ssl verify none" if tls else ""
        self.v2 = free_port()
        self.v1 = free_port()
        self.cfg = workdir / "haproxy.cfg"
        self.log = workdir / "haproxy.log"
        self.cfg.write_text(f"""\
global
    log stdout format raw local0 info
    maxconn 2000

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend fe_v2
    bind {HOST}:{self.v2}
    default_backend be_v2

backend be_v2
    option httpchk GET /healthz
    server gw {HOST}:{gw_port} send-proxy-v2 source {LB_IP} check check-send-proxy inter 300ms{check_tls}

frontend fe_v1
    bind {HOST}:{self.v1}
    default_backend be_v1

backend be_v1
    server gw {HOST}:{gw_port} send-proxy source {LB_IP}
""")
        subprocess.run([str(HAPROXY), "-c", "-f", str(self.cfg)], check=True,
                       stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen([str(HAPROXY), "-db", "-f", str(self.cfg)],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        wait_listening(self.v2, self.proc, "haproxy")
        wait_listening(self.v1, self.proc, "haproxy")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@pytest.fixture
def haproxy(tmp_path):
    if not HAPROXY.exists():
        pytest.fail("haproxy missing (tests/scripts/install-deps.sh installs it)", pytrace=False)
    started = []

    def make(gw, tls=False) -> HAProxy:
        h = HAProxy(tmp_path, gw.port, tls)
        started.append(h)
        return h

    yield make
    for h in started:
        h.stop()
        assert h.proc.returncode is not None


def trusting_gateway(gateway_factory, **sections):
    server = {"proxy_protocol": [f"{LB_IP}/32"], **sections.pop("server", {})}
    env = sections.pop("env", DEBUG_LOG)
    # The peer is read from the session span's fields in the text log.
    log = {"session_fields": True, **sections.pop("log", {})}
    return gateway_factory(server=server, env=env, log=log, **sections)


def connect_from(src: str, port: int) -> socket.socket:
    s = socket.socket()
    s.bind((src, 0))
    s.connect((HOST, port))
    return s


def ws_from(src: str, port: int, *, ssl_ctx=None, path="/echo"):
    """A WebSocket to HOST:port from the loopback address `src`, and its source port."""
    s = connect_from(src, port)
    src_port = s.getsockname()[1]  # before TLS takes the socket over
    scheme = "wss" if ssl_ctx else "ws"
    kw = {"ssl": ssl_ctx, "server_hostname": "localhost"} if ssl_ctx else {}
    c = wsc.connect(f"{scheme}://localhost:{port}{path}", sock=s, compression=None,
                    open_timeout=5, close_timeout=3, ping_interval=None, legacy=True, **kw)
    return c, src_port


def refused_from(src: str, port: int):
    try:
        c, _ = ws_from(src, port)
    except InvalidStatus as e:
        return e.response
    c.close()
    raise AssertionError(f"handshake from {src} was accepted, expected a refusal")


def echo_ok(c, msg="hello"):
    c.send(msg)
    assert c.recv(timeout=5) == msg


def raw_exchange(src: str, port: int, data: bytes, timeout: float = 5.0,
                 half_close: bool = False) -> bytes:
    """Send `data` from `src` (then end the sending side, with `half_close`) and read
    until the peer closes."""
    with connect_from(src, port) as s:
        s.settimeout(timeout)
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


def session_peers(g) -> list[str]:
    # `session{session=1 service=echo peer=A:P transport=websocket}: ...: session start`
    return re.findall(r"\bpeer=([^\s}]+)[^\n]*session start", g.log())


def wait_for(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- the client's address, end to end ------------------------------------------------

@pytest.mark.parametrize("version", ["v2", "v1"])
def test_per_ip_limit_and_session_peer_are_the_real_client(gateway_factory, haproxy, version):
    g = trusting_gateway(gateway_factory, limits={"max_connections_per_ip": 1},
                         admin={"token": "pp-admin"})
    lb = haproxy(g)
    port = getattr(lb, version)
    a, a_port = ws_from("127.0.0.2", port)
    b, b_port = ws_from("127.0.0.3", port)
    try:
        # All of them reach the gateway from LB_IP, yet each client has its own slot.
        r = refused_from("127.0.0.2", port)
        assert r.status_code == 429
        assert b"too many connections from 127.0.0.2" in r.body
        echo_ok(a)
        echo_ok(b)
        wait_for(lambda: len(session_peers(g)) >= 2, what="session log lines")
        assert session_peers(g)[:2] == [f"127.0.0.2:{a_port}", f"127.0.0.3:{b_port}"]
        assert LB_IP not in g.log().split("session start", 1)[1]
        # The admin API lists each session under its real client, and filters by it.
        status, body = g.http_get("/api/sessions?peer=127.0.0.2", admin=True,
                                  headers={"Authorization": "Bearer pp-admin"})
        assert status == 200, body
        listed = json.loads(body)["sessions"]
        assert [x["peer"] for x in listed] == [f"127.0.0.2:{a_port}"]
        assert g.metric("gateway_proxy_headers_total", result=version) >= 3
        assert (g.metric("gateway_proxy_headers_total", result="invalid") or 0) == 0
    finally:
        a.close()
        b.close()


def test_haproxy_health_checks_are_v2_local(gateway_factory, haproxy):
    g = trusting_gateway(gateway_factory)
    haproxy(g)
    # `check-send-proxy` with send-proxy-v2: LOCAL headers, answered from the socket's own
    # address (HAProxy would mark the server down on anything but 200 from /healthz).
    assert g.wait_metric("gateway_proxy_headers_total", lambda v: (v or 0) >= 2,
                         result="local") >= 2
    assert (g.metric("gateway_proxy_headers_total", result="invalid") or 0) == 0


def test_forwarded_headers_are_read_against_the_proxy_given_address(gateway_factory, haproxy):
    # HAProxy says the client is 127.0.0.2; 127.0.0.2 is itself a trusted HTTP proxy, so its
    # X-Forwarded-For names the client.
    g = trusting_gateway(gateway_factory, limits={"max_connections_per_ip": 1},
                         server={"trusted_proxies": ["127.0.0.2/32"]})
    lb = haproxy(g)
    s = connect_from("127.0.0.2", lb.v2)
    c = wsc.connect(f"ws://localhost:{lb.v2}/echo", sock=s, compression=None, open_timeout=5, legacy=True,
                    additional_headers={"X-Forwarded-For": "198.51.100.7"})
    try:
        # 127.0.0.3 is not trusted: its header is ignored and it has its own slot.
        s3 = connect_from("127.0.0.3", lb.v2)
        c3 = wsc.connect(f"ws://localhost:{lb.v2}/echo", sock=s3, compression=None,
                         open_timeout=5, legacy=True, additional_headers={"X-Forwarded-For": "198.51.100.7"})
        wait_for(lambda: len(session_peers(g)) >= 2, what="session log lines")
        assert session_peers(g)[0].startswith("198.51.100.7:")
        assert session_peers(g)[1] == f"127.0.0.3:{s3.getsockname()[1]}"
        c3.close()
        echo_ok(c)
    finally:
        c.close()


def test_tls_runs_after_the_proxy_header(gateway_factory, haproxy, pki):  # noqa: F811
    g = trusting_gateway(gateway_factory, server={"tls": {"cert": pki["cert"], "key": pki["key"]}},
                         client_ssl=client_ctx(pki))
    lb = haproxy(g, tls=True)
    ctx = client_ctx(pki)
    c, c_port = ws_from("127.0.0.4", lb.v2, ssl_ctx=ctx)
    try:
        echo_ok(c, "over tls behind haproxy")
        wait_for(lambda: session_peers(g), what="session log line")
        assert session_peers(g) == [f"127.0.0.4:{c_port}"]
        # HAProxy's TLS health checks came through the same way, as LOCAL.
        assert g.wait_metric("gateway_proxy_headers_total", lambda v: (v or 0) >= 1,
                             result="local") >= 1
        assert "TLS handshake failed" not in g.log()
    finally:
        c.close()


# --- bad input ------------------------------------------------------------------------

def test_untrusted_peer_with_a_proxy_header_is_a_direct_client(gateway_factory):
    g = trusting_gateway(gateway_factory)
    v1 = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    v2 = V2_SIG + b"\x21\x11\x00\x0c" + bytes([203, 0, 113, 9, 127, 0, 0, 1]) + struct.pack(">HH", 5555, 80)
    for data in (v1, v2 + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"):
        reply = raw_exchange("127.0.0.5", g.port, data)
        assert reply.startswith(b"HTTP/1.1 400"), reply
    assert g.http_get("/healthz")[0] == 200
    assert g.metric("gateway_proxy_headers_total") is None, "untrusted peers are never parsed"


def test_trusted_peer_without_a_valid_header_is_closed(gateway_factory, haproxy):
    g = trusting_gateway(gateway_factory, limits={"handshake_timeout": "1s"},
                         env={"RUST_LOG": "info"})
    lb = haproxy(g)
    live, _ = ws_from("127.0.0.2", lb.v2)
    try:
        bad = {
            "http without header": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            "bad v1 address": b"PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n",
            "v1 wrong family": b"PROXY TCP4 ::1 ::1 1 2\r\n",
            "v2 bad version": V2_SIG + b"\x11\x11\x00\x0c" + bytes(12),
            "v2 oversize length": V2_SIG + b"\x21\x11\xff\xff" + bytes(64),
            "v2 unix family": V2_SIG + b"\x21\x31\x00\xd8" + bytes(216),
            "garbage": bytes(range(256)),
        }
        for what, data in bad.items():
            assert raw_exchange(LB_IP, g.port, data) == b"", what
        assert g.metric("gateway_proxy_headers_total", result="invalid") == len(bad)
        # Truncated: the connection closes inside the header...
        truncated = V2_SIG + b"\x21\x11\x00\x0c\x01"
        assert raw_exchange(LB_IP, g.port, truncated, half_close=True) == b""
        assert g.metric("gateway_proxy_headers_total", result="invalid") == len(bad) + 1
        # ...or stays silent past the handshake timeout.
        started = time.monotonic()
        with connect_from(LB_IP, g.port) as s:
            s.settimeout(5)
            s.sendall(b"PROXY TCP4 1.2.3.4 ")
            assert s.recv(10) == b""
        assert 0.8 < time.monotonic() - started < 4
        assert g.metric("gateway_proxy_headers_total", result="timeout") == 1
        with connect_from(LB_IP, g.port):
            pass
        g.wait_metric("gateway_proxy_headers_total", lambda v: v == 1, result="closed")
        # One warning for the operator, not one per connection.
        assert g.log().count("without a valid PROXY header") == 1, g.log()
        # The process and the session through HAProxy are fine.
        assert g.alive()
        echo_ok(live, "still here")
        assert g.http_get("/healthz")[0] == 200
    finally:
        live.close()


# --- handshake rate ---------------------------------------------------------------------

def fallback_open_from(src: str, port: int):
    c = http.client.HTTPConnection(HOST, port, timeout=5, source_address=(src, 0))
    try:
        c.request("POST", "/echo/sessions")
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("Retry-After")
    finally:
        c.close()


def test_handshake_rate_limit_per_real_client(gateway_factory, haproxy):
    g = trusting_gateway(gateway_factory, limits={"handshakes_per_ip_per_second": 1,
                                                  "handshake_burst_per_ip": 3})
    lb = haproxy(g)
    for _ in range(3):
        c, _ = ws_from("127.0.0.2", lb.v2)
        c.close()
    r = refused_from("127.0.0.2", lb.v2)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1"
    assert b"too many handshakes from 127.0.0.2" in r.body
    # The HTTP fallback's session open is a handshake too, through either frontend.
    assert fallback_open_from("127.0.0.2", lb.v1) == (429, "1")
    assert g.metric("gateway_limit_trips_total", limit="handshake_rate") == 2
    # Other clients behind the same load balancer are unaffected.
    for src in ("127.0.0.3", "127.0.0.4"):
        c, _ = ws_from(src, lb.v2)
        echo_ok(c)
        c.close()
    assert fallback_open_from("127.0.0.5", lb.v1)[0] == 201
    # A client that waits as told gets in again.
    time.sleep(1.1)
    c, _ = ws_from("127.0.0.2", lb.v2)
    echo_ok(c)
    c.close()
    assert g.metric("gateway_limit_trips_total", limit="handshake_rate") == 2


def test_handshake_rate_limit_direct_clients(gateway_factory):
    g = gateway_factory(limits={"handshakes_per_ip_per_second": 0.2, "handshake_burst_per_ip": 2})
    for _ in range(2):
        c, _ = ws_from("127.0.0.6", g.port)
        c.close()
    r = refused_from("127.0.0.6", g.port)
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 5
    c, _ = ws_from("127.0.0.7", g.port)
    echo_ok(c)
    c.close()
