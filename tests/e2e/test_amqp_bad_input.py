"""The AMQP 0-9-1 bridge against bad input, with a private RabbitMQ behind it: frames written
by hand (amqp_util.RawAmqp) that break the protocol header, the handshake, framing, channel
rules and content assembly. Each gets what the bridge's contract promises (a protocol header
and close 1002, a Connection.Close or a Channel.Close with the AMQP reply code); a session
opened before it carries on, the process stays up, and a fresh session through the gateway
publishes to and reads from RabbitMQ (checked from the broker's side with pika).
"""

from __future__ import annotations

import itertools
import os
import time

import bcrypt
import pytest

from amqp_util import (
    BASIC_GET, BASIC_GET_EMPTY, BASIC_GET_OK, BASIC_PUBLISH, BODY, CHANNEL_CLOSE, CHANNEL_CLOSE_OK,
    CHANNEL_OPEN, CHANNEL_OPEN_OK, CONNECTION_OPEN, CONNECTION_OPEN_OK, HEADER, PROTOCOL_HEADER,
    QUEUE_DECLARE, RawAmqp, amqp_service, body, channel_open, close_args, connection_open, frame,
    get_args, header, long_, method, octet, publish, publish_args, queue_declare_args, short,
    shortstr, start_ok, tune_ok,
)
from rabbit_util import private_rabbit, wait_ready

USER, PASSWORD = "alice", "alice-pw"
names = itertools.count(1)


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    yield from private_rabbit(tmp_path_factory)


@pytest.fixture
def realm(tmp_path):
    # Clients log in with SASL PLAIN against the gateway's realm (credentials = service).
    path = tmp_path / "users.toml"
    h = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f'[[user]]\nname = "{USER}"\npassword_hash = \'{h}\'\nroles = ["trader"]\n')
    return path


@pytest.fixture
def make_gw(gateway_factory, rabbit, realm):
    def make(env=None, **settings):
        settings.setdefault("backend", rabbit.url)
        g = gateway_factory(services=[amqp_service(**settings)], auth={"realm_file": str(realm)},
                            env=env)
        # The broker pool connects in the background; until then upgrades are refused.
        wait_ready(g, 15)
        return g
    return make


@pytest.fixture
def agw(make_gw):
    return make_gw()


def qname(what: str) -> str:
    return f"amqp-e2e-{what}-{os.getpid()}-{next(names)}"


def session(gw, **kw) -> RawAmqp:
    c = RawAmqp(gw)
    c.handshake(USER, PASSWORD, **kw)
    return c


class Survivor:
    """A session opened before the bad input, with a channel and its own queue: it must still
    publish and get afterwards (a bad client ends only its own session)."""

    def __init__(self, gw):
        self.c = session(gw)
        self.c.open_channel(1)
        self.queue = self.c.declare_queue(1, "", exclusive=True)

    def check(self) -> None:
        data = os.urandom(16)
        self.c.send(publish(1, "", self.queue, data))
        assert self.c.get_eventually(1, self.queue).body == data
        self.c.close()


@pytest.fixture
def survivor(agw):
    return Survivor(agw)


def assert_still_serves(gw, rabbit) -> None:
    """The process is up, and a fresh session's publish reaches RabbitMQ and a message put
    there by pika comes back through the gateway."""
    assert gw.alive(), "the gateway process exited"
    q = qname("check")
    with rabbit.pika() as conn:
        ch = conn.channel()
        ch.queue_declare(q)
        try:
            with session(gw) as c:
                c.open_channel(1)
                c.send(publish(1, "", q, b"through the gateway"))
                deadline = time.monotonic() + 5
                while True:
                    _, _, got = ch.basic_get(q, auto_ack=True)
                    if got is not None:
                        break
                    assert time.monotonic() < deadline, "a publish through the gateway never reached RabbitMQ"
                    time.sleep(0.05)
                assert got == b"through the gateway"
                ch.basic_publish("", q, b"from pika")
                assert c.get_eventually(1, q).body == b"from pika"
                c.close()
        finally:
            ch.queue_delete(q)


