"""STOMP applications for fault tests: a publisher and a queue consumer that behave like real
apps — each on its own thread, reconnecting and resubscribing after an ERROR or a dropped
connection — and record what they saw end to end:

- `Publisher.receipted`: the sequence numbers the gateway sent a RECEIPT for (the broker
  has them), sent one at a time as persistent messages with an `x-seq` header;
- `Consumer.received`: every `x-seq` delivered (redeliveries included once), ACKed
  `client-individual` style, one message behind, so a consumer nearly always holds an
  unacknowledged message — the case a broker outage must report rather than hide.

`gw` is a callable returning the gateway to (re)connect to, so a test can replace it.
"""

from __future__ import annotations

import threading
import time

from stomp_util import Frame, RawStomp


class App(threading.Thread):
    def __init__(self, gw, name: str, login: dict | None = None):
        super().__init__(name=name, daemon=True)
        self.gw = gw
        self.login = login or {}
        self.stop = threading.Event()
        self.errors: list[str] = []  # ERROR frames' message headers, in order
        self.drops = 0  # connections lost without an ERROR
        self.sessions = 0  # STOMP sessions established
        self.failure: BaseException | None = None  # a bug in the app itself

    def session(self) -> RawStomp | None:
        """A connected session, retrying until the gateway takes one (None when stopped)."""
        while not self.stop.is_set():
            try:
                c = RawStomp(self.gw())
            except Exception:  # refused (503), not listening, handshake timeout
                time.sleep(0.2)
                continue
            try:
                c.send("CONNECT", {"accept-version": "1.2", "host": "/", **self.login})
                f = c.recv(15)
                if f.command == "CONNECTED":
                    self.sessions += 1
                    return c
                self.errors.append(f.headers.get("message", f.text))
            except AssertionError:
                self.drops += 1
            c.ws.close()
            time.sleep(0.2)
        return None

    def ended(self, c: RawStomp, f: Frame | None) -> None:
        """The session is over: ERROR `f`, or dropped when `f` is None."""
        if f is None:
            f = c.unread_error()
        if f is None:
            self.drops += 1
        else:
            self.errors.append(f.headers.get("message", f.text))
        c.ws.close()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                c = self.session()
                if c is None:
                    return
                self.serve(c)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.failure = e

    def serve(self, c: RawStomp) -> None:
        raise NotImplementedError

    def finish(self, timeout: float = 20) -> None:
        self.stop.set()
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not stop"
        if self.failure is not None:
            raise AssertionError(f"{self.name} failed: {self.failure!r}") from self.failure


class Publisher(App):
    def __init__(self, gw, destination: str, name: str = "publisher", pause: float = 0.01,
                 first: int = 0, **kw):
        super().__init__(gw, name, **kw)
        self.destination = destination
        self.pause = pause
        self.next_seq = first  # publishers sharing a queue count from far apart
        self.receipted: set[int] = set()
        self.slowest_answer = 0.0  # seconds from SEND to its RECEIPT or ERROR

    def serve(self, c: RawStomp) -> None:
        while not self.stop.is_set():
            seq = self.next_seq
            self.next_seq += 1
            t0 = time.monotonic()
            try:
                c.send("SEND", {"destination": self.destination, "persistent": "true",
                                "x-seq": str(seq), "receipt": f"r{seq}"}, f"m{seq}")
                f = c.recv(30)
            except AssertionError:
                # Dropped (or a send on a closing socket): no receipt, no promise.
                self.ended(c, None)
                return
            except Exception:
                self.ended(c, None)
                return
            self.slowest_answer = max(self.slowest_answer, time.monotonic() - t0)
            if f.command == "RECEIPT" and f.headers.get("receipt-id") == f"r{seq}":
                self.receipted.add(seq)
            elif f.command == "ERROR":
                self.ended(c, f)
                return
            else:
                raise AssertionError(f"publisher got {f}")
            time.sleep(self.pause)
        c.ws.close()


class Consumer(App):
    def __init__(self, gw, destination: str, name: str = "consumer", prefetch: int = 20,
                 ack: bool = True, **kw):
        super().__init__(gw, name, **kw)
        self.destination = destination
        self.prefetch = prefetch
        self.ack = ack  # False: never acknowledge (client mode), hold everything
        self.received: set[int] = set()
        self.redelivered: set[int] = set()
        self.deliveries = 0
        self.subscribed = threading.Event()

    def serve(self, c: RawStomp) -> None:
        mode = "client-individual" if self.ack else "client"
        try:
            c.receipt("SUBSCRIBE", {"destination": self.destination, "id": "q", "ack": mode,
                                    "prefetch-count": str(self.prefetch)}, rid="subscribed")
        except AssertionError:
            self.ended(c, None)
            return
        self.subscribed.set()
        held = None  # the ack id of the newest message, acknowledged when the next comes
        while not self.stop.is_set():
            try:
                f = c.recv(0.5)
            except AssertionError:
                if c.close_code is None:
                    continue  # quiet
                self.ended(c, None)
                return
            if f.command == "ERROR":
                self.ended(c, f)
                return
            assert f.command == "MESSAGE", f
            seq = int(f.headers["x-seq"])
            self.deliveries += 1
            if seq in self.received or f.headers.get("redelivered") == "true":
                self.redelivered.add(seq)
            self.received.add(seq)
            if not self.ack:
                continue
            if held is not None:
                try:
                    c.send("ACK", {"id": held})
                except Exception:
                    self.ended(c, None)
                    return
            held = f.headers["ack"]
        c.ws.close()


def wait_for(pred, timeout: float, what: str, period: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(period)
