"""permessage-deflate (RFC 7692): negotiation per service, compressed traffic both ways
with a real client (python websockets), and compressed input that must be refused: a
message that inflates past max_message_size (1009, memory bounded), RSV1 without the
extension (1002), data that is not deflate (1007). After each refusal the gateway serves
an older session and a fresh one.
"""

import zlib

import pytest

import wsraw

LIMIT = 1 << 20


def compression(**over):
    c = {"min_size": 32}
    c.update(over)
    return c


@pytest.fixture
def g(gateway_factory):
    from gwproc import echo_service

    return gateway_factory(
        limits={"max_message_size": LIMIT, "max_frame_size": LIMIT},
        services=[
            echo_service(compression=compression()),
            echo_service(name="dedicated", path="/dedicated", compression=compression(mode="dedicated", client_no_context_takeover=False)),
            echo_service(name="plain", path="/plain"),
        ],
    )


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(data: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")


def open_deflate(g, path="/echo", offer="permessage-deflate; client_max_window_bits"):
    c = wsraw.open_ws(g.host, g.port, path, extra=[("Sec-WebSocket-Extensions", offer)])
    return c, c.headers.get("sec-websocket-extensions")


def still_serving(g, survivor):
    assert g.alive(), f"gateway died:\n{g.log()[-3000:]}"
    survivor.send("survivor " * 20)
    assert survivor.recv(timeout=5) == "survivor " * 20
    with g.ws(compression="deflate") as c:
        c.send("fresh")
        assert c.recv(timeout=5) == "fresh"


@pytest.fixture
def survivor(g):
    c = g.ws(compression="deflate")
    c.send("before")
    assert c.recv(timeout=5) == "before"
    yield c
    c.close()


def test_negotiated_per_service_and_off_by_default(g):
    _, ext = open_deflate(g)
    assert ext == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    _, ext = open_deflate(g, "/dedicated")
    assert ext == "permessage-deflate"
    _, ext = open_deflate(g, "/plain")
    assert ext is None


def test_offers_that_cannot_be_honoured_are_declined_not_refused(g):
    c, ext = open_deflate(g, offer="permessage-deflate; server_max_window_bits=16")
    assert ext is None
    c.send_frame(wsraw.OP_TEXT, b"plain after a declined offer")
    assert c.read_frame().payload == b"plain after a declined offer"
    _, ext = open_deflate(
        g, offer="permessage-deflate; foo=1, permessage-deflate; client_no_context_takeover"
    )
    assert ext == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    _, ext = open_deflate(g, offer="permessage-deflate; server_max_window_bits=8")
    assert ext == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=8"
    )


@pytest.mark.parametrize("path", ["/echo", "/dedicated"])
def test_python_websockets_round_trip(g, path):
    with g.ws(path, compression="deflate") as ws:
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        for m in ["x", "price 1.2345 " * 200, bytes(range(256)) * 40, "é" * 5000]:
            ws.send(m)
            assert ws.recv(timeout=5) == m


def test_server_compresses_above_min_size_only(g):
    c, _ = open_deflate(g)
    big = b'{"symbol":"EURUSD","bid":1.08345,"ask":1.08351}' * 20
    c.send_frame(wsraw.OP_TEXT, big)
    c.send_frame(wsraw.OP_TEXT, b"short")
    f = c.read_frame()
    assert f.rsv == 4, "RSV1: compressed"
    assert inflate(f.payload) == big and len(f.payload) < len(big) / 3
    small = c.read_frame()
    assert (small.rsv, small.payload) == (0, b"short")


def test_compressed_frames_from_the_client_both_modes(g):
    for path in ["/echo", "/dedicated"]:
        c, _ = open_deflate(g, path)
        msg = b"hello compressed world " * 10
        # The dedicated compressor keeps its window: replies are read with one window too.
        window = zlib.decompressobj(-15)
        for _ in range(3):
            c.send_frame(wsraw.OP_TEXT, deflate(msg), rsv=4)
            reply = c.read_frame().payload + b"\x00\x00\xff\xff"
            assert window.decompress(reply) == msg
        # A fragmented compressed message: RSV1 on the first frame only.
        body = deflate(msg)
        c.send_frame(wsraw.OP_TEXT, body[:5], rsv=4, fin=False)
        c.send_frame(wsraw.OP_CONT, body[5:])
        assert window.decompress(c.read_frame().payload + b"\x00\x00\xff\xff") == msg


def test_zip_bomb_closes_1009_with_memory_bounded(g, survivor):
    before = g.rss_kb()
    bomb = deflate(b"\0" * (256 << 20))  # 256 MiB inflated, ~250 KiB on the wire
    assert len(bomb) < LIMIT
    c, _ = open_deflate(g)
    c.send_frame(wsraw.OP_BINARY, bomb, rsv=4)
    code, _ = c.wait_close()
    assert code == 1009
    grew = g.rss_kb() - before
    assert grew < 16 * 1024, f"RSS grew {grew} KiB for a 256 MiB bomb"
    still_serving(g, survivor)


def test_rsv1_without_the_extension_is_a_protocol_error(g, survivor):
    c = wsraw.open_ws(g.host, g.port, "/plain")
    c.send_frame(wsraw.OP_TEXT, deflate(b"hello"), rsv=4)
    code, _ = c.wait_close()
    assert code == 1002
    c, _ = open_deflate(g)
    c.send_frame(wsraw.OP_PING, b"", rsv=4)
    code, _ = c.wait_close()
    assert code == 1002, "RSV1 on a control frame"
    still_serving(g, survivor)


def test_corrupt_deflate_data_closes_1007(g, survivor):
    c, _ = open_deflate(g)
    c.send_frame(wsraw.OP_TEXT, b"\xff\xff\xff\xff not deflate", rsv=4)
    code, _ = c.wait_close()
    assert code == 1007
    c, _ = open_deflate(g)
    c.send_frame(wsraw.OP_TEXT, deflate(b"\xff\xfe invalid utf-8" * 4), rsv=4)
    code, _ = c.wait_close()
    assert code == 1007, "inflated text is checked as UTF-8"
    still_serving(g, survivor)