def channel_exceptions(gw, code: int) -> float:
    return gw.metric("gateway_amqp_channel_exceptions_total", service="amqp", code=str(code)) or 0


def expect_connection_error(c: RawAmqp, code: int, name: str, ids: tuple[int, int] | None = None):
    close = c.expect_connection_close()
    assert close.reply_code == code, f"expected {code} {name}, got {close}"
    # Reply texts name the code first, as RabbitMQ's do ("NOT_FOUND - no queue ..").
    assert name in close.reply_text, f"reply text does not name {name}: {close}"
    if ids is not None:
        assert (close.class_id, close.method_id) == ids, f"close does not name method {ids}: {close}"
    return close


# --- the protocol header --------------------------------------------------------------------

@pytest.mark.parametrize("sent", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x00" * 8,
    b"AMQP\x00\x01\x00\x00",   # AMQP 1.0
    b"AMQP\x03\x01\x00\x00",   # AMQP 1.0 with SASL
    b"AMQP\x01\x01\x08\x00",   # AMQP 0-8
    b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x0b\xce",  # a frame where the header belongs
], ids=["http", "zeros", "amqp-1.0", "amqp-1.0-sasl", "amqp-0-8", "frame-first"])
def test_bad_protocol_header_gets_ours_and_close_1002(agw, rabbit, survivor, sent):
    with RawAmqp(agw) as c:
        c.send(sent)
        # The version the gateway speaks, alone in one message, then a protocol-error close.
        assert c.recv_message() == PROTOCOL_HEADER
        assert c.wait_closed() == 1002
        assert c.close_reason, "close 1002 without a reason"
    survivor.check()
    assert_still_serves(agw, rabbit)


# --- the handshake ----------------------------------------------------------------------------

@pytest.mark.parametrize("user,password", [(USER, "wrong"), ("mallory", PASSWORD), (USER, "")],
                         ids=["wrong-password", "unknown-user", "empty-password"])
def test_bad_credentials_get_403(agw, rabbit, survivor, user, password):
    with RawAmqp(agw) as c:
        c.send(PROTOCOL_HEADER)
        c.expect_start()
        c.send(start_ok(user, password))
        expect_connection_error(c, 403, "ACCESS_REFUSED")
    survivor.check()
    assert_still_serves(agw, rabbit)


def test_unknown_vhost_gets_530(agw, rabbit):
    with RawAmqp(agw) as c:
        c.send(PROTOCOL_HEADER)
        c.expect_start()
        c.send(start_ok(USER, PASSWORD))
        tune = c.expect_tune()
        c.send(tune_ok(tune.channel_max, tune.frame_max, 0), connection_open("no-such-vhost"))
        expect_connection_error(c, 530, "NOT_ALLOWED")
    assert_still_serves(agw, rabbit)


# --- framing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("offered,asked", [(4096, None), (131072, 4096)],
                         ids=["server-offers-4096", "client-tunes-down-to-4096"])
def test_frame_over_frame_max_gets_501(make_gw, rabbit, offered, asked):
    gw = make_gw(frame_max=offered)
    survivor = Survivor(gw)
    with RawAmqp(gw) as c:
        tune = c.handshake(USER, PASSWORD, frame_max=asked)
        assert tune.frame_max == offered, f"Tune offered {tune.frame_max}, settings say {offered}"
        c.open_channel(1)
        # A 5000-byte body frame: 5008 bytes on the wire, over the negotiated 4096.
        c.send(method(1, *BASIC_PUBLISH, publish_args("", "q")), header(1, 5000), body(1, b"x" * 5000))
        expect_connection_error(c, 501, "FRAME_ERROR")
    survivor.check()
    assert_still_serves(gw, rabbit)


def test_frame_announcing_1gib_gets_501_before_its_payload(agw, rabbit, survivor):
    with session(agw) as c:
        c.open_channel(1)
        # Only the 7 octets of a frame header: the size alone must be enough to refuse it.
        c.send(octet(3) + short(1) + long_(1 << 30))
        expect_connection_error(c, 501, "FRAME_ERROR")
    survivor.check()
    assert_still_serves(agw, rabbit)


