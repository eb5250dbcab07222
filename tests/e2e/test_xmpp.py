"""The XMPP bridge against a real Prosody (started by tests/scripts/prosody.sh for the whole
module, STARTTLS required): raw RFC 7395 clients through the gateway log in with SASL PLAIN,
bind, fetch the roster, exchange messages and presence; refusals (wrong password, unknown
domain, identity mismatch, untrusted certificate, unreachable server); whitespace keepalives;
shutdown of the gateway and of Prosody mid-session; the bridge's metrics. Bad input is in
test_xmpp_bad_input.py.

Skipped only when prosody is not installed and CI is unset; with CI=true it fails.
"""

from __future__ import annotations

import base64
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import bcrypt
import pytest

from gwproc import free_port, metric_sum
from tls_util import spki_pin, spki_pin_hex
from xmpp_util import (  # noqa: F401 (prosody and xgw are fixtures)
    CLOSE, NS_CLIENT, NS_ROSTER, NS_SASL, NS_STREAM, TlsObserver, XmppWs, assert_still_serves,
    login, need_prosody, open_el, prosody, prosody_service, q, start_prosody, xgw, xmpp_service,
)


def test_login_roster_message_presence_and_metrics(xgw):
    with login(xgw, "alice") as alice, login(xgw, "bob") as bob:
        assert alice.jid.startswith("alice@localhost/")
        roster = alice.iq("get", f'<query xmlns="{NS_ROSTER}"/>')
        assert roster.find(q(NS_ROSTER, "query")) is not None

        alice.send(f'<presence xmlns="{NS_CLIENT}" to="{bob.jid}"><status>here</status></presence>')
        pres = bob.recv_until(lambda e: e.tag == q(NS_CLIENT, "presence"))
        assert pres.get("from") == alice.jid
        assert pres.findtext(q(NS_CLIENT, "status")) == "here"

        alice.send(f'<message xmlns="{NS_CLIENT}" to="{bob.jid}" type="chat">'
                   "<body>hello bob &amp; co</body></message>")
        msg = bob.recv_until(lambda e: e.tag == q(NS_CLIENT, "message"))
        assert msg.get("from") == alice.jid
        assert msg.findtext(q(NS_CLIENT, "body")) == "hello bob & co"

        assert xgw.metric("gateway_xmpp_sessions_active") == 2
        # A clean close: <close/> answered with <close/>, then a normal WebSocket close.
        alice.send(CLOSE)
        ended = alice.expect_end()
        assert ended.condition is None
        assert ended.close_code == 1000
        assert ET.fromstring(ended.messages[-1]).tag.endswith("}close")

    text = xgw.metrics_text()
    assert metric_sum(text, "gateway_xmpp_logins_total", result="success") == 2
    assert metric_sum(text, "gateway_xmpp_stanzas_total", direction="in", kind="message") == 1
    assert metric_sum(text, "gateway_xmpp_stanzas_total", direction="out", kind="message") >= 1
    assert metric_sum(text, "gateway_xmpp_stanzas_total", direction="in", kind="iq") >= 3
    assert metric_sum(text, "gateway_xmpp_stanzas_total", direction="out", kind="presence") >= 1
    assert metric_sum(text, "gateway_xmpp_server_connect_seconds_count") == 2
    assert xgw.wait_metric("gateway_xmpp_sessions_active", lambda v: v == 0) == 0


def test_wrong_password_is_not_authorized(xgw):
    with XmppWs(xgw) as c:
        c.open()
        answer = c.auth("alice", "wrong")
        assert answer.tag == q(NS_SASL, "failure")
        assert answer.find(q(NS_SASL, "not-authorized")) is not None
        # The stream stays usable: the right password now works.
        assert c.auth("alice", "alice-pass").tag == q(NS_SASL, "success")
    assert xgw.metric("gateway_xmpp_logins_total", result="sasl-failure") == 1


def test_domain_not_on_the_allow_list_is_host_unknown(xgw):
    with XmppWs(xgw) as c:
        c.send(open_el("example.org"))
        ended = c.expect_end()
    assert ended.condition == "host-unknown"
    assert ended.close_code == 1008
    assert xgw.metric("gateway_xmpp_stream_errors_total", condition="host-unknown", side="gateway") == 1
    assert_still_serves(xgw)


