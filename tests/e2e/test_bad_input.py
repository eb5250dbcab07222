"""Malformed requests and frames, sent over raw sockets.

Each test checks the refusal (status or close code), then that the gateway still
serves a fresh echo session and that a session opened before the bad input is
still alive.
"""

import os
import time

import pytest

import wsraw

HS_TIMEOUT = 2.0


@pytest.fixture
def g(gateway_factory):
    return gateway_factory(limits={
        "handshake_timeout": f"{HS_TIMEOUT:g}s",
        "max_message_size": 1 << 20,
        "max_frame_size": 1 << 20,
        "max_header_bytes": 16384,
    })


@pytest.fixture
def survivor(g):
    """A session opened before the bad input; checked afterwards."""
    c = g.ws()
    c.send("before")
    assert c.recv(timeout=5) == "before"
    yield c
    c.close()


def still_serving(g, survivor):
    assert g.alive(), f"gateway died:\n{g.log()[-3000:]}"
    survivor.send("survivor")
    assert survivor.recv(timeout=5) == "survivor"
    with g.ws() as c:
        c.send("fresh")
        assert c.recv(timeout=5) == "fresh"


def http_status(data: bytes) -> int | None:
    if not data.startswith(b"HTTP/1."):
        return None
    return int(data.split(b" ", 2)[1])


# --- handshake-level -----------------------------------------------------------------

def test_garbage_instead_of_http(g, survivor):
    with wsraw.connect(g.host, g.port) as c:
        c.send(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(200) + b"\r\n\r\n")
        data = c.wait_eof(timeout=HS_TIMEOUT + 3)
    assert data == b"" or http_status(data) == 400, data[:200]
    with wsraw.connect(g.host, g.port) as c:
        c.send(b"HELLO THERE\r\n\r\n")
        data = c.wait_eof(timeout=HS_TIMEOUT + 3)
    assert data == b"" or http_status(data) == 400, data[:200]
    still_serving(g, survivor)


def test_request_line_without_end(g, survivor):
    t0 = time.monotonic()
    with wsraw.connect(g.host, g.port) as c:
        c.send(b"GET /echo HTTP/1.1")
        data = c.wait_eof(timeout=HS_TIMEOUT + 3)
    assert time.monotonic() - t0 >= HS_TIMEOUT * 0.8
    assert data == b"" or http_status(data) in (400, 408), data[:200]
    still_serving(g, survivor)


