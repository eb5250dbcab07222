"""A raw AMQP 0-9-1 client over the gateway's WebSocket, frames encoded by hand so tests can
send good and bad input alike, and a `[[service]]` table for the AMQP bridge.

    c = RawAmqp(gw)
    c.handshake("alice", "alice-pw")          # protocol header .. Connection.Open-Ok
    c.open_channel(1)
    c.send(method(1, *BASIC_PUBLISH, publish_args("", "q")), header(1, 5), body(1, b"hello"))

The gateway sends exactly one AMQP frame per WebSocket binary message, so `recv` checks that
every message it gets is one whole frame (or the 8-byte protocol header of a refusal).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = 0xCE

METHOD, HEADER, BODY, HEARTBEAT = 1, 2, 3, 8

# (class-id, method-id) of the methods the tests use.
CONNECTION_START = (10, 10)
CONNECTION_START_OK = (10, 11)
CONNECTION_TUNE = (10, 30)
CONNECTION_TUNE_OK = (10, 31)
CONNECTION_OPEN = (10, 40)
CONNECTION_OPEN_OK = (10, 41)
CONNECTION_CLOSE = (10, 50)
CONNECTION_CLOSE_OK = (10, 51)
CHANNEL_OPEN = (20, 10)
CHANNEL_OPEN_OK = (20, 11)
CHANNEL_CLOSE = (20, 40)
CHANNEL_CLOSE_OK = (20, 41)
QUEUE_DECLARE = (50, 10)
QUEUE_DECLARE_OK = (50, 11)
BASIC_PUBLISH = (60, 40)
BASIC_GET = (60, 70)
BASIC_GET_OK = (60, 71)
BASIC_GET_EMPTY = (60, 72)


def amqp_service(**settings) -> dict:
    """The AMQP bridge at /amqp for non-browser clients (no subprotocol, no Origin)."""
    return {
        "name": "amqp",
        "path": "/amqp",
        "bridge": "amqp",
        "allow_no_subprotocol": True,
        "allow_missing_origin": True,
        "settings": settings,
    }


# --- field encodings (AMQP 0-9-1 section 4.2.5) ------------------------------------------

def octet(v: int) -> bytes:
    return struct.pack(">B", v)


def short(v: int) -> bytes:
    return struct.pack(">H", v)


def long_(v: int) -> bytes:
    return struct.pack(">I", v)


def longlong(v: int) -> bytes:
    return struct.pack(">Q", v)


def shortstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    assert len(b) < 256, "shortstr is at most 255 bytes"
    return octet(len(b)) + b


def longstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return long_(len(b)) + b


def _field_value(v) -> bytes:
    # The type letters RabbitMQ reads (its table grammar differs from the spec's errata for
    # a few integer types; these are the ones both agree on).
    if isinstance(v, bool):
        return b"t" + octet(1 if v else 0)
    if isinstance(v, int):
        return b"l" + struct.pack(">q", v)
    if isinstance(v, (str, bytes)):
        return b"S" + longstr(v)
    if isinstance(v, dict):
        return b"F" + table(v)
    if v is None:
        return b"V"
    raise TypeError(f"no AMQP field type for {v!r}")


def table(d: dict | None = None) -> bytes:
    payload = b"".join(shortstr(k) + _field_value(v) for k, v in (d or {}).items())
    return long_(len(payload)) + payload


class Reader:
    """Reads AMQP fields off a method's argument bytes, front to back."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        assert self.pos + n <= len(self.data), f"truncated arguments: {self.data!r}"
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def octet(self) -> int:
        return self.take(1)[0]

    def short(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def long(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def longlong(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    def shortstr(self) -> str:
        return self.take(self.octet()).decode("utf-8", "replace")

    def longstr(self) -> bytes:
        return self.take(self.long())

    def table(self) -> dict:
        end = self.pos + 4 + self.long()
        out = {}
        while self.pos < end:
            key = self.shortstr()
            out[key] = self.value()
        return out

    def value(self):
        kind = self.take(1)
        fixed = {b"t": ">B", b"b": ">b", b"B": ">B", b"s": ">h", b"u": ">H", b"I": ">i",
                 b"i": ">I", b"l": ">q", b"L": ">Q", b"f": ">f", b"d": ">d", b"T": ">Q"}
        if kind in fixed:
            fmt = fixed[kind]
            return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        if kind == b"S" or kind == b"x":
            return self.longstr()
        if kind == b"F":
            return self.table()
        if kind == b"A":
            end = self.pos + 4 + self.long()
            items = []
            while self.pos < end:
                items.append(self.value())
            return items
        if kind == b"D":
            return (self.octet(), self.long())
        if kind == b"V":
            return None
        raise AssertionError(f"unknown field type {kind!r}")


# --- frames ------------------------------------------------------------------------------

def frame(kind: int, channel: int, payload: bytes, end: int = FRAME_END) -> bytes:
    return octet(kind) + short(channel) + long_(len(payload)) + payload + octet(end)


def method(channel: int, class_id: int, method_id: int, args: bytes = b"") -> bytes:
    return frame(METHOD, channel, short(class_id) + short(method_id) + args)


def header(channel: int, body_size: int, class_id: int = 60, props: bytes = b"\x00\x00") -> bytes:
    """A content header: class, weight 0, body size, property flags (none by default)."""
    return frame(HEADER, channel, short(class_id) + short(0) + longlong(body_size) + props)


def body(channel: int, data: bytes) -> bytes:
    return frame(BODY, channel, data)


def heartbeat() -> bytes:
    return frame(HEARTBEAT, 0, b"")


def start_ok(user: str, password: str, mechanism: str = "PLAIN") -> bytes:
    response = b"\x00" + user.encode() + b"\x00" + password.encode()
    args = (table({"product": "gateway-e2e", "capabilities": {"publisher_confirms": True}})
            + shortstr(mechanism) + longstr(response) + shortstr("en_US"))
    return method(0, *CONNECTION_START_OK, args)


def tune_ok(channel_max: int, frame_max: int, heartbeat_s: int) -> bytes:
    return method(0, *CONNECTION_TUNE_OK, short(channel_max) + long_(frame_max) + short(heartbeat_s))


def connection_open(vhost: str = "/") -> bytes:
    return method(0, *CONNECTION_OPEN, shortstr(vhost) + shortstr("") + octet(0))


def close_args(code: int = 200, text: str = "bye", class_id: int = 0, method_id: int = 0) -> bytes:
    return short(code) + shortstr(text) + short(class_id) + short(method_id)


def channel_open(channel: int) -> bytes:
    return method(channel, *CHANNEL_OPEN, shortstr(""))


def queue_declare_args(name: str = "", *, passive=False, durable=False, exclusive=False,
                       auto_delete=False) -> bytes:
    bits = passive | durable << 1 | exclusive << 2 | auto_delete << 3
    return short(0) + shortstr(name) + octet(bits) + table()


def publish_args(exchange: str, routing_key: str, mandatory: bool = False) -> bytes:
    return short(0) + shortstr(exchange) + shortstr(routing_key) + octet(1 if mandatory else 0)


def get_args(queue: str, no_ack: bool = True) -> bytes:
    return short(0) + shortstr(queue) + octet(1 if no_ack else 0)


def publish(channel: int, exchange: str, routing_key: str, data: bytes) -> bytes:
    """basic.publish, its content header and one body frame (empty bodies have none)."""
    out = method(channel, *BASIC_PUBLISH, publish_args(exchange, routing_key))
    out += header(channel, len(data))
    if data:
        out += body(channel, data)
    return out


@dataclass
class Frame:
    type: int
    channel: int
    payload: bytes

    @property
    def class_id(self) -> int | None:
        return struct.unpack(">H", self.payload[0:2])[0] if self.type in (METHOD, HEADER) else None

    @property
    def method_id(self) -> int | None:
        return struct.unpack(">H", self.payload[2:4])[0] if self.type == METHOD else None

    @property
    def args(self) -> bytes:
        return self.payload[4:] if self.type == METHOD else b""

    def is_(self, ids: tuple[int, int]) -> bool:
        return self.type == METHOD and (self.class_id, self.method_id) == ids

    def __repr__(self) -> str:
        if self.type == METHOD:
            return f"Method(ch={self.channel}, {self.class_id}.{self.method_id}, args={self.args!r})"
        return f"Frame(type={self.type}, ch={self.channel}, {len(self.payload)} bytes)"


def parse_frame(data: bytes) -> Frame:
    """One whole frame; AssertionError if `data` is anything else."""
    assert len(data) >= 8, f"short frame {data!r}"
    kind, channel, size = struct.unpack(">BHI", data[:7])
    assert len(data) == 7 + size + 1, f"message is not exactly one frame (size {size}): {data[:64]!r}"
    assert data[-1] == FRAME_END, f"bad frame end {data[-1]:#x}"
    return Frame(kind, channel, data[7:7 + size])


def split_frames(data: bytes) -> list[Frame]:
    """Every frame in a byte string of whole frames (the client's own, for tests to check)."""
    out = []
    while data:
        size = struct.unpack(">I", data[3:7])[0]
        out.append(parse_frame(data[:8 + size]))
        data = data[8 + size:]
    return out


@dataclass
class Close:
    """connection.close / channel.close arguments."""
    channel: int
    reply_code: int
    reply_text: str
    class_id: int
    method_id: int


def parse_close(f: Frame) -> Close:
    assert f.is_(CONNECTION_CLOSE) or f.is_(CHANNEL_CLOSE), f"not a close: {f}"
    r = Reader(f.args)
    return Close(f.channel, r.short(), r.shortstr(), r.short(), r.short())


@dataclass
class Tune:
    channel_max: int
    frame_max: int
    heartbeat: int


@dataclass
class Message:
    body: bytes
    exchange: str
    routing_key: str


class ProtocolHeader(Exception):
    """The server answered with its protocol header: it refused ours."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.data = data


class RawAmqp:
    """An AMQP 0-9-1 connection driven frame by frame over a `websockets` connection."""

    def __init__(self, gw, path: str = "/amqp", subprotocols=None, headers: dict | None = None):
        kw = {"additional_headers": headers} if headers else {}
        if subprotocols:
            kw["subprotocols"] = subprotocols
        self.ws = gw.ws(path, **kw)
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.tune: Tune | None = None
        self.server_properties: dict = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.ws.close()

    # sending
    def send(self, *chunks: bytes) -> None:
        """All chunks in one WebSocket binary message."""
        self.ws.send(b"".join(chunks))

    def send_split(self, data: bytes, size: int = 1) -> None:
        """`data` cut into WebSocket messages of `size` bytes."""
        for i in range(0, len(data), size):
            self.ws.send(data[i:i + size])

    # receiving
    def recv_message(self, timeout: float = 3.0) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"nothing received within {timeout}s")
            try:
                msg = self.ws.recv(timeout=left)
            except TimeoutError:
                continue
            except ConnectionClosed as e:
                self._closed(e)
                raise AssertionError(
                    f"connection closed ({self.close_code} {self.close_reason!r}) while waiting for a frame"
                ) from None
            assert isinstance(msg, bytes), f"text message from an AMQP service: {msg!r}"
            return msg

    def recv(self, timeout: float = 3.0, heartbeats: bool = False) -> Frame:
        """The next frame (heart-beats skipped unless asked for)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv_message(max(0.01, deadline - time.monotonic()))
            if msg == PROTOCOL_HEADER:
                raise ProtocolHeader(msg)
            f = parse_frame(msg)
            if f.type == HEARTBEAT and not heartbeats:
                continue
            return f

    def expect(self, ids: tuple[int, int], channel: int | None = None, timeout: float = 3.0) -> Frame:
        f = self.recv(timeout)
        if f.is_(CONNECTION_CLOSE) and ids != CONNECTION_CLOSE:
            c = parse_close(f)
            raise AssertionError(f"expected {ids}, got Connection.Close {c}")
        assert f.is_(ids), f"expected method {ids}, got {f}"
        if channel is not None:
            assert f.channel == channel, f"expected {ids} on channel {channel}, got {f}"
        return f

    def _closed(self, e: ConnectionClosed) -> None:
        if e.rcvd is not None:
            self.close_code, self.close_reason = e.rcvd.code, e.rcvd.reason
        else:
            self.close_code = 1006

    def wait_closed(self, timeout: float = 5.0) -> int:
        """Reads until the WebSocket closes; every frame still arriving must be a heart-beat.
        Returns the close code (1006 for a dropped TCP connection)."""
        deadline = time.monotonic() + timeout
        while self.close_code is None:
            left = deadline - time.monotonic()
            assert left > 0, f"the connection was not closed within {timeout}s"
            try:
                msg = self.ws.recv(timeout=left)
            except TimeoutError:
                continue
            except ConnectionClosed as e:
                self._closed(e)
                break
            f = parse_frame(msg)
            assert f.type == HEARTBEAT, f"frame after the close: {f}"
        return self.close_code

    # the connection
    def handshake(self, user: str, password: str, vhost: str = "/", heartbeat_s: int = 0,
                  frame_max: int | None = None, channel_max: int | None = None) -> Tune:
        """Protocol header through Connection.Open-Ok. The tune-ok takes the server's offer
        unless told otherwise (heart-beats off by default so a slow test sees none)."""
        self.send(PROTOCOL_HEADER)
        self.expect_start()
        self.send(start_ok(user, password))
        tune = self.expect_tune()
        self.send(tune_ok(tune.channel_max if channel_max is None else channel_max,
                          tune.frame_max if frame_max is None else frame_max, heartbeat_s))
        self.send(connection_open(vhost))
        self.expect(CONNECTION_OPEN_OK, 0)
        return tune

    def expect_start(self) -> dict:
        f = self.expect(CONNECTION_START, 0)
        r = Reader(f.args)
        assert (r.octet(), r.octet()) == (0, 9), "Connection.Start is not version 0-9"
        self.server_properties = r.table()
        mechanisms = r.longstr().decode().split()
        assert "PLAIN" in mechanisms, f"PLAIN not offered: {mechanisms}"
        return self.server_properties

    def expect_tune(self) -> Tune:
        f = self.expect(CONNECTION_TUNE, 0)
        r = Reader(f.args)
        self.tune = Tune(r.short(), r.long(), r.short())
        return self.tune

    def expect_connection_close(self, timeout: float = 5.0) -> Close:
        """The Connection.Close that ends the session: answered with Close-Ok, after which
        the socket must close. Frames before it (e.g. open-oks of a pipelined flood) are
        skipped."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv(max(0.01, deadline - time.monotonic()))
            if f.is_(CONNECTION_CLOSE):
                break
        c = parse_close(f)
        assert c.channel == 0, f"Connection.Close on channel {c.channel}"
        try:
            self.send(method(0, *CONNECTION_CLOSE_OK))
        except ConnectionClosed:
            pass  # the spec lets the gateway end the session without waiting for Close-Ok
        self.wait_closed(timeout)
        return c

    def expect_channel_close(self, channel: int, timeout: float = 3.0) -> Close:
        f = self.recv(timeout)
        if f.is_(CONNECTION_CLOSE):
            raise AssertionError(f"expected Channel.Close on {channel}, got Connection.Close {parse_close(f)}")
        assert f.is_(CHANNEL_CLOSE), f"expected Channel.Close on {channel}, got {f}"
        c = parse_close(f)
        assert c.channel == channel, f"Channel.Close on {c.channel}, expected {channel}"
        self.send(method(channel, *CHANNEL_CLOSE_OK))
        return c

    def close(self) -> None:
        """A polite Connection.Close and its Close-Ok."""
        self.send(method(0, *CONNECTION_CLOSE, close_args()))
        while True:
            f = self.recv()
            if f.is_(CONNECTION_CLOSE_OK):
                break
        self.wait_closed()

    # channels and messages
    def open_channel(self, channel: int) -> None:
        self.send(channel_open(channel))
        self.expect(CHANNEL_OPEN_OK, channel)

    def declare_queue(self, channel: int, name: str = "", **flags) -> str:
        """queue.declare; returns the queue's name (the server's for name "")."""
        self.send(method(channel, *QUEUE_DECLARE, queue_declare_args(name, **flags)))
        f = self.expect(QUEUE_DECLARE_OK, channel)
        return Reader(f.args).shortstr()

    def get(self, channel: int, queue: str, timeout: float = 3.0) -> Message | None:
        """basic.get with no-ack: the message (header and body frames read) or None if empty."""
        self.send(method(channel, *BASIC_GET, get_args(queue)))
        f = self.recv(timeout)
        if f.is_(BASIC_GET_EMPTY):
            return None
        assert f.is_(BASIC_GET_OK), f"expected Get-Ok or Get-Empty, got {f}"
        r = Reader(f.args)
        r.longlong()  # delivery tag
        r.octet()  # redelivered
        exchange, routing_key = r.shortstr(), r.shortstr()
        h = self.recv(timeout)
        assert h.type == HEADER and h.channel == channel, f"expected a content header, got {h}"
        size = struct.unpack(">Q", h.payload[4:12])[0]
        data = b""
        while len(data) < size:
            b = self.recv(timeout)
            assert b.type == BODY and b.channel == channel, f"expected a body frame, got {b}"
            data += b.payload
        assert len(data) == size, f"body {len(data)} bytes, header said {size}"
        return Message(data, exchange, routing_key)

    def get_eventually(self, channel: int, queue: str, timeout: float = 5.0) -> Message:
        """basic.get until a message is there (a publish is not confirmed, so it may still be
        on its way to the queue)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.get(channel, queue)
            if m is not None:
                return m
            assert time.monotonic() < deadline, f"queue {queue} stayed empty for {timeout}s"
            time.sleep(0.05)
