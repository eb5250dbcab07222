"""SIGTERM: readiness goes 503, sessions get close 1001, exit within drain_timeout."""

import http.client
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed

import wsraw

DRAIN = 6.0


class ReadyProbe:
    """/readyz on a keep-alive connection opened before SIGTERM (as a load
    balancer holds one), on a new connection to the main listener, and on the
    admin listener. Each answer is a status, or None when not answering."""

    def __init__(self, g):
        self.g = g
        self.ka = http.client.HTTPConnection(g.host, g.port, timeout=1)
        assert self._get(self.ka) == 200

    @staticmethod
    def _get(conn):
        try:
            conn.request("GET", "/readyz")
            r = conn.getresponse()
            r.read()
            return r.status
        except (OSError, http.client.HTTPException):
            conn.close()
            return None

    def poll(self) -> list:
        out = [self._get(self.ka)]
        for admin in (False, True):
            try:
                out.append(self.g.http_get("/readyz", admin=admin, timeout=0.5)[0])
            except (OSError, http.client.HTTPException):
                out.append(None)
        return out


def test_health_and_ready(gw):
    assert gw.http_get("/healthz")[0] == 200
    assert gw.http_get("/readyz")[0] == 200


def test_sigterm_drain(gateway_factory):
    g = gateway_factory(limits={"drain_timeout": f"{DRAIN:g}s"})
    probe = ReadyProbe(g)

    # A well-behaved client (answers the close handshake) ...
    polite = g.ws()
    polite.send("pre")
    assert polite.recv(timeout=5) == "pre"
    # ... and one that holds: raw socket, reads nothing until we look.
    holder = wsraw.open_ws(g.host, g.port, "/echo")

    polite_result = {}

    def watch():
        try:
            while True:
                polite.recv(timeout=DRAIN + 5)
        except ConnectionClosed as e:
            polite_result["code"] = e.rcvd.code if e.rcvd else None
            polite_result["t"] = time.monotonic()
        except TimeoutError:
            polite_result["code"] = "timeout"

    t = threading.Thread(target=watch, daemon=True)
    t.start()

    t0 = time.monotonic()
    g.terminate()

    # While draining: readiness is 503 (on whichever listener still answers),
    # never 200 once the signal has been handled (allow it 100 ms for that).
    time.sleep(0.1)
    seen = []
    while time.monotonic() - t0 < 1.0 and g.alive():
        seen.append(probe.poll())
        time.sleep(0.05)
    flat = [s for trio in seen for s in trio]
    assert 200 not in flat, f"/readyz answered 200 after SIGTERM (keep-alive, new, admin): {seen}"
    assert 503 in flat, f"/readyz never answered 503 during drain (keep-alive, new, admin): {seen}"

    # New WebSocket handshakes are not accepted while draining.
    try:
        with wsraw.connect(g.host, g.port, timeout=2) as c:
            c.send(wsraw.upgrade_request(f"{g.host}:{g.port}", "/echo", key=wsraw.new_key()))
            try:
                wsraw.read_response_head(c, timeout=3)
                assert c.status == 503, f"handshake during drain got {c.status}"
            except wsraw.Closed:
                pass
    except ConnectionRefusedError:
        pass

    t.join(DRAIN + 5)
    assert polite_result.get("code") == 1001, polite_result

    code, _ = holder.wait_close(timeout=DRAIN + 2)
    assert code == 1001, f"holding session got close {code}"
    holder.close()

    rc = g.wait_exit(DRAIN + 3)
    elapsed = time.monotonic() - t0
    assert rc is not None, f"gateway still running {DRAIN + 3:.0f}s after SIGTERM"
    assert elapsed <= DRAIN + 1.5, f"exited after {elapsed:.1f}s, drain_timeout is {DRAIN}s"
    assert rc == 0, f"exit code {rc} after SIGTERM"


def test_sigterm_idle_gateway_exits(gw):
    """No sessions: exits with 0 within drain_timeout (3s in the base config)."""
    t0 = time.monotonic()
    gw.terminate()
    rc = gw.wait_exit(10)
    assert rc is not None, "still running 10s after SIGTERM"
    assert time.monotonic() - t0 <= 3.0 + 1.0
    assert rc == 0