def test_identity_must_match_the_authenticated_user(gateway_factory, prosody, tmp_path):
    """alice of the gateway's realm (Basic auth at the handshake) may only log in as alice."""
    realm = tmp_path / "users.toml"
    pw_hash = bcrypt.hashpw(b"gw-secret", bcrypt.gensalt(rounds=4)).decode()
    realm.write_text(f"[[user]]\nname = \"alice\"\npassword_hash = '{pw_hash}'\nroles = []\n")
    gw = gateway_factory(auth={"realm_file": str(realm)},
                         services=[prosody_service(prosody, identity="local")])
    basic = base64.b64encode(b"alice:gw-secret").decode()
    headers = {"Authorization": f"Basic {basic}"}
    with XmppWs(gw, additional_headers=headers) as c:
        c.open()
        answer = c.auth("bob", "bob-pass")
        assert answer.tag == q(NS_SASL, "failure"), ET.tostring(answer)
        assert answer.find(q(NS_SASL, "not-authorized")) is not None
        assert "alice" in (answer.findtext(q(NS_SASL, "text")) or "")
        # Acting as bob through an authorization identity is refused too.
        answer = c.auth("alice", "alice-pass", authzid="bob@localhost")
        assert answer.tag == q(NS_SASL, "failure"), ET.tostring(answer)
        # The principal's own account logs in.
        assert c.auth("alice", "alice-pass").tag == q(NS_SASL, "success")
    text = gw.metrics_text()
    assert metric_sum(text, "gateway_xmpp_logins_total", result="sasl-failure") == 2
    assert metric_sum(text, "gateway_xmpp_logins_total", result="success") == 1


def test_unreachable_server(gateway_factory, prosody):
    gw = gateway_factory(services=[xmpp_service(server=f"127.0.0.1:{free_port()}",
                                                ca_file=prosody.ca)])
    with XmppWs(gw) as c:
        c.send(open_el())
        ended = c.expect_end()
    assert (ended.condition, ended.close_code) == ("remote-connection-failed", 1014), ended
    assert gw.metric("gateway_xmpp_logins_total", result="server-unreachable") == 1


def test_untrusted_server_certificate_fails_tls(gateway_factory, prosody):
    """Without the CA file the self-signed Prosody certificate is refused."""
    gw = gateway_factory(services=[xmpp_service(server=f"127.0.0.1:{prosody.port}")])
    with XmppWs(gw) as c:
        c.send(open_el())
        ended = c.expect_end()
    assert (ended.condition, ended.close_code) == ("remote-connection-failed", 1014), ended
    assert "TLS" in ended.text
    assert gw.metric("gateway_xmpp_logins_total", result="tls-failure") == 1


@pytest.mark.parametrize("tls", ["starttls", "direct"])
def test_whitespace_keepalive_to_a_quiet_server(gateway_factory, prosody, tls):
    """Over STARTTLS and XEP-0368 direct TLS: the client sees the secure stream's features,
    and the server gets a whitespace keepalive after each second of silence."""
    certs = Path(prosody.ca).parent
    observer = TlsObserver(str(certs / "localhost.crt"), str(certs / "localhost.key"),
                           direct=tls == "direct")
    try:
        gw = gateway_factory(services=[xmpp_service(
            server=f"127.0.0.1:{observer.port}", ca_file=prosody.ca, server_keepalive="1s",
            tls=tls)])
        with XmppWs(gw) as c:
            features = c.open()
            assert features.find(q(NS_SASL, "mechanisms")) is not None
            deadline = time.monotonic() + 15
            while observer.received.count(b" ") < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert observer.received.count(b" ") >= 2, observer.received
            assert observer.received.strip() == b"", observer.received
    finally:
        observer.close()


def test_gateway_shutdown_tells_the_client(xgw):
    c = login(xgw, "alice")
    xgw.terminate()
    ended = c.expect_end()
    c.__exit__()
    assert (ended.condition, ended.close_code) == ("system-shutdown", 1001), ended
    assert xgw.wait_exit(20) == 0