def test_bad_frame_end_gets_501(agw, rabbit, survivor):
    with session(agw) as c:
        c.send(frame(1, 1, short(20) + short(10) + shortstr(""), end=0x00))
        expect_connection_error(c, 501, "FRAME_ERROR")
    survivor.check()
    assert_still_serves(agw, rabbit)


@pytest.mark.parametrize("payload", [
    short(50) + short(10) + short(0) + octet(200) + b"short",  # queue name longer than the frame
    short(20),                                                   # not even a method id
], ids=["shortstr-past-the-end", "two-octet-method"])
def test_malformed_method_payload_gets_502(agw, rabbit, survivor, payload):
    with session(agw) as c:
        c.open_channel(1)
        c.send(frame(1, 1, payload))
        expect_connection_error(c, 502, "SYNTAX_ERROR")
    survivor.check()
    assert_still_serves(agw, rabbit)


# --- content ------------------------------------------------------------------------------------

def test_1gb_content_header_gets_311_and_the_connection_carries_on(agw, rabbit):
    before = channel_exceptions(agw, 311)
    with session(agw) as c:
        c.open_channel(1)
        c.send(method(1, *BASIC_PUBLISH, publish_args("", "q")), header(1, 1 << 30))
        close = c.expect_channel_close(1)
        assert close.reply_code == 311, close
        assert "CONTENT_TOO_LARGE" in close.reply_text, close
        # The connection and its other channels are fine: a new one publishes and gets,
        # and the closed channel's id can be opened again.
        c.open_channel(2)
        q = c.declare_queue(2, "", exclusive=True)
        c.send(publish(2, "", q, b"after the 311"))
        assert c.get_eventually(2, q).body == b"after the 311"
        c.open_channel(1)
        c.send(publish(1, "", q, b"on the reopened channel"))
        assert c.get_eventually(2, q).body == b"on the reopened channel"
        c.close()
    assert agw.wait_metric("gateway_amqp_channel_exceptions_total",
                           lambda v: (v or 0) >= before + 1, service="amqp", code="311") >= before + 1
    assert_still_serves(agw, rabbit)


def test_too_large_body_sent_whole_gets_311_not_a_connection_error(agw, rabbit):
    """What a client library does with a large publish: method, header and the body frames
    all written at once. The body frames after the refused header are already on the wire
    when the Channel.Close is sent; the spec has the server discard a closing channel's
    frames until Close-Ok, so they must not turn the 311 into a connection error."""
    limit = 16 * 1024 * 1024  # the default max_body_size
    with session(agw) as c:
        c.open_channel(1)
        chunk = c.tune.frame_max - 8
        c.send(method(1, *BASIC_PUBLISH, publish_args("", "q")), header(1, limit + 1),
               *(body(1, b"x" * chunk) for _ in range(3)))
        close = c.expect_channel_close(1)
        assert close.reply_code == 311, close
        c.open_channel(2)
        q = c.declare_queue(2, "", exclusive=True)
        c.send(publish(2, "", q, b"after the 311"))
        assert c.get_eventually(2, q).body == b"after the 311"
        c.close()
    assert_still_serves(agw, rabbit)


CONTENT_OUT_OF_ORDER = {
    # name: frames after channel 1 is open
    "body-after-publish-without-header": lambda: (
        method(1, *BASIC_PUBLISH, publish_args("", "q")) + body(1, b"hello")),
    "body-without-publish": lambda: body(1, b"hello"),
    "header-without-publish": lambda: header(1, 5),
    "method-where-the-header-belongs": lambda: (
        method(1, *BASIC_PUBLISH, publish_args("", "q")) + method(1, *QUEUE_DECLARE, queue_declare_args("x"))),
    "method-where-the-body-belongs": lambda: (
        method(1, *BASIC_PUBLISH, publish_args("", "q")) + header(1, 5)
        + method(1, *QUEUE_DECLARE, queue_declare_args("x"))),
}


