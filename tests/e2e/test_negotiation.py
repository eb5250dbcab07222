"""Subprotocol negotiation: one token answered, chosen among the offered ones."""

import time

import wsraw
from gwproc import echo_service, metric_sum


def tcp_service(name, path, port, **over):
    s = {
        "name": name,
        "path": path,
        "bridge": "tcp",
        "allow_no_subprotocol": False,
        "allowed_origins": [],
        "allow_missing_origin": True,
        "require_auth": False,
        "require_roles": [],
        "settings": {"target": f"127.0.0.1:{port}", "connect_timeout": "2s"},
    }
    s.update(over)
    return s


def recv_bytes_until(conn, want: bytes, timeout=5.0) -> bytes:
    """TCP backends answer a stream: gather binary messages until `want` arrived."""
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < len(want):
        m = conn.recv(timeout=max(0.01, deadline - time.monotonic()))
        assert isinstance(m, bytes), f"expected binary from tcp bridge, got {m!r}"
        got += m
    return got


def test_offered_foo_echo_answers_echo(gw):
    with gw.ws("/echo", subprotocols=["foo", "echo"]) as c:
        assert c.subprotocol == "echo"
        c.send("hi")
        assert c.recv(timeout=5) == "hi"


def test_response_has_exactly_one_token(gw):
    with wsraw.open_ws(gw.host, gw.port, "/echo", protocols=["foo", "echo", "bar"]) as c:
        assert c.headers.get("sec-websocket-protocol") == "echo"


def test_no_subprotocol_accepted_on_echo(gw):
    with wsraw.open_ws(gw.host, gw.port, "/echo") as c:
        assert "sec-websocket-protocol" not in c.headers
        c.send_frame(wsraw.OP_TEXT, b"plain")
        f = c.read_frame()
        assert (f.opcode, f.payload) == (wsraw.OP_TEXT, b"plain")
        assert not f.masked, "server frames must not be masked"


def test_no_matching_subprotocol_400_and_metric(gw):
    before = gw.metric("gateway_handshakes_total", result="no_subprotocol") or 0
    r = gw.refused("/echo", subprotocols=["foo", "bar"])
    assert r.status_code == 400
    after = gw.wait_metric("gateway_handshakes_total", lambda v: (v or 0) > before, result="no_subprotocol")
    assert after == before + 1


def test_no_subprotocol_refused_when_not_allowed(gateway_factory):
    g = gateway_factory(services=[echo_service(name="strict", path="/strict", allow_no_subprotocol=False)])
    r = g.refused("/strict")
    assert r.status_code == 400
    with g.ws("/strict", subprotocols=["echo"]) as c:
        assert c.subprotocol == "echo"


def test_unknown_path_404(gw):
    r = gw.refused("/nope", subprotocols=["echo"])
    assert r.status_code == 404
    assert gw.wait_metric("gateway_handshakes_total", lambda v: (v or 0) >= 1, result="not_found") == 1


def test_two_services_one_path_pick_by_subprotocol(gateway_factory, tcp_upper):
    port, stats = tcp_upper
    g = gateway_factory(services=[
        echo_service(name="multi-echo", path="/multi", allow_no_subprotocol=False),
        tcp_service("multi-tcp", "/multi", port),
    ])

    # Only one bridge offered: that one is chosen, and it really is that bridge.
    with g.ws("/multi", subprotocols=["binary"]) as c:
        assert c.subprotocol == "binary"
        c.send(b"hello tcp")
        assert recv_bytes_until(c, b"HELLO TCP") == b"HELLO TCP"
    with g.ws("/multi", subprotocols=["echo"]) as c:
        assert c.subprotocol == "echo"
        c.send("hello echo")
        assert c.recv(timeout=5) == "hello echo"

    # Both offered, in both orders: the answer is one offered token and the bridge
    # behind it serves the session. README: services are taken in configuration
    # order (server preference), so the echo service (first) wins either way.
    chosen = []
    for offer in (["binary", "echo"], ["echo", "binary"]):
        with g.ws("/multi", subprotocols=offer) as c:
            assert c.subprotocol in offer
            chosen.append(c.subprotocol)
            if c.subprotocol == "echo":
                c.send("which")
                assert c.recv(timeout=5) == "which"
            else:
                c.send(b"which")
                assert recv_bytes_until(c, b"WHICH") == b"WHICH"
    assert chosen == ["echo", "echo"], f"expected server preference (config order), got {chosen}"

    # Nothing acceptable on the shared path.
    assert g.refused("/multi", subprotocols=["stomp"]).status_code == 400
    assert g.refused("/multi").status_code == 400

    text = g.metrics_text()
    assert metric_sum(text, "gateway_handshakes_total", service="multi-tcp", result="accepted") == 1 + chosen.count("binary")
    assert metric_sum(text, "gateway_handshakes_total", service="multi-echo", result="accepted") == 1 + chosen.count("echo")
    assert stats["accepted"] == 1 + chosen.count("binary")


def test_server_preference_follows_config_order(gateway_factory, tcp_upper):
    port, _ = tcp_upper
    g = gateway_factory(services=[
        tcp_service("first-tcp", "/multi", port),
        echo_service(name="second-echo", path="/multi", allow_no_subprotocol=False),
    ])
    for offer in (["echo", "binary"], ["binary", "echo"]):
        with g.ws("/multi", subprotocols=offer) as c:
            assert c.subprotocol == "binary", (offer, c.subprotocol)
            c.send(b"pref")
            assert recv_bytes_until(c, b"PREF") == b"PREF"
