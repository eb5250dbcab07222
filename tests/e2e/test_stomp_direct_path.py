"""The direct delivery path: topic deliveries go from the publisher straight into each
subscriber's outbox. Each subscription still sees its messages in publish order, without
gaps, and one client that stops reading in the middle of a burst gets its destination's
policy while every other subscriber keeps receiving everything."""

from __future__ import annotations

import socket
import threading
import time

from stomp_util import RawStomp, stomp_service

BIG = "x" * 2048


def _service():
    return stomp_service(
        subscription_queue=64,
        policy=[
            {"destination": "/topic/slow.", "policy": "disconnect", "queue": 64},
            {"destination": "/topic/lossy.", "policy": "drop-oldest", "queue": 64},
        ],
    )


class Reader(threading.Thread):
    """Reads MESSAGE frames for one session on its own thread, so that many subscribers
    drain their sockets while the publisher floods."""

    def __init__(self, session: RawStomp, expect: int, timeout: float = 30.0):
        super().__init__(daemon=True)
        self.s, self.expect, self.timeout = session, expect, timeout
        self.got: list[tuple[str, int]] = []
        self.error: str | None = None

    def run(self):
        deadline = time.monotonic() + self.timeout
        try:
            while len(self.got) < self.expect and time.monotonic() < deadline:
                f = self.s.recv(timeout=max(0.1, deadline - time.monotonic()))
                if f.command == "MESSAGE":
                    self.got.append((f.headers["subscription"], int(f.headers["seq"])))
        except AssertionError as e:
            self.error = str(e)


def _subscriber(gw, subs: dict[str, str]) -> RawStomp:
    s = RawStomp(gw)
    s.connect()
    for sid, dest in subs.items():
        s.receipt("SUBSCRIBE", {"id": sid, "destination": dest}, rid=f"sub-{sid}")
    return s


def _publish(gw, plan, body="p", pace=0):
    """plan: (destination, seq) pairs, sent in that order from one session; with `pace`,
    a 5 ms pause after every `pace` messages, so that readers written in Python keep up."""
    with RawStomp(gw) as p:
        p.connect()
        for i, (dest, seq) in enumerate(plan):
            p.send("SEND", {"destination": dest, "seq": str(seq)}, body)
            if pace and i % pace == pace - 1:
                time.sleep(0.005)
        p.receipt("SEND", {"destination": "/topic/sync.nobody"})


def test_each_subscription_sees_its_messages_in_publish_order(gateway_factory):
    gw = gateway_factory(services=[stomp_service(subscription_queue=4096)])
    n = 1500
    # Three topics interleaved by one publisher; subscribers hold one, two or all three
    # (by name and by wildcard) on one session.
    plan = [(f"/topic/order.{'abc'[i % 3]}", i) for i in range(n)]
    layouts = [
        {"a": "/topic/order.a"},
        {"a": "/topic/order.a", "b": "/topic/order.b"},
        {"all": "/topic/order.*"},
        {"all": "/topic/order.*", "c": "/topic/order.c"},
    ] * 5
    readers = []
    for subs in layouts:
        expect = sum(n if d.endswith("*") else n // 3 for d in subs.values())
        readers.append((subs, Reader(_subscriber(gw, subs), expect)))
    for _, r in readers:
        r.start()
    _publish(gw, plan)
    for subs, r in readers:
        r.join()
        assert r.error is None, r.error
        for sid, dest in subs.items():
            want = [seq for d, seq in plan if dest.endswith("*") or d == dest]
            seen = [seq for s, seq in r.got if s == sid]
            assert seen == want, (f"subscription {sid} on {dest}: {len(seen)} of {len(want)}, "
                                  f"first difference at {next((i for i, (x, y) in enumerate(zip(seen, want)) if x != y), None)}")


def _stall_mid_burst(gw, destination):
    """A subscriber that reads the first messages of a burst and then stops reading: the
    websockets client buffers `max_queue` messages, then leaves the socket unread. Its
    receive buffer is small, so a few hundred KiB of backlog reach the gateway's queues
    whatever the machine's TCP autotuning would allow."""
    s = RawStomp(gw)
    s.ws.close()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.port))
    s.ws = gw.ws("/ws", subprotocols=["v12.stomp"], max_queue=2, sock=sock)
    s.connect()
    s.receipt("SUBSCRIBE", {"id": "s", "destination": destination})
    return s


def _healthy(gw, destination, n):
    readers = [Reader(_subscriber(gw, {"h": destination}), n) for _ in range(4)]
    for r in readers:
        r.start()
    return readers


def _assert_all_received(readers, n):
    for r in readers:
        r.join()
        assert r.error is None, r.error
        assert [seq for _, seq in r.got] == list(range(n)), f"{len(r.got)} of {n}, or out of order"


def test_disconnect_applies_to_the_client_stalled_mid_burst_only(gateway_factory):
    gw = gateway_factory(services=[_service()])
    dest, n = "/topic/slow.burst", 600
    stalled = _stall_mid_burst(gw, dest)
    readers = _healthy(gw, dest, n)
    # The first part of the burst (small, so that it fits the socket buffers while the
    # client reads it) reaches everyone.
    _publish(gw, [(dest, i) for i in range(20)])
    for i in range(20):
        f = stalled.recv(timeout=5)
        assert f.command == "MESSAGE" and f.headers["seq"] == str(i), f
    started = time.monotonic()
    _publish(gw, [(dest, i) for i in range(20, n)], BIG, pace=10)
    published_in = time.monotonic() - started
    _assert_all_received(readers, n)
    # The publisher was never held back by the stalled client (a publisher waiting on the
    # stalled socket would never finish).
    assert published_in < 10, published_in
    err = stalled.expect_error(timeout=10)
    assert err.headers["message"] == "slow consumer", err
    assert stalled.close_code == 1008, stalled.close_code


def test_drop_oldest_applies_to_the_client_stalled_mid_burst_only(gateway_factory):
    gw = gateway_factory(services=[_service()])
    dest, n = "/topic/lossy.burst", 1000
    stalled = _stall_mid_burst(gw, dest)
    readers = _healthy(gw, dest, n)
    _publish(gw, [(dest, i) for i in range(20)])
    for i in range(20):
        f = stalled.recv(timeout=5)
        assert f.command == "MESSAGE" and f.headers["seq"] == str(i), f
    _publish(gw, [(dest, i) for i in range(20, n)], BIG, pace=10)
    _assert_all_received(readers, n)
    # Now the stalled client reads again: it lost the oldest, kept order, got the newest.
    seqs = []
    while not seqs or seqs[-1] != n - 1:
        f = stalled.recv(timeout=10)
        if f.command == "MESSAGE":
            seqs.append(int(f.headers["seq"]))
    assert seqs == sorted(seqs), "order kept"
    assert seqs[0] >= 20 and len(seqs) < n - 20, f"{len(seqs)} delivered: some must be dropped"
    assert gw.wait_metric("gateway_stomp_slow_consumer_events_total", lambda v: (v or 0) >= 1,
                          policy="drop-oldest") >= 1