@pytest.mark.parametrize("name", CONTENT_OUT_OF_ORDER)
def test_content_out_of_order_gets_505(agw, rabbit, survivor, name):
    with session(agw) as c:
        c.open_channel(1)
        c.send(CONTENT_OUT_OF_ORDER[name]())
        expect_connection_error(c, 505, "UNEXPECTED_FRAME")
    survivor.check()
    assert_still_serves(agw, rabbit)


# --- channels ---------------------------------------------------------------------------------

def test_method_on_a_never_opened_channel_gets_504(agw, rabbit, survivor):
    with session(agw) as c:
        c.send(method(3, *QUEUE_DECLARE, queue_declare_args("", exclusive=True)))
        expect_connection_error(c, 504, "CHANNEL_ERROR")
    survivor.check()
    assert_still_serves(agw, rabbit)


def test_method_on_a_closed_channel_gets_504(agw, rabbit, survivor):
    with session(agw) as c:
        c.open_channel(1)
        c.send(method(1, *CHANNEL_CLOSE, close_args()))
        c.expect(CHANNEL_CLOSE_OK, 1)
        c.send(method(1, *BASIC_PUBLISH, publish_args("", "q")), header(1, 2), body(1, b"hi"))
        expect_connection_error(c, 504, "CHANNEL_ERROR")
    survivor.check()
    assert_still_serves(agw, rabbit)


def test_channel_open_on_an_open_channel_gets_504(agw, rabbit, survivor):
    with session(agw) as c:
        c.open_channel(1)
        c.send(channel_open(1))
        expect_connection_error(c, 504, "CHANNEL_ERROR", ids=CHANNEL_OPEN)
    survivor.check()
    assert_still_serves(agw, rabbit)


CHANNEL_ZERO_MISUSE = {
    # name: (frames after channel 1 is open, the method the close must name)
    "queue.declare-on-channel-0": (method(0, *QUEUE_DECLARE, queue_declare_args("x")), QUEUE_DECLARE),
    "channel.open-on-channel-0": (channel_open(0), CHANNEL_OPEN),
    "basic.publish-on-channel-0": (method(0, *BASIC_PUBLISH, publish_args("", "q")), BASIC_PUBLISH),
    "connection.open-on-channel-1": (method(1, *CONNECTION_OPEN, shortstr("/") + shortstr("") + octet(0)),
                                     CONNECTION_OPEN),
}


@pytest.mark.parametrize("name", CHANNEL_ZERO_MISUSE)
def test_channel_zero_misuse_gets_503(agw, rabbit, survivor, name):
    sent, ids = CHANNEL_ZERO_MISUSE[name]
    with session(agw) as c:
        c.open_channel(1)
        c.send(sent)
        expect_connection_error(c, 503, "COMMAND_INVALID", ids=ids)
    survivor.check()
    assert_still_serves(agw, rabbit)


@pytest.mark.parametrize("channel,ids", [(1, (99, 1)), (1, (60, 250)), (1, (20, 99)), (0, (10, 99))],
                         ids=["unknown-class", "unknown-basic-method", "unknown-channel-method",
                              "unknown-connection-method"])
def test_unknown_method_gets_540_naming_it(agw, rabbit, survivor, channel, ids):
    with session(agw) as c:
        c.open_channel(1)
        c.send(method(channel, *ids, b"\x00\x00"))
        expect_connection_error(c, 540, "NOT_IMPLEMENTED", ids=ids)
    survivor.check()
    assert_still_serves(agw, rabbit)


def test_channel_flood_past_channel_max_gets_530(make_gw, rabbit):
    gw = make_gw(max_channels=16)
    survivor = Survivor(gw)
    with RawAmqp(gw) as c:
        tune = c.handshake(USER, PASSWORD)
        assert tune.channel_max == 16, f"Tune offered channel-max {tune.channel_max}, settings say 16"
        for ch in range(1, 17):
            c.open_channel(ch)
        # Then a flood: 200 opens above channel-max in one message.
        c.send(*(channel_open(ch) for ch in range(17, 217)))
        expect_connection_error(c, 530, "NOT_ALLOWED")
    survivor.check()
    assert_still_serves(gw, rabbit)


