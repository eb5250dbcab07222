"""Hand-built WebSocket and HTTP traffic over raw sockets.

Client libraries refuse to send malformed requests or frames, so the bad-input and
idle tests build them here: an HTTP/1.1 upgrade request, RFC 6455 frames (masked or
not, with any announced length), and a reader for the server's frames.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


# --- frames -------------------------------------------------------------------

def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    announced_len: int | None = None,
) -> bytes:
    """One frame. `announced_len` puts a length in the header that differs from
    the payload actually appended (for "huge frame" tests)."""
    n = len(payload) if announced_len is None else announced_len
    b0 = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


def mask_bytes(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    # XOR through big integers: fast enough for megabytes.
    reps = (len(data) + 3) // 4
    k = int.from_bytes((key * reps)[: len(data)], "big")
    return (int.from_bytes(data, "big") ^ k).to_bytes(len(data), "big")


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    masked: bool = False
    rsv: int = 0  # RSV1..3 as bits 2..0 (4: RSV1, a compressed message)

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE:
            return None
        if len(self.payload) >= 2:
            return struct.unpack("!H", self.payload[:2])[0]
        return 1005


class Closed(Exception):
    """The peer closed the TCP connection (EOF or reset) before a whole frame."""


@dataclass
class RawConn:
    """A socket plus its read buffer (bytes already received past the HTTP head)."""

    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)
    status: int = 0
    headers: dict = field(default_factory=dict)
    body: bytes = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes = b"", **kw) -> None:
        self.sock.sendall(build_frame(opcode, payload, **kw))

    def _recv(self, left: float) -> bytes | None:
        """One recv within `left` seconds; None on timeout. Waits with select, so
        the socket's own timeout (used by a sender in another thread) is untouched."""
        r, _, _ = select.select([self.sock], [], [], max(0.0, left))
        if not r:
            return None
        return self.sock.recv(262144)

    def _fill(self, n: int, deadline: float) -> None:
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame in time")
            try:
                chunk = self._recv(left)
            except (ConnectionResetError, BrokenPipeError) as e:
                raise Closed(str(e)) from e
            if chunk is None:
                raise TimeoutError("no frame in time")
            if not chunk:
                raise Closed("EOF")
            self.buf += chunk

    def read_frame(self, timeout: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        off = 2
        if n == 126:
            self._fill(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            self._fill(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            self._fill(off + 4, deadline)
            key = bytes(self.buf[off : off + 4])
            off += 4
        self._fill(off + n, deadline)
        payload = bytes(self.buf[off : off + n])
        del self.buf[: off + n]
        if masked:
            payload = mask_bytes(payload, key)
        return Frame(bool(b0 & 0x80), b0 & 0xF, payload, masked, (b0 >> 4) & 0x7)

    def wait_close(self, timeout: float = 5.0) -> tuple[int | None, list[Frame]]:
        """Read until a close frame or the end of the connection.

        Returns (close code or None if the connection was dropped without a close
        frame, frames seen before). Raises TimeoutError if the connection stays
        open without closing."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            try:
                f = self.read_frame(max(0.0, deadline - time.monotonic()))
            except Closed:
                return None, seen
            if f.opcode == OP_CLOSE:
                return f.close_code, seen
            seen.append(f)

    def wait_eof(self, timeout: float = 5.0) -> bytes:
        """Read until the peer closes the TCP connection; return everything read.
        Raises TimeoutError if it stays open."""
        deadline = time.monotonic() + timeout
        data = bytearray(self.buf)
        self.buf.clear()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"connection still open after {timeout}s; got {bytes(data[:200])!r}")
            try:
                chunk = self._recv(left)
            except (ConnectionResetError, BrokenPipeError):
                return bytes(data)
            if chunk is None:
                continue
            if not chunk:
                return bytes(data)
            data += chunk

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- HTTP ------------------------------------------------------------------------

def upgrade_request(
    host: str,
    path: str = "/echo",
    *,
    key: str | None = None,
    protocols: list[str] | None = None,
    version: str | None = "13",
    extra: list[tuple[str, str]] | None = None,
) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
    ]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if protocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(protocols)}")
    for k, v in extra or []:
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response_head(conn: RawConn, timeout: float = 5.0) -> None:
    """Parse an HTTP response head into conn.status/headers; leftover bytes stay
    in conn.buf. For non-101 responses also reads a Content-Length body."""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in conn.buf:
        conn._fill(len(conn.buf) + 1, deadline)
    head, _, rest = bytes(conn.buf).partition(b"\r\n\r\n")
    conn.buf = bytearray(rest)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    conn.status = int(parts[1])
    hdrs: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        hdrs[k] = (hdrs[k] + ", " + v.strip()) if k in hdrs else v.strip()
    conn.headers = hdrs
    if conn.status != 101 and "content-length" in hdrs:
        n = int(hdrs["content-length"])
        try:
            conn._fill(n, deadline)
        except (Closed, TimeoutError):
            pass
        conn.body = bytes(conn.buf[:n])
        del conn.buf[:n]


def connect(host: str, port: int, timeout: float = 5.0) -> RawConn:
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return RawConn(s)


def open_ws(
    host: str,
    port: int,
    path: str = "/echo",
    *,
    protocols: list[str] | None = None,
    extra: list[tuple[str, str]] | None = None,
    timeout: float = 5.0,
) -> RawConn:
    """Raw WebSocket handshake; asserts 101 and a correct Sec-WebSocket-Accept."""
    conn = connect(host, port, timeout)
    key = new_key()
    conn.send(upgrade_request(f"{host}:{port}", path, key=key, protocols=protocols, extra=extra))
    read_response_head(conn, timeout)
    assert conn.status == 101, f"handshake got HTTP {conn.status}: {conn.body!r}"
    assert conn.headers.get("sec-websocket-accept") == accept_for(key)
    return conn
