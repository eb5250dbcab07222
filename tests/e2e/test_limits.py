"""Connection limits, handshake timeout, idle timeout."""

import time

import pytest

import wsraw


def _echo_ok(c, msg="still here"):
    c.send(msg)
    assert c.recv(timeout=5) == msg


def _retry_accept(g, timeout=5.0):
    """A freed slot may take a moment to be released: retry the handshake."""
    from websockets.exceptions import InvalidStatus
    deadline = time.monotonic() + timeout
    while True:
        try:
            return g.ws()
        except InvalidStatus:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_per_ip_limit_429(gateway_factory):
    g = gateway_factory(limits={"max_connections_per_ip": 2})
    a, b = g.ws(), g.ws()
    try:
        r = g.refused()
        assert r.status_code == 429
        _echo_ok(a)
        _echo_ok(b)
        assert g.wait_metric("gateway_limit_trips_total", lambda v: (v or 0) >= 1, limit="per_ip") == 1
        assert (g.metric("gateway_handshakes_total", result="limit") or 0) >= 1
        a.close()
        with _retry_accept(g) as c:
            _echo_ok(c)
    finally:
        a.close()
        b.close()


def test_global_limit_503(gateway_factory):
    g = gateway_factory(limits={"max_connections": 3})
    conns = [g.ws() for _ in range(3)]
    try:
        r = g.refused()
        assert r.status_code == 503
        for c in conns:
            _echo_ok(c)
        assert g.wait_metric("gateway_limit_trips_total", lambda v: (v or 0) >= 1, limit="max_connections") >= 1
        conns[0].close()
        with _retry_accept(g) as c:
            _echo_ok(c)
    finally:
        for c in conns:
            c.close()


# --- handshake timeout -------------------------------------------------------------

HS_TIMEOUT = 1.0


@pytest.fixture
def hg(gateway_factory):
    return gateway_factory(limits={"handshake_timeout": f"{HS_TIMEOUT:g}s"})


def _assert_closed_after_timeout(conn, t0, also_dribble=None):
    deadline = time.monotonic() + HS_TIMEOUT + 3
    data = b""
    while True:
        try:
            data += conn.wait_eof(timeout=0.2)
            break
        except TimeoutError:
            pass
        if also_dribble:
            try:
                also_dribble()
            except OSError:
                break  # reset by the server
        assert time.monotonic() < deadline, f"socket still open {HS_TIMEOUT + 3}s after connect"
    elapsed = time.monotonic() - t0
    assert elapsed >= HS_TIMEOUT * 0.8, f"closed after {elapsed:.2f}s, before the {HS_TIMEOUT}s timeout"
    assert elapsed <= HS_TIMEOUT + 3
    # Either closed silently or with an error status (408/400), never upgraded.
    assert data == b"" or data.startswith(b"HTTP/1.1 4"), data[:100]


def test_handshake_timeout_silent_client(hg):
    t0 = time.monotonic()
    with wsraw.connect(hg.host, hg.port) as c:
        _assert_closed_after_timeout(c, t0)


def test_handshake_timeout_partial_request_line(hg):
    t0 = time.monotonic()
    with wsraw.connect(hg.host, hg.port) as c:
        c.send(b"GET /echo HTT")
        _assert_closed_after_timeout(c, t0)


def test_handshake_timeout_slow_headers(hg):
    """Bytes keep arriving, but the whole head does not within the timeout."""
    req = wsraw.upgrade_request(f"{hg.host}:{hg.port}", "/echo", key=wsraw.new_key())
    t0 = time.monotonic()
    with wsraw.connect(hg.host, hg.port) as c:
        pos = [0]

        def dribble():
            if pos[0] < len(req) - 4:
                c.send(req[pos[0]:pos[0] + 1])
                pos[0] += 1

        _assert_closed_after_timeout(c, t0, also_dribble=dribble)
        assert pos[0] < len(req) - 4


def test_handshake_timeout_metric_and_still_serving(hg):
    socks = [wsraw.connect(hg.host, hg.port) for _ in range(3)]
    try:
        for s in socks:
            s.wait_eof(timeout=HS_TIMEOUT + 3)
    finally:
        for s in socks:
            s.close()
    v = hg.wait_metric("gateway_limit_trips_total", lambda v: (v or 0) >= 3, limit="handshake_timeout")
    assert v == 3
    with hg.ws() as c:
        _echo_ok(c)


def test_completed_handshake_not_cut_by_handshake_timeout(hg):
    with hg.ws() as c:
        time.sleep(HS_TIMEOUT + 1)
        _echo_ok(c)


# --- idle timeout ----------------------------------------------------------------

IDLE = 1.0


@pytest.fixture
def ig(gateway_factory):
    return gateway_factory(limits={"idle_timeout": f"{IDLE:g}s"})