def test_channel_id_above_channel_max_gets_530(agw, rabbit, survivor):
    with session(agw) as c:
        c.send(channel_open(65535))
        expect_connection_error(c, 530, "NOT_ALLOWED")
    survivor.check()
    assert_still_serves(agw, rabbit)


# --- channel-level exceptions ---------------------------------------------------------------

def test_passive_declare_of_a_missing_queue_gets_the_brokers_404(agw, rabbit):
    with session(agw) as c:
        c.open_channel(1)
        c.open_channel(2)
        missing = qname("missing")
        c.send(method(1, *QUEUE_DECLARE, queue_declare_args(missing, passive=True)))
        close = c.expect_channel_close(1)
        assert close.reply_code == 404 and "NOT_FOUND" in close.reply_text, close
        assert missing in close.reply_text, f"the broker's text is not relayed: {close}"
        assert (close.class_id, close.method_id) == QUEUE_DECLARE, close
        _other_channel_carries_on(c, 2)
    assert agw.wait_metric("gateway_amqp_channel_exceptions_total", lambda v: (v or 0) >= 1,
                           service="amqp", code="404") >= 1
    assert_still_serves(agw, rabbit)


def test_ack_of_an_unknown_delivery_tag_gets_the_brokers_406(agw, rabbit):
    with session(agw) as c:
        c.open_channel(1)
        c.open_channel(2)
        # basic.ack of tag 77, never handed out on this channel (multiple off).
        c.send(method(1, 60, 80, b"\x00\x00\x00\x00\x00\x00\x00\x4d\x00"))
        close = c.expect_channel_close(1)
        assert close.reply_code == 406 and "PRECONDITION_FAILED" in close.reply_text, close
        _other_channel_carries_on(c, 2)
    assert agw.wait_metric("gateway_amqp_channel_exceptions_total", lambda v: (v or 0) >= 1,
                           service="amqp", code="406") >= 1
    assert_still_serves(agw, rabbit)


def _other_channel_carries_on(c: RawAmqp, ch: int) -> None:
    q = c.declare_queue(ch, "", exclusive=True)
    c.send(publish(ch, "", q, b"still here"))
    assert c.get_eventually(ch, q).body == b"still here"
    c.close()


def test_own_exclusive_queue_is_usable_from_every_channel_of_the_session(agw, rabbit):
    """The counterpart of the 405 below: exclusivity is per client session, so none of the
    session's own channels may be refused its queue, whichever broker connection of the
    pool each channel sits on."""
    with session(agw) as c:
        for ch in range(1, 6):
            c.open_channel(ch)
        q = c.declare_queue(1, "", exclusive=True)
        for ch in range(1, 6):
            c.send(publish(ch, "", q, f"via {ch}".encode()))
            got = c.get_eventually(ch, q)
            assert got.body == f"via {ch}".encode(), f"channel {ch} got {got}"
        c.close()
    assert_still_serves(agw, rabbit)


def test_exclusive_queue_of_another_session_gets_405(agw, rabbit):
    with session(agw) as owner, session(agw) as other:
        owner.open_channel(1)
        q = owner.declare_queue(1, qname("exclusive"), exclusive=True)
        other.open_channel(1)
        other.send(method(1, *BASIC_GET, get_args(q)))
        close = other.expect_channel_close(1)
        assert close.reply_code == 405 and "RESOURCE_LOCKED" in close.reply_text, close
        other.open_channel(2)
        other.close()
        owner.close()
    assert agw.wait_metric("gateway_amqp_channel_exceptions_total", lambda v: (v or 0) >= 1,
                           service="amqp", code="405") >= 1
    assert_still_serves(agw, rabbit)


