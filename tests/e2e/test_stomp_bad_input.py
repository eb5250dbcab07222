"""Malformed and out-of-place STOMP frames, written by hand over a `websockets` connection.

Each gets an ERROR frame whose `message` header and body name the problem, then the
WebSocket closes (1002, protocol error); a session opened before it is unaffected and a
fresh session on the same gateway works.
"""

from __future__ import annotations

import re

import pytest

from stomp_util import RawStomp, encode, stomp_service

MAX_FRAME = 1024
CONNECT = encode("CONNECT", {"accept-version": "1.2", "host": "localhost"})


@pytest.fixture
def sgw(gateway_factory):
    return gateway_factory(services=[stomp_service(max_frame_size=MAX_FRAME)])


def _chunks(*parts):
    return [p.encode() if isinstance(p, str) else p for p in parts]


# name -> (WebSocket messages to send, metric reason, words the ERROR must contain)
CASES = {
    "unknown command": (
        _chunks(CONNECT, "FOO\nk:v\n\n\0"), "malformed_frame", ["FOO", "command"]),
    "lower-case command": (
        _chunks(CONNECT, "send\ndestination:/queue/a\n\nx\0"), "malformed_frame", ["send", "command"]),
    "header without colon": (
        _chunks(CONNECT, "SEND\ndestination:/queue/a\nbadheader\n\nx\0"), "malformed_frame", ["badheader"]),
    "bad escape \\t in a 1.2 header": (
        _chunks(CONNECT, "SEND\ndestination:/queue/a\nk:a\\tb\n\nx\0"), "malformed_frame", ["escape", "\\t"]),
    "content-length shorter than the body": (
        _chunks(CONNECT, "SEND\ndestination:/queue/a\ncontent-length:3\n\nhello\0"),
        "malformed_frame", ["NUL", "content-length"]),
    # The announced body swallows the next frame, then no NUL where it must be.
    "content-length longer than the body (missing NUL)": (
        _chunks(CONNECT, "SEND\ndestination:/queue/a\ncontent-length:40\n\nhi\0",
                "SEND\ndestination:/queue/a\n\nsecond frame, after the first one\0"),
        "malformed_frame", ["NUL", "content-length"]),
    "content-length not a number": (
        _chunks(CONNECT, "SEND\ndestination:/queue/a\ncontent-length:abc\n\nhi\0"),
        "malformed_frame", ["content-length", "abc"]),
    "frame over max_frame_size": (
        _chunks(CONNECT, "SEND\ndestination:/queue/a\n\n" + "x" * (4 * MAX_FRAME) + "\0"),
        "malformed_frame", [str(MAX_FRAME)]),
    # A frame that never ends (no NUL) is cut off once it passes the limit.
    "unterminated frame growing past max_frame_size": (
        _chunks(CONNECT, "SEND\ndestination:/queue/a\n\n" + "x" * 700, "y" * 700),
        "malformed_frame", [str(MAX_FRAME)]),
    "command or header not UTF-8": (
        _chunks(CONNECT, b"SEND\ndestination:/queue/a\nk:\xff\xfe\n\nx\0"), "malformed_frame", ["UTF-8"]),
    "SEND to an invalid destination": (
        _chunks(CONNECT, "SEND\ndestination:/foo/bar\n\nx\0"), "invalid_destination", ["destination", "/foo/bar"]),
    "SEND without destination": (
        _chunks(CONNECT, "SEND\n\nx\0"), "missing_header", ["destination"]),
    "SUBSCRIBE to an invalid destination": (
        _chunks(CONNECT, "SUBSCRIBE\nid:1\ndestination:queue-no-slash\n\n\0"),
        "invalid_destination", ["destination", "queue-no-slash"]),
    "SUBSCRIBE with an unknown ack mode": (
        _chunks(CONNECT, "SUBSCRIBE\nid:1\ndestination:/queue/a\nack:sometimes\n\n\0"), "bad_header", ["ack", "sometimes"]),
    "ACK of an unknown id": (
        _chunks(CONNECT, "ACK\nid:nope\n\n\0"), "unknown_ack", ["ACK", "nope"]),
    "NACK of an unknown id": (
        _chunks(CONNECT, "NACK\nid:nope\n\n\0"), "unknown_ack", ["NACK", "nope"]),
    "SUBSCRIBE with a duplicate id": (
        _chunks(CONNECT, "SUBSCRIBE\nid:s\ndestination:/topic/a\n\n\0",
                "SUBSCRIBE\nid:s\ndestination:/topic/b\n\n\0"), "duplicate_subscription", ["duplicate", '"s"']),
    "UNSUBSCRIBE of an unknown id": (
        _chunks(CONNECT, "UNSUBSCRIBE\nid:zz\n\n\0"), "unknown_subscription", ["subscription", "zz"]),
    "COMMIT of an unknown transaction": (
        _chunks(CONNECT, "COMMIT\ntransaction:t9\n\n\0"), "unknown_transaction", ["transaction", "t9"]),
    "a server command (MESSAGE) from the client": (
        _chunks(CONNECT, "MESSAGE\ndestination:/queue/a\n\nx\0"), "unexpected_command", ["MESSAGE"]),
    "a frame before CONNECT": (
        _chunks("SEND\ndestination:/queue/a\n\nx\0"), "not_connected", ["CONNECT", "SEND"]),
    "a second CONNECT": (
        _chunks(CONNECT, CONNECT), "already_connected", ["CONNECT"]),
    "CONNECT with an unsupported version": (
        _chunks("CONNECT\naccept-version:2.0\nhost:x\n\n\0"), "version", ["version", "1.2"]),
    "CONNECT with a bad heart-beat header": (
        _chunks("CONNECT\naccept-version:1.2\nhost:x\nheart-beat:soon\n\n\0"), "bad_header", ["heart-beat", "soon"]),
}


