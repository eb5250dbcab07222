"""Echo bridge: text as text, binary as binary, big messages, size limit."""

import os

import pytest
from websockets.exceptions import ConnectionClosed

import wsraw
from gwproc import echo_service


def test_echo_text(gw):
    with gw.ws() as c:
        for msg in ["hello", "", "héllo wörld ✓ 🚀", "x" * 200]:
            c.send(msg)
            got = c.recv(timeout=5)
            assert isinstance(got, str)
            assert got == msg


def test_echo_binary(gw):
    with gw.ws() as c:
        for msg in [b"\x00\x01\x02\xff", b"", os.urandom(70000)]:
            c.send(msg)
            got = c.recv(timeout=5)
            assert isinstance(got, bytes)
            assert got == msg


def test_echo_order_interleaved(gw):
    with gw.ws() as c:
        msgs = [f"m{i}" if i % 2 else f"b{i}".encode() for i in range(100)]
        for m in msgs:
            c.send(m)
        assert [c.recv(timeout=5) for _ in msgs] == msgs


def test_echo_one_mib(gw):
    blob = os.urandom(1 << 20)
    text = "é" * (1 << 19)  # 1 MiB of UTF-8
    with gw.ws() as c:
        c.send(blob)
        assert c.recv(timeout=20) == blob
        c.send(text)
        assert c.recv(timeout=20) == text


def test_echo_fragmented_message(gw):
    with gw.ws() as c:
        c.send(["frag", "mented ", "text"])
        assert c.recv(timeout=5) == "fragmented text"
        c.send([b"\x01", b"\x02", b"\x03"])
        assert c.recv(timeout=5) == b"\x01\x02\x03"


@pytest.fixture
def small_gw(gateway_factory):
    return gateway_factory(limits={"max_message_size": 65536, "max_frame_size": 65536})


def test_message_too_big_1009(small_gw):
    g = small_gw
    with g.ws() as c:
        c.send(b"a" * 65536)  # exactly at the limit: fine
        assert len(c.recv(timeout=5)) == 65536
        c.send(b"a" * 100_000)
        with pytest.raises(ConnectionClosed) as e:
            c.recv(timeout=5)
    assert e.value.rcvd is not None, "gateway dropped the connection without a close frame"
    assert e.value.rcvd.code == 1009
    v = g.wait_metric("gateway_limit_trips_total", lambda v: (v or 0) >= 1, limit="message_size")
    assert v == 1
    with g.ws() as c:  # still serving
        c.send("ok")
        assert c.recv(timeout=5) == "ok"


def test_fragmented_message_too_big_1009(small_gw):
    """Each frame under max_frame_size, the whole message over max_message_size."""
    g = small_gw
    with g.ws() as c:
        # The gateway may close while the last fragments are still being sent, so the
        # close can surface in send() as well as in recv().
        with pytest.raises(ConnectionClosed) as e:
            c.send([b"b" * 30000 for _ in range(4)])
            c.recv(timeout=5)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1009
    assert g.wait_metric("gateway_limit_trips_total", lambda v: (v or 0) >= 1, limit="message_size") == 1


def test_client_close_gets_close_reply(gw):
    """RFC 6455 5.5.1: a Close received must be answered with a Close."""
    with wsraw.open_ws(gw.host, gw.port, "/echo") as c:
        c.send_frame(wsraw.OP_CLOSE, wsraw.close_payload(1000, b"bye"))
        code, _ = c.wait_close(timeout=5)
        assert code == 1000, f"expected a close frame 1000 in reply, got {'none (connection dropped)' if code is None else code}"
        c.wait_eof(timeout=5)
    with gw.ws() as c:
        c.send("x")
        assert c.recv(timeout=5) == "x"
        c.close()
        assert c.close_code == 1000, f"websockets saw close code {c.close_code} (1006: no close frame came back)"


def test_ping_gets_pong(gw):
    with wsraw.open_ws(gw.host, gw.port, "/echo") as c:
        c.send_frame(wsraw.OP_PING, b"are you there")
        f = c.read_frame(timeout=5)
        assert (f.opcode, f.payload) == (wsraw.OP_PONG, b"are you there")
        c.send_frame(wsraw.OP_TEXT, b"after ping")
        f = c.read_frame(timeout=5)
        assert (f.opcode, f.payload) == (wsraw.OP_TEXT, b"after ping")
