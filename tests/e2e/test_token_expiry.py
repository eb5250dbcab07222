"""Live token expiry on the echo bridge: a session admitted with a JWT ends when the
token's `exp` passes, with close code 1008 and reason "token expired"; sessions with
later tokens and without tokens carry on."""

import time

import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from gwproc import echo_service

HS_SECRET = "e2e-token-expiry-secret-0123456789abcdef"


def token(sub="carol", exp_in=2):
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + exp_in}, HS_SECRET, algorithm="HS256")


@pytest.fixture
def g(gateway_factory):
    return gateway_factory(
        auth={"jwt": {"hs256_secret": HS_SECRET}},
        services=[echo_service(name="echo", path="/echo")],
    )


def closed_by_gateway(c, within):
    """Echoes until the gateway closes; returns (code, reason, seconds waited)."""
    started = time.monotonic()
    try:
        while True:
            c.send("still here")
            assert c.recv(timeout=within) == "still here"
            if time.monotonic() - started > within:
                raise AssertionError(f"the session was still open after {within} s")
            time.sleep(0.2)
    except ConnectionClosed as e:
        assert e.rcvd is not None, "the gateway sent no close frame"
        return e.rcvd.code, e.rcvd.reason, time.monotonic() - started


def test_a_bearer_session_ends_at_exp_with_1008_token_expired(g):
    tok = token(exp_in=2)
    exp = jwt.decode(tok, options={"verify_signature": False})["exp"]
    with g.ws("/echo", additional_headers={"Authorization": f"Bearer {tok}"}) as c:
        code, reason, _ = closed_by_gateway(c, within=6)
    assert (code, reason) == (1008, "token expired")
    # Not before exp, and promptly after it (one timer for all sessions, no polling).
    ended = time.time()
    assert ended >= exp, (ended, exp)
    assert ended < exp + 1.5, (ended, exp)
    assert g.wait_metric("gateway_credential_expiries_total", lambda v: v >= 1, service="echo")


def test_only_the_expiring_session_ends(g):
    short, long_ = token("dora", exp_in=2), token("erin", exp_in=600)
    with g.ws(f"/echo?access_token={short}") as a, \
            g.ws("/echo", additional_headers={"Authorization": f"Bearer {long_}"}) as b, \
            g.ws("/echo") as anon:
        code, reason, _ = closed_by_gateway(a, within=6)
        assert (code, reason) == (1008, "token expired")
        for c in (b, anon):
            c.send("after")
            assert c.recv(timeout=3) == "after"