def _bystander(gw):
    s = RawStomp(gw)
    s.connect()
    s.receipt("SUBSCRIBE", {"id": "by", "destination": "/topic/bystander"})
    return s


def _check_healthy(gw, bystander, tag):
    """A fresh session works, and the bystander still gets what is published."""
    with RawStomp(gw) as fresh:
        fresh.connect()
        fresh.receipt("SUBSCRIBE", {"id": "f", "destination": "/queue/fresh"})
        fresh.receipt("SEND", {"destination": "/queue/fresh"}, "ok")
        m = fresh.recv()
        assert (m.command, m.text) == ("MESSAGE", "ok")
        fresh.receipt("SEND", {"destination": "/topic/bystander", "tag": tag}, f"after {tag}")
    m = bystander.recv()
    assert m.command == "MESSAGE" and m.text == f"after {tag}", m


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_frame_gets_error_and_close(sgw, case):
    messages, reason, words = CASES[case]
    bystander = _bystander(sgw)
    before = sgw.metric("gateway_stomp_error_frames_total", reason=reason) or 0

    with RawStomp(sgw) as bad:
        for m in messages:
            bad.send_raw(m)
        err = bad.expect_error()
        text = err.headers.get("message", "") + "\n" + err.text
        assert err.headers.get("message"), f"ERROR has a message header: {err}"
        assert err.text, f"ERROR has a body explaining the problem: {err}"
        for w in words:
            assert w.lower() in text.lower(), f"{w!r} not named in ERROR {text!r}"
        assert bad.close_code == 1002, f"close code {bad.close_code} ({bad.close_reason})"

    after = sgw.wait_metric("gateway_stomp_error_frames_total", lambda v: (v or 0) > before, reason=reason)
    assert after == before + 1, f"error_frames_total{{reason={reason}}}: {before} -> {after}"
    _check_healthy(sgw, bystander, re.sub(r"[^a-z0-9]+", "-", case.lower()))
    bystander.ws.close()


def test_error_carries_the_receipt_id_of_the_frame_it_answers(sgw):
    with RawStomp(sgw) as bad:
        bad.connect()
        bad.send("SEND", {"destination": "/foo/bar", "receipt": "r77"}, "x")
        err = bad.expect_error()
        assert err.headers.get("receipt-id") == "r77", err


def test_missing_nul_makes_the_next_frame_part_of_the_body(sgw):
    """Without content-length a body runs to the first NUL (STOMP 1.2), and a frame may
    span WebSocket messages: a frame missing its NUL swallows the next one."""
    with RawStomp(sgw) as s:
        s.connect()
        s.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/nul"})
        s.send_raw("SEND\ndestination:/queue/nul\n\nbody")
        s.send_raw("SEND\ndestination:/queue/nul\n\nbody2\0")
        m = s.recv()
        assert m.command == "MESSAGE"
        assert m.text == "bodySEND\ndestination:/queue/nul\n\nbody2"
        # The session goes on.
        s.receipt("SEND", {"destination": "/queue/nul"}, "next")
        assert s.recv().text == "next"


def test_frame_split_across_messages_and_several_per_message(sgw):
    with RawStomp(sgw) as s:
        s.connect()
        s.receipt("SUBSCRIBE", {"id": "1", "destination": "/queue/split"})
        whole = encode("SEND", {"destination": "/queue/split"}, "one") + \
            encode("SEND", {"destination": "/queue/split", "content-length": "3"}, "two") + b"\n"
        s.send_raw(whole[:7])
        s.send_raw(whole[7:30])
        s.send_raw(whole[30:])
        s.send_raw(encode("SEND", {"destination": "/queue/split"}, "three") + b"\r\n\n" +
                   encode("SEND", {"destination": "/queue/split"}, "four"))
        assert [s.recv().text for _ in range(4)] == ["one", "two", "three", "four"]