def test_acl_denial_gets_403_on_the_channel(make_gw, rabbit):
    gw = make_gw(acl=[{"roles": ["trader"], "configure": ["mine.*"], "write": ["mine.*"],
                       "read": ["mine.*"]}])
    with session(gw) as c:
        c.open_channel(1)
        c.send(method(1, *QUEUE_DECLARE, queue_declare_args("theirs.orders")))
        close = c.expect_channel_close(1)
        assert close.reply_code == 403 and "ACCESS_REFUSED" in close.reply_text, close
        c.open_channel(2)
        assert c.declare_queue(2, "mine.orders", auto_delete=True) == "mine.orders"
        c.close()
    assert gw.wait_metric("gateway_amqp_channel_exceptions_total", lambda v: (v or 0) >= 1,
                          service="amqp", code="403") >= 1
    assert gw.alive()


# --- how bytes are cut into messages -----------------------------------------------------------

def _whole_session_bytes(q: str) -> tuple[bytes, bytes]:
    """What a client sends after Connection.Start and after Tune, for a session that opens a
    channel, publishes to `q` and gets the message back."""
    first = start_ok(USER, PASSWORD)
    rest = (tune_ok(64, 131072, 0) + connection_open("/") + channel_open(1)
            + publish(1, "", q, b"cut into pieces") + method(1, *BASIC_GET, get_args(q)))
    return first, rest


@pytest.mark.parametrize("size", [1, 7], ids=["one-byte-per-message", "seven-bytes-per-message"])
def test_bytes_split_across_messages(agw, rabbit, size):
    q = qname("split")
    with rabbit.pika() as conn:
        conn.channel().queue_declare(q, auto_delete=False)
        first, rest = _whole_session_bytes(q)
        with RawAmqp(agw) as c:
            c.send_split(PROTOCOL_HEADER, size)
            c.expect_start()
            c.send_split(first, size)
            c.expect_tune()
            c.send_split(rest, size)
            c.expect(CONNECTION_OPEN_OK, 0)
            c.expect(CHANNEL_OPEN_OK, 1)
            got = None
            deadline = time.monotonic() + 5
            while got is None:
                got = _get_reply(c, q)
                assert got is not None or time.monotonic() < deadline, "message never arrived"
            assert got == b"cut into pieces"
            c.close()
        conn.channel().queue_delete(q)
    assert_still_serves(agw, rabbit)


def _get_reply(c: RawAmqp, q: str) -> bytes | None:
    """The answer to the basic.get already sent; on Get-Empty, asks again (split bytes) and
    returns None."""
    f = c.recv()
    if f.is_(BASIC_GET_EMPTY):
        c.send_split(method(1, *BASIC_GET, get_args(q)), 3)
        return None
    assert f.is_(BASIC_GET_OK), f"expected Get-Ok, got {f}"
    h = c.recv()
    assert h.type == HEADER, f"expected a content header, got {h}"
    b = c.recv()
    assert b.type == BODY, f"expected a body, got {b}"
    return b.payload


def test_frames_packed_with_the_handshake_in_one_message(agw, rabbit):
    """tune-ok, open and then a channel's work in one message: the frames after
    Connection.Open must be taken as they are, not left until the next message."""
    q = qname("packed")
    with rabbit.pika() as conn:
        conn.channel().queue_declare(q, auto_delete=False)
        first, rest = _whole_session_bytes(q)
        with RawAmqp(agw) as c:
            c.send(PROTOCOL_HEADER)
            c.expect_start()
            c.send(first)
            c.expect_tune()
            c.send(rest)
            c.expect(CONNECTION_OPEN_OK, 0)
            c.expect(CHANNEL_OPEN_OK, 1)
            deadline = time.monotonic() + 5
            got = None
            while got is None:
                got = _get_reply(c, q)
                assert got is not None or time.monotonic() < deadline, "message never arrived"
            assert got == b"cut into pieces"
            c.close()
        conn.channel().queue_delete(q)
    assert_still_serves(agw, rabbit)


