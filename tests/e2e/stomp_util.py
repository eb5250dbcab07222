"""STOMP helpers for the end-to-end tests: a `[[service]]` table for the STOMP bridge, a raw
STOMP peer over the `websockets` client (hand-written frames, good or bad), and a
stomp.py listener that queues what arrives.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed


def stomp_service(**settings) -> dict:
    """The STOMP bridge at /ws for non-browser clients (no demo feed unless asked)."""
    return {
        "name": "stomp",
        "path": "/ws",
        "bridge": "stomp",
        "allow_missing_origin": True,
        "settings": settings,
    }


@dataclass
class Frame:
    command: str
    headers: dict = field(default_factory=dict)
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def encode(command: str, headers: dict | None = None, body: bytes | str = b"") -> bytes:
    if isinstance(body, str):
        body = body.encode()
    head = command + "\n" + "".join(f"{k}:{v}\n" for k, v in (headers or {}).items()) + "\n"
    return head.encode() + body + b"\0"


def parse(data: bytes) -> list[Frame]:
    """Every frame in one WebSocket message (heart-beat EOLs skipped)."""
    frames = []
    i = 0
    while i < len(data):
        if data[i] in (0x0A, 0x0D):
            i += 1
            continue
        end = data.index(b"\n\n", i)
        lines = [ln.rstrip("\r") for ln in data[i:end].decode().split("\n")]
        headers: dict = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers.setdefault(k, v)
        start = end + 2
        if "content-length" in headers:
            stop = start + int(headers["content-length"])
        else:
            stop = data.index(b"\0", start)
        frames.append(Frame(lines[0], headers, data[start:stop]))
        i = stop + 1
    return frames


class RawStomp:
    """A STOMP session driven frame by frame over a `websockets` connection."""

    def __init__(self, gw, subprotocol: str = "v12.stomp", path: str = "/ws", **ws_kw):
        self.ws = gw.ws(path, subprotocols=[subprotocol], **ws_kw)
        self.pending: list[Frame] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.ws.close()

    def send_raw(self, data: bytes | str, binary: bool | None = None) -> None:
        if isinstance(data, bytes) and not binary:
            try:
                data = data.decode()
            except UnicodeDecodeError:
                pass
        self.ws.send(data)

    def send(self, command: str, headers: dict | None = None, body: bytes | str = b"") -> None:
        self.send_raw(encode(command, headers, body))

    def connect(self, version: str = "1.2", **headers) -> Frame:
        self.send("CONNECT", {"accept-version": version, "host": "localhost", **headers})
        f = self.recv()
        assert f.command == "CONNECTED", f"expected CONNECTED, got {f}"
        return f

    def recv(self, timeout: float = 3.0) -> Frame:
        """The next frame; AssertionError if none arrives in time or the connection closes."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no frame within {timeout}s")
            try:
                msg = self.ws.recv(timeout=left)
            except TimeoutError:
                continue
            except ConnectionClosed as e:
                self._closed(e)
                raise AssertionError(f"connection closed ({self.close_code}) while waiting for a frame")
            self.pending.extend(parse(msg.encode() if isinstance(msg, str) else msg))
        return self.pending.pop(0)

    def _closed(self, e: ConnectionClosed) -> None:
        if e.rcvd is not None:
            self.close_code, self.close_reason = e.rcvd.code, e.rcvd.reason
        else:
            self.close_code = 1006

    def unread_error(self) -> Frame | None:
        """An ERROR frame that arrived but was not read yet. A send fails as soon as the
        peer's close frame is in, even when an ERROR sits before it in the receive queue;
        an event-driven client (stomp.js, stomp.py) would have seen that ERROR."""
        while True:
            if self.pending:
                f = self.pending.pop(0)
                if f.command == "ERROR":
                    return f
                continue
            try:
                msg = self.ws.recv(timeout=0.5)
            except (TimeoutError, ConnectionClosed):
                return None
            self.pending.extend(parse(msg.encode() if isinstance(msg, str) else msg))

    def receipt(self, command: str, headers: dict | None = None, body: bytes | str = b"",
                rid: str = "sync") -> Frame:
        """Send with a receipt header and wait for that RECEIPT (frames before it are kept)."""
        self.send(command, {**(headers or {}), "receipt": rid}, body)
        seen = []
        while True:
            f = self.recv()
            if f.command == "RECEIPT" and f.headers.get("receipt-id") == rid:
                self.pending[:0] = seen
                return f
            seen.append(f)

    def expect_error(self, timeout: float = 3.0) -> Frame:
        """The ERROR frame that ends the session, and then the WebSocket close (its code is
        kept in `close_code`)."""
        f = self.recv(timeout)
        while f.command in ("CONNECTED", "MESSAGE", "RECEIPT"):
            f = self.recv(timeout)
        assert f.command == "ERROR", f"expected ERROR, got {f}"
        deadline = time.monotonic() + timeout
        while self.close_code is None and time.monotonic() < deadline:
            try:
                self.ws.recv(timeout=deadline - time.monotonic())
            except TimeoutError:
                break
            except ConnectionClosed as e:
                self._closed(e)
        assert self.close_code is not None, "the connection was not closed after the ERROR frame"
        return f


class Listener:
    """A stomp.py listener (duck-typed) that queues messages, receipts and errors."""

    def __init__(self):
        self.messages: queue.Queue = queue.Queue()
        self.receipts: queue.Queue = queue.Queue()
        self.errors: queue.Queue = queue.Queue()
        self.connected: queue.Queue = queue.Queue()
        self.disconnected = False

    # stomp.py callbacks
    def on_connecting(self, host_and_port): pass
    def on_connected(self, frame): self.connected.put(frame)
    def on_disconnecting(self): pass
    def on_disconnected(self): self.disconnected = True
    def on_heartbeat_timeout(self): pass
    def on_before_message(self, frame): pass
    def on_message(self, frame): self.messages.put(frame)
    def on_receipt(self, frame): self.receipts.put(frame.headers.get("receipt-id"))
    def on_error(self, frame): self.errors.put(frame)
    def on_send(self, frame): pass
    def on_heartbeat(self): pass
    def on_receiver_loop_completed(self, frame): pass

    def message(self, timeout: float = 3.0):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s") from None

    def no_message(self, wait: float = 0.3) -> None:
        try:
            m = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {m.headers} {m.body!r}")

    def receipt(self, rid: str, timeout: float = 3.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self.receipts.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no RECEIPT {rid} within {timeout}s") from None
            if got == rid:
                return