def test_endless_request_line(g, survivor):
    """100 KB request line, no CRLF: refused on size or closed, not buffered forever."""
    with wsraw.connect(g.host, g.port) as c:
        try:
            c.send(b"GET /" + b"a" * 100_000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = c.wait_eof(timeout=HS_TIMEOUT + 3)
    assert data == b"" or http_status(data) in (400, 414, 431), data[:200]
    still_serving(g, survivor)


def test_huge_headers_431(g, survivor):
    filler = [(f"X-Filler-{i}", "v" * 1000) for i in range(100)]  # ~100 KB
    req = wsraw.upgrade_request(f"{g.host}:{g.port}", "/echo", key=wsraw.new_key(), extra=filler)
    with wsraw.connect(g.host, g.port) as c:
        try:
            c.send(req)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may stop reading once over the limit
        data = c.wait_eof(timeout=HS_TIMEOUT + 3)
    assert http_status(data) in (431, 400), f"expected 431/400, got {data[:200]!r}"
    still_serving(g, survivor)


@pytest.mark.parametrize("key", ["", "short", "not base64 at all!!", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", None])
def test_bad_websocket_key_400(g, survivor, key):
    with wsraw.connect(g.host, g.port) as c:
        c.send(wsraw.upgrade_request(f"{g.host}:{g.port}", "/echo", key=key))
        wsraw.read_response_head(c)
        assert c.status == 400, (c.status, c.body)
    still_serving(g, survivor)


@pytest.mark.parametrize("version", ["8", "14", None])
def test_bad_websocket_version_400(g, survivor, version):
    with wsraw.connect(g.host, g.port) as c:
        c.send(wsraw.upgrade_request(f"{g.host}:{g.port}", "/echo", key=wsraw.new_key(), version=version))
        wsraw.read_response_head(c)
        assert c.status == 400, (c.status, c.body)
    still_serving(g, survivor)


def test_bad_request_metric(g, survivor):
    with wsraw.connect(g.host, g.port) as c:
        c.send(wsraw.upgrade_request(f"{g.host}:{g.port}", "/echo", key="short"))
        wsraw.read_response_head(c)
        assert c.status == 400
    assert g.wait_metric("gateway_handshakes_total", lambda v: (v or 0) >= 1, result="bad_request") >= 1
    still_serving(g, survivor)


# --- frame-level ---------------------------------------------------------------------

def test_unmasked_client_frame(g, survivor):
    with wsraw.open_ws(g.host, g.port, "/echo") as c:
        c.send_frame(wsraw.OP_TEXT, b"unmasked", mask=False)
        code, frames = c.wait_close(timeout=5)
    assert code in (1002, None), f"expected close 1002 or a dropped connection, got {code}"
    assert all(f.payload != b"unmasked" for f in frames), "gateway echoed an unmasked frame"
    still_serving(g, survivor)


def test_announced_1gb_frame(g, survivor):
    rss_before = g.rss_kb()
    with wsraw.open_ws(g.host, g.port, "/echo") as c:
        hdr = wsraw.build_frame(wsraw.OP_BINARY, b"", announced_len=1 << 30)  # header + mask key only
        c.send(hdr)
        sent = 0
        try:
            for _ in range(8):  # then 8 MiB of the "payload"
                c.send(os.urandom(1 << 20))
                sent += 1 << 20
        except (BrokenPipeError, ConnectionResetError):
            pass
        code, _ = c.wait_close(timeout=10)
    assert code in (1009, None), f"expected close 1009 or a dropped connection, got {code}"
    grown_mb = (g.rss_kb() - rss_before) / 1024
    assert grown_mb < 50, f"gateway RSS grew by {grown_mb:.1f} MB"
    if code == 1009:
        assert (g.wait_metric("gateway_limit_trips_total", lambda v: (v or 0) >= 1, limit="message_size") or 0) >= 1
    still_serving(g, survivor)


def test_invalid_utf8_text_1007(g, survivor):
    with wsraw.open_ws(g.host, g.port, "/echo") as c:
        c.send_frame(wsraw.OP_TEXT, b"ok \xff\xfe bad \xc3\x28")
        code, frames = c.wait_close(timeout=5)
    assert code == 1007, f"expected close 1007, got {code}"
    assert not frames, f"gateway echoed invalid UTF-8: {frames}"
    still_serving(g, survivor)


def test_invalid_utf8_split_across_fragments_1007(g, survivor):
    with wsraw.open_ws(g.host, g.port, "/echo") as c:
        c.send_frame(wsraw.OP_TEXT, b"abc\xce", fin=False)
        c.send_frame(wsraw.OP_CONT, b"\xff", fin=True)  # \xce\xff is not UTF-8
        code, frames = c.wait_close(timeout=5)
    assert code == 1007, f"expected close 1007, got {code}"
    still_serving(g, survivor)


@pytest.mark.parametrize("name,frame", [
    ("reserved bits", wsraw.build_frame(wsraw.OP_TEXT, b"x", rsv=4)),
    ("reserved opcode", wsraw.build_frame(0x3, b"x")),
    ("control frame > 125 bytes", wsraw.build_frame(wsraw.OP_PING, b"p" * 126)),
    ("fragmented control frame", wsraw.build_frame(wsraw.OP_PING, b"p", fin=False)),
    ("continuation without start", wsraw.build_frame(wsraw.OP_CONT, b"x")),
])
def test_protocol_violation_1002(g, survivor, name, frame):
    with wsraw.open_ws(g.host, g.port, "/echo") as c:
        c.send(frame)
        code, frames = c.wait_close(timeout=5)
    assert code in (1002, None), f"{name}: expected close 1002 or drop, got {code}"
    still_serving(g, survivor)