def test_frames_packed_into_one_message(agw, rabbit):
    q = qname("packed")
    with rabbit.pika() as conn:
        ch = conn.channel()
        ch.queue_declare(q, auto_delete=False)
        with session(agw) as c:
            # channel.open, publish + header + body and basic.get: one message.
            c.send(channel_open(1), publish(1, "", q, b"packed"), method(1, *BASIC_GET, get_args(q)))
            c.expect(CHANNEL_OPEN_OK, 1)
            deadline = time.monotonic() + 5
            got = None
            while got is None:
                got = _get_reply(c, q)
                assert got is not None or time.monotonic() < deadline, "message never arrived"
            assert got == b"packed"
            # Three publishes in one message arrive in order.
            c.send(*(publish(1, "", q, f"m{i}".encode()) for i in range(3)))
            deadline = time.monotonic() + 5
            seen = []
            while len(seen) < 3:
                _, _, data = ch.basic_get(q, auto_ack=True)
                if data is None:
                    assert time.monotonic() < deadline, f"only {seen} reached RabbitMQ"
                    time.sleep(0.05)
                    continue
                seen.append(data)
            assert seen == [b"m0", b"m1", b"m2"]
            c.close()
        ch.queue_delete(q)
    assert_still_serves(agw, rabbit)


# --- memory ---------------------------------------------------------------------------------------

def test_1gb_body_declared_then_trickled_keeps_rss_bounded(make_gw, rabbit):
    # max_body_size above 1 GiB so the header is accepted and the gateway must take the body
    # as it comes rather than set 1 GiB aside for it.
    # The allocator hands freed memory back at once (not after its default delay), so RSS
    # follows what is live rather than what was freed a moment ago.
    gw = make_gw(max_body_size=1 << 31, frame_max=4096,
                 env={"MIMALLOC_PURGE_DELAY": "0", "MIMALLOC_RESET_DELAY": "0"})
    # A first session pays for what any session allocates once (pool channels, buffers, the
    # allocator's first segments); only growth after it is the trickled body's.
    with session(gw) as warm:
        warm.open_channel(1)
        q = warm.declare_queue(1, "", exclusive=True)
        warm.send(method(1, *BASIC_PUBLISH, publish_args("", q)), header(1, 1 << 20),
                  *(body(1, b"w" * 4088) for _ in range((1 << 20) // 4088)), body(1, b"w" * ((1 << 20) % 4088)))
        assert len(warm.get_eventually(1, q).body) == 1 << 20
        warm.close()
    time.sleep(0.5)
    rss_before = gw.rss_kb()
    with session(gw) as c:
        c.open_channel(1)
        c.send(method(1, *BASIC_PUBLISH, publish_args("", qname("big"))), header(1, 1 << 30))
        chunk = body(1, os.urandom(4000))
        sent = 0
        for i in range(256):  # 1 MiB of body in 4000-byte frames, each cut into 4 messages
            c.send_split(chunk, 1002)
            sent += 4000
            if i % 32 == 0:
                time.sleep(0.05)
        # Nothing came back: the body is still incomplete, the channel open.
        try:
            f = c.recv(0.5)
        except AssertionError:
            f = None
        assert f is None, f"unexpected frame while the body is incomplete: {f}"
        grown_kb = gw.rss_kb() - rss_before
        print(f"RSS +{grown_kb} KiB after a 1 GiB announced body with {sent} bytes trickled")
        # What may grow: the body so far in a buffer that doubles as it fills (up to twice
        # what was sent), the read buffers it passed through, and the allocator's granularity
        # (runs here measured 5-8 MiB for 1 MiB sent); nothing in proportion to 1 GiB.
        assert grown_kb < 4 * sent // 1024 + 8 * 1024, f"RSS grew by {grown_kb} KiB for {sent} bytes of body"
    assert_still_serves(gw, rabbit)


# --- the gateway going away -------------------------------------------------------------------

def test_drain_closes_live_sessions_with_320(agw):
    with session(agw) as c:
        c.open_channel(1)
        agw.terminate()
        close = c.expect_connection_close(timeout=8)
        assert close.reply_code == 320 and "CONNECTION_FORCED" in close.reply_text, close
    assert agw.wait_exit(15) == 0, "the gateway did not exit cleanly after draining"