def test_prosody_stopped_mid_session(gateway_factory, tmp_path_factory):
    need_prosody()
    own = start_prosody(tmp_path_factory.mktemp("prosody-stop"), free_port)
    try:
        gw = gateway_factory(services=[prosody_service(own)])
        c = login(gw, "alice")
        own.stop()
        t0 = time.monotonic()
        ended = c.expect_end(timeout=30)
        c.__exit__()
        assert time.monotonic() - t0 < 15
        # Prosody's own stream error reaches the client, then <close/> and 1014.
        assert (ended.condition, ended.close_code) == ("system-shutdown", 1014), ended
        assert ET.fromstring(ended.messages[-1]).tag.endswith("}close")
        assert gw.metric("gateway_xmpp_stream_errors_total", condition="system-shutdown",
                         side="server") == 1
        assert gw.alive()
    finally:
        try:
            own.stop()
        except Exception:
            pass


def test_features_hide_starttls_and_close_is_clean(xgw):
    with XmppWs(xgw) as c:
        features = c.open()
        assert features.tag == q(NS_STREAM, "features")
        assert features.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls") is None
        c.send(CLOSE)
        ended = c.expect_end()
    assert ended.close_code == 1000


def test_handshake_without_the_xmpp_subprotocol_is_refused(xgw):
    resp = xgw.refused("/xmpp")
    assert resp.status_code >= 400


def _self_signed(tmp_path, name: str, cn: str) -> tuple[str, str]:
    """A certificate as `openssl req -x509` makes it for a small XMPP install: self-signed,
    with basicConstraints CA:TRUE."""
    crt, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                    "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    text = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-text"],
                          check=True, capture_output=True, text=True).stdout
    assert "CA:TRUE" in text
    return str(crt), str(key)


@pytest.mark.parametrize("case", ["leaf-pin", "hex-pin-with-ca-file", "wrong-pin"])
def test_pin_sha256_trusts_prosody_by_its_key(gateway_factory, prosody, case):
    """pin_sha256 (curl's sha256//BASE64 of the certificate's key, computed by openssl) alone
    trusts Prosody's certificate without its CA; the hex form with ca_file needs both; a pin
    of another key (here the CA's, which Prosody does not send) is refused, the message
    giving the key the server did show, as openssl computes it."""
    leaf = str(Path(prosody.ca).parent / f"{prosody.domain}.crt")
    settings = {
        "leaf-pin": {"pin_sha256": spki_pin(leaf)},
        "hex-pin-with-ca-file": {"pin_sha256": [spki_pin_hex(leaf)], "ca_file": prosody.ca},
        "wrong-pin": {"pin_sha256": spki_pin(prosody.ca)},
    }[case]
    gw = gateway_factory(services=[xmpp_service(server=f"127.0.0.1:{prosody.port}", **settings)])
    if case != "wrong-pin":
        with login(gw, "alice") as alice:
            assert alice.jid.startswith("alice@localhost/")
        return
    with XmppWs(gw) as c:
        c.send(open_el())
        ended = c.expect_end()
    assert (ended.condition, ended.close_code) == ("remote-connection-failed", 1014), ended
    assert "pin_sha256" in ended.text and spki_pin(leaf) in ended.text, ended.text
    assert gw.metric("gateway_xmpp_logins_total", result="tls-failure") == 1


@pytest.mark.parametrize("case", ["pinned", "other-certificate", "other-name"])
def test_self_signed_ca_true_certificate_trusted_through_ca_file(gateway_factory, tmp_path, case):
    """ca_file pointing at the server's own CA:TRUE self-signed certificate trusts it (as
    OpenSSL does), still checking the name; another certificate in ca_file does not."""
    crt, key = _self_signed(tmp_path, "server", "otherhost" if case == "other-name" else "localhost")
    ca_file = _self_signed(tmp_path, "unrelated", "localhost")[0] if case == "other-certificate" else crt
    observer = TlsObserver(crt, key, direct=True)
    try:
        gw = gateway_factory(services=[xmpp_service(server=f"127.0.0.1:{observer.port}",
                                                    ca_file=ca_file, tls="direct")])
        with XmppWs(gw) as c:
            if case == "pinned":
                features = c.open()
                assert features.find(q(NS_SASL, "mechanisms")) is not None
            else:
                c.send(open_el())
                ended = c.expect_end()
                assert (ended.condition, ended.close_code) == ("remote-connection-failed", 1014), ended
                assert "TLS" in ended.text
    finally:
        observer.close()