def test_idle_client_pinged_then_closed_1001(ig):
    """A client that never sends anything (not even pongs) gets a ping after
    idle_timeout, then a close 1001 after another idle_timeout."""
    with wsraw.open_ws(ig.host, ig.port, "/echo") as c:
        t0 = time.monotonic()
        pings = []
        code = None
        while True:
            remaining = t0 + 4 * IDLE + 3 - time.monotonic()
            assert remaining > 0, f"no close within {4 * IDLE + 3}s; pings at {pings}"
            try:
                f = c.read_frame(timeout=remaining)
            except wsraw.Closed:
                break
            if f.opcode == wsraw.OP_PING:
                pings.append(round(time.monotonic() - t0, 2))
            elif f.opcode == wsraw.OP_CLOSE:
                code = f.close_code
                break
        closed_at = time.monotonic() - t0
        assert pings, "gateway never pinged the idle client"
        assert IDLE * 0.8 <= pings[0] <= IDLE + 1.5, pings
        assert code == 1001, f"expected close 1001, got {code}"
        assert 2 * IDLE * 0.8 <= closed_at <= 2 * IDLE + 2.5, closed_at
        # We never answer the close: the gateway must still drop the TCP connection.
        c.wait_eof(timeout=10)
    assert ig.wait_metric("gateway_limit_trips_total", lambda v: (v or 0) >= 1, limit="idle_timeout") == 1


def test_client_answering_pings_stays_open(ig):
    """websockets answers pings by itself: pongs are traffic, no idle close."""
    with ig.ws() as c:
        time.sleep(3.5 * IDLE)
        _echo_ok(c)
    assert (ig.metric("gateway_limit_trips_total", limit="idle_timeout") or 0) == 0


def test_chatty_client_stays_open(ig):
    with wsraw.open_ws(ig.host, ig.port, "/echo") as c:
        end = time.monotonic() + 3.5 * IDLE
        while time.monotonic() < end:
            c.send_frame(wsraw.OP_TEXT, b"tick")
            while True:
                f = c.read_frame(timeout=3)
                if f.opcode == wsraw.OP_PING:  # answer if any arrives anyway
                    c.send_frame(wsraw.OP_PONG, f.payload)
                    continue
                assert (f.opcode, f.payload) == (wsraw.OP_TEXT, b"tick")
                break
            time.sleep(IDLE / 3)


# --- client IP behind a proxy ---------------------------------------------------------

def test_per_ip_limit_uses_forwarded_ip_from_trusted_proxy(gateway_factory):
    g = gateway_factory(limits={"max_connections_per_ip": 1},
                        server={"trusted_proxies": ["127.0.0.1/32"]})
    xff = lambda ip: {"X-Forwarded-For": ip}  # noqa: E731
    a = g.ws(additional_headers=xff("203.0.113.7"))
    b = g.ws(additional_headers={"Forwarded": "for=198.51.100.9"})
    try:
        assert g.refused(additional_headers=xff("203.0.113.7")).status_code == 429
        assert g.refused(additional_headers=xff("10.9.9.9, 203.0.113.7")).status_code == 429  # last hop counts
        _echo_ok(a)
        _echo_ok(b)
    finally:
        a.close()
        b.close()


def test_forwarded_ip_ignored_from_untrusted_peer(gateway_factory):
    g = gateway_factory(limits={"max_connections_per_ip": 1})  # trusted_proxies = []
    a = g.ws(additional_headers={"X-Forwarded-For": "203.0.113.7"})
    try:
        # A different claimed IP does not buy a second slot: the peer is 127.0.0.1.
        assert g.refused(additional_headers={"X-Forwarded-For": "203.0.113.8"}).status_code == 429
        _echo_ok(a)
    finally:
        a.close()


# --- slow consumer -------------------------------------------------------------------

def test_slow_consumer_backpressure_bounded_memory(gateway_factory):
    """A client that sends a lot and reads nothing for a while: the echo bridge's
    outgoing queue (outgoing_queue messages) fills, the gateway stops reading, TCP
    pushes back on the sender. Gateway memory stays bounded, nothing is lost.
    (Raw sockets: a sender thread and a reader that share no lock.)"""
    import threading
    g = gateway_factory(limits={"outgoing_queue": 64})
    n, size = 600, 32 * 1024  # ~19 MiB in total
    msgs = [i.to_bytes(4, "big") + bytes([i % 251]) * (size - 4) for i in range(n)]
    frames = [wsraw.build_frame(wsraw.OP_BINARY, m) for m in msgs]
    rss0 = g.rss_kb()
    with wsraw.open_ws(g.host, g.port, "/echo") as c:
        c.sock.settimeout(60)
        sent = [0]
        errors = []

        def sender():
            try:
                for f in frames:
                    c.sock.sendall(f)
                    sent[0] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        time.sleep(1.5)
        grown_mb = (g.rss_kb() - rss0) / 1024
        stalled_at = sent[0]
        got = []
        for _ in range(n):
            f = c.read_frame(timeout=15)
            assert f.opcode == wsraw.OP_BINARY, f
            got.append(f.payload)
        t.join(10)
    assert not errors, errors
    print(f"sender stalled after {stalled_at}/{n} messages; gateway RSS +{grown_mb:.1f} MB")
    assert stalled_at < n, "all 19 MiB were accepted without the client reading: no backpressure"
    assert grown_mb < 50, f"gateway RSS grew by {grown_mb:.1f} MB with a slow consumer"
    assert [m[:4] for m in got] == [m[:4] for m in msgs], "messages lost or reordered"
    assert got == msgs
