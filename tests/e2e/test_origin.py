"""Origin policy: exact, wildcard pattern, same-origin, refused, missing."""

import pytest

from gwproc import echo_service


@pytest.fixture
def og(gateway_factory):
    return gateway_factory(services=[
        echo_service(
            name="guarded",
            path="/guarded",
            allowed_origins=["https://a.example.com", "https://*.example.org"],
            allow_missing_origin=False,
        ),
        echo_service(name="open", path="/open"),  # allowed_origins = [], missing allowed
    ])


def _echo_ok(c):
    c.send("o")
    assert c.recv(timeout=5) == "o"


@pytest.mark.parametrize("origin", ["https://a.example.com", "https://x.example.org"])
def test_allowed_origins(og, origin):
    with og.ws("/guarded", origin=origin) as c:
        _echo_ok(c)


def test_same_origin_always_allowed(og):
    with og.ws("/guarded", origin=f"http://{og.host}:{og.port}") as c:
        _echo_ok(c)


@pytest.mark.parametrize("origin", [
    "https://evil.example.net",
    "https://a.example.com.evil.net",
    "https://example.org.evil.net",
    "http://a.example.com",          # scheme differs
    "https://b.example.com",
    "null",
])
def test_refused_origin_403(og, origin):
    r = og.refused("/guarded", origin=origin)
    assert r.status_code == 403


def test_missing_origin_refused_when_not_allowed(og):
    r = og.refused("/guarded")  # websockets sends no Origin unless told
    assert r.status_code == 403
    # ... but accepted on a service that allows missing Origin
    with og.ws("/open") as c:
        _echo_ok(c)


def test_bad_origin_metric(og):
    for _ in range(3):
        assert og.refused("/guarded", origin="https://evil.example.net").status_code == 403
    v = og.wait_metric("gateway_handshakes_total", lambda v: (v or 0) >= 3, service="guarded", result="bad_origin")
    assert v == 3


def test_empty_allowlist_refuses_foreign_origin(og):
    """allowed_origins = [] allows only same-origin (and missing, if allowed)."""
    assert og.refused("/open", origin="https://a.example.com").status_code == 403
    with og.ws("/open", origin=f"http://{og.host}:{og.port}") as c:
        _echo_ok(c)
