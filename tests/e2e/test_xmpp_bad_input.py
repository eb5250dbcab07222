"""The XMPP bridge against bad input, with a real Prosody behind it (tests/scripts/prosody.sh):
hostile client messages (billion laughs, unclosed tags, a 10 MB stanza, 10,000-deep nesting,
text or binary instead of XMPP, STARTTLS, floods) and fake servers that answer with garbage
or stall during TLS. Each ends only its own session with the right stream error and close
code; a bystander session and a fresh login through the same gateway carry on.
"""

from __future__ import annotations

import time

import pytest

from xmpp_util import (  # noqa: F401 (prosody and xgw are fixtures)
    NS_CLIENT, NS_ROSTER, FakeServer, XmppWs, assert_still_serves, garbage_server, login,
    open_el, prosody, prosody_service, tls_stall_server, xgw, xmpp_service,
)


LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
                    for i in range(1, 10))
          + f']><message xmlns="{NS_CLIENT}" to="bob@localhost"><body>&lol9;</body></message>')

BAD_CLIENT_INPUT = {
    # name: (message, expected condition, expected close code)
    "billion-laughs": (LAUGHS, "restricted-xml", 1008),
    "unclosed-tag": (f'<message xmlns="{NS_CLIENT}" to="bob@localhost"><body>hi',
                     "not-well-formed", 1008),
    "mismatched-tag": (f'<message xmlns="{NS_CLIENT}" to="bob@localhost"><body>hi</message>',
                       "not-well-formed", 1008),
    "two-elements": (f'<presence xmlns="{NS_CLIENT}"/><presence xmlns="{NS_CLIENT}"/>',
                     "not-well-formed", 1008),
    "10MB-stanza": (f'<message xmlns="{NS_CLIENT}" to="bob@localhost"><body>'
                    + "a" * (10 * 1024 * 1024) + "</body></message>", "policy-violation", 1008),
    "10000-deep": (f'<message xmlns="{NS_CLIENT}">' + "<x>" * 10000 + "</x>" * 10000 + "</message>",
                   "policy-violation", 1008),
    "starttls": ("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", "policy-violation", 1008),
    "binary": (b"\x00\x01binary", "unsupported-encoding", 1003),
}


@pytest.mark.parametrize("name", list(BAD_CLIENT_INPUT))
def test_bad_client_input_ends_only_that_session(xgw, name):
    message, condition, code = BAD_CLIENT_INPUT[name]
    with login(xgw, "bob") as bystander, login(xgw, "alice") as c:
        c.send(message)
        ended = c.expect_end()
        assert (ended.condition, ended.close_code) == (condition, code), ended
        # Another logged-in session carries on.
        bystander.iq("get", f'<query xmlns="{NS_ROSTER}"/>')
    assert_still_serves(xgw)


@pytest.mark.parametrize("first,condition,code", [
    ("hello, not xml", "not-well-formed", 1008),
    (f'<message xmlns="{NS_CLIENT}"/>', "not-well-formed", 1008),
    (b"\x16\x03\x01binary", "unsupported-encoding", 1003),
])
def test_bad_first_message(xgw, first, condition, code):
    with XmppWs(xgw) as c:
        c.send(first)
        ended = c.expect_end()
    assert (ended.condition, ended.close_code) == (condition, code), ended
    assert xgw.metric("gateway_xmpp_sessions_active") in (None, 0)
    assert_still_serves(xgw)


def test_open_timeout(gateway_factory, prosody):
    gw = gateway_factory(services=[prosody_service(prosody, open_timeout="1s")])
    with XmppWs(gw) as c:
        t0 = time.monotonic()
        ended = c.expect_end()
    assert ended.condition == "connection-timeout"
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("handler,label", [(garbage_server, "garbage"), (tls_stall_server, "stall")])
def test_bad_server_ends_only_that_session(gateway_factory, prosody, handler, label):
    fake = FakeServer(handler)
    try:
        gw = gateway_factory(services=[
            prosody_service(prosody),
            xmpp_service(name="bad", path="/bad", server=f"127.0.0.1:{fake.port}",
                         ca_file=prosody.ca, tls_timeout="2s"),
        ])
        with login(gw, "bob") as bystander:
            with XmppWs(gw, "/bad") as c:
                t0 = time.monotonic()
                c.send(open_el())
                ended = c.expect_end()
                took = time.monotonic() - t0
            assert ended.condition == "remote-connection-failed", ended
            assert ended.close_code == 1014, ended
            assert took < 15, f"{label}: took {took:.1f}s"
            assert fake.accepted == 1
            bystander.iq("get", f'<query xmlns="{NS_ROSTER}"/>')
        assert_still_serves(gw)
        assert gw.metric("gateway_xmpp_logins_total", result="tls-failure") == 1
    finally:
        fake.close()


def test_stanza_rate_limit(gateway_factory, prosody):
    gw = gateway_factory(services=[prosody_service(prosody, stanza_rate=1, stanza_burst=5)])
    with login(gw, "alice") as c:  # <auth/> and the bind <iq/> take two of the five
        for i in range(10):
            c.send(f'<message xmlns="{NS_CLIENT}" to="bob@localhost"><body>{i}</body></message>')
        ended = c.expect_end()
    assert (ended.condition, ended.close_code) == ("policy-violation", 1008), ended
    assert gw.metric("gateway_xmpp_stanzas_total", direction="in", kind="message") == 3
    assert_still_serves(gw)
