"""Configuration reload on SIGHUP without dropping sessions: a rotated TLS certificate, a
new realm (removed and re-roled users' sessions end with 1008), JWT keys, origins, limits,
rebuilt/added/removed services, and refused configurations that leave the old one in force.
"""

import base64
import signal
import socket
import ssl
import threading
import time

import bcrypt
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.exceptions import ConnectionClosed

from gwproc import echo_service, free_port, to_toml
from stomp_util import RawStomp, stomp_service
from test_http_fallback import Fb
from test_proxy_protocol import raw_exchange, refused_from, ws_from
from test_tls import _cert, _pem_cert, _pem_key

SECRET_A = "first hs256 secret, 32 bytes or more"
SECRET_B = "second hs256 secret, also 32 bytes long"


def reload(g, cfg=None, result="ok", timeout=20.0):
    """Write `cfg` (if given) as the gateway's file, send SIGHUP, wait until the reload is
    counted with `result`."""
    if cfg is not None:
        g.config = cfg
        g.config_path.write_text(to_toml(cfg))
    before = g.metric("gateway_config_reloads_total", result=result) or 0
    g.proc.send_signal(signal.SIGHUP)
    got = g.wait_metric("gateway_config_reloads_total", lambda v: (v or 0) > before,
                        timeout=timeout, result=result)
    assert got == before + 1, f"reload not counted as {result}:\n{g.log()[-3000:]}"


def with_config(g, **sections):
    cfg = dict(g.config)
    cfg.update(sections)
    return cfg


def echo_ok(c, text="ping"):
    c.send(text)
    assert c.recv(timeout=5) == text


def basic(user, pw):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def closed(ws, timeout=10.0):
    """Read until the server closes; its (code, reason)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ws.recv(timeout=deadline - time.monotonic())
        except TimeoutError:
            break
        except ConnectionClosed as e:
            assert e.rcvd is not None, "closed without a close frame"
            return e.rcvd.code, e.rcvd.reason
    pytest.fail(f"the session was not closed within {timeout}s")


# --- TLS ------------------------------------------------------------------------------

@pytest.fixture
def ca():
    key = ec.generate_private_key(ec.SECP256R1())
    return key, _cert(key, "reload test CA", key, None, ca=True)


def write_server_pair(ca, cert_path, key_path):
    """A fresh key and certificate for localhost, signed by `ca`; its DER."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(key, "localhost", ca_key, ca_cert.subject, server=True)
    cert_path.write_bytes(_pem_cert(cert))
    key_path.write_bytes(_pem_key(key))
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.DER)


def client_ctx(tmp_path, ca):
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(_pem_cert(ca[1]))
    return ssl.create_default_context(cafile=str(ca_file))


def peer_cert(g):
    """The certificate a new TLS connection to the gateway is shown."""
    with socket.create_connection((g.host, g.port), timeout=5) as raw:
        with g.client_ssl.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def test_sighup_rotates_the_certificate_while_old_wss_sessions_keep_theirs(gateway_factory, tmp_path, ca):
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    first = write_server_pair(ca, cert, key)
    g = gateway_factory(server={"tls": {"cert": str(cert), "key": str(key)}},
                        client_ssl=client_ctx(tmp_path, ca))
    old = g.ws()
    try:
        echo_ok(old, "before")
        assert old.socket.getpeercert(binary_form=True) == first
        assert peer_cert(g) == first

        second = write_server_pair(ca, cert, key)
        assert second != first
        reload(g)

        echo_ok(old, "after the rotation")
        assert old.socket.getpeercert(binary_form=True) == first, "the old TLS session is untouched"
        assert peer_cert(g) == second, "new handshakes see the new certificate"
        with g.ws() as new:
            assert new.socket.getpeercert(binary_form=True) == second
            echo_ok(new, "new pair")
        echo_ok(old, "still there")
    finally:
        old.close()


def test_an_unreadable_certificate_is_refused_and_the_old_pair_stays(gateway_factory, tmp_path, ca):
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    first = write_server_pair(ca, cert, key)
    g = gateway_factory(server={"tls": {"cert": str(cert), "key": str(key)}},
                        client_ssl=client_ctx(tmp_path, ca))
    missing = tmp_path / "no-such-cert.pem"
    cfg = with_config(g, server={**g.config["server"], "tls": {"cert": str(missing), "key": str(key)}})
    reload(g, cfg, result="error")
    refused = [ln for ln in g.log().splitlines() if "configuration reload refused" in ln]
    assert refused and "server.tls.cert" in refused[-1] and str(missing) in refused[-1], refused
    assert g.metric("gateway_config_last_reload_successful") == 0
    assert peer_cert(g) == first
    with g.ws() as c:
        echo_ok(c, "old pair still in force")


# --- realm and JWT ---------------------------------------------------------------------

def realm_text(users):
    out = []
    for name, pw, roles in users:
        h = bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()
        listed = ", ".join(f'"{r}"' for r in roles)
        out.append(f'[[user]]\nname = "{name}"\npassword_hash = "{h}"\nroles = [{listed}]\n')
    return "\n".join(out)


def test_realm_reload_ends_removed_and_re_roled_users_and_keeps_the_rest(gateway_factory, tmp_path):
    realm = tmp_path / "realm.toml"
    realm.write_text(realm_text([("alice", "alice-pw", ["chat"]), ("bob", "bob-pw", ["chat"]),
                                 ("carol", "carol-pw", ["chat"])]))
    g = gateway_factory(auth={"realm_file": str(realm)},
                        services=[{**stomp_service(), "require_auth": True}])
    s = {}
    try:
        for user in ("alice", "bob", "carol"):
            s[user] = RawStomp(g, additional_headers=basic(user, f"{user}-pw"))
            s[user].connect()
            s[user].receipt("SUBSCRIBE", {"id": "1", "destination": "/topic/room"})

        realm.write_text(realm_text([("alice", "alice-pw", ["chat"]), ("carol", "carol-pw", ["admin", "chat"]),
                                     ("dave", "dave-pw", [])]))
        reload(g)

        assert closed(s["bob"].ws) == (1008, "account removed")
        assert closed(s["carol"].ws) == (1008, "roles changed")
        # alice's session goes on: a message through the broker and back.
        s["alice"].receipt("SEND", {"destination": "/topic/room"}, "still here")
        m = s["alice"].recv()
        assert (m.command, m.text) == ("MESSAGE", "still here")

        # New logins use the new realm.
        assert g.refused("/ws", subprotocols=["v12.stomp"],
                         additional_headers=basic("bob", "bob-pw")).status_code == 401
        for user in ("carol", "dave", "alice"):
            s[f"{user}-again"] = RawStomp(g, additional_headers=basic(user, f"{user}-pw"))
            s[f"{user}-again"].connect()
        assert "sessions_revoked=2" in g.log()
        # The gateway sweeps once more a moment later (for logins that raced the reload);
        # carol's new session holds the new roles and outlives it.
        time.sleep(2.5)
        s["carol-again"].receipt("SEND", {"destination": "/topic/other"}, "new roles")
        s["alice"].receipt("SEND", {"destination": "/topic/other"}, "still here")
    finally:
        for c in s.values():
            c.ws.close()


def hs(secret, sub="jay"):
    now = int(time.time())
    return jwt.encode({"sub": sub, "exp": now + 300, "roles": ["chat"]}, secret, algorithm="HS256")


def test_jwt_key_rotation_applies_to_new_handshakes_and_keeps_token_sessions(gateway_factory, tmp_path):
    realm = tmp_path / "realm.toml"
    realm.write_text(realm_text([("alice", "alice-pw", ["chat"])]))
    g = gateway_factory(auth={"realm_file": str(realm), "jwt": {"hs256_secret": SECRET_A}},
                        services=[echo_service(require_auth=True)])
    bearer = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
    old = g.ws(additional_headers=bearer(hs(SECRET_A)))
    try:
        echo_ok(old)
        # The realm file is rewritten too: a token session is not the realm's to end.
        realm.write_text(realm_text([("zed", "zed-pw", [])]))
        reload(g, with_config(g, auth={"realm_file": str(realm), "jwt": {"hs256_secret": SECRET_B}}))
        echo_ok(old, "token session kept")
        assert g.refused(additional_headers=bearer(hs(SECRET_A))).status_code == 401
        with g.ws(additional_headers=bearer(hs(SECRET_B))) as c:
            echo_ok(c, "new key")
        applied = [ln for ln in g.log().splitlines() if "configuration reloaded in" in ln]
        assert applied and "auth.jwt.hs256_secret" in applied[-1], applied
        assert SECRET_B not in g.log()
    finally:
        old.close()


# --- origins and limits ------------------------------------------------------------------

def test_allowed_origins_change_applies_to_new_handshakes(gateway_factory):
    svc = echo_service(allowed_origins=["https://a.example"], allow_missing_origin=False)
    g = gateway_factory(services=[svc])
    origin = lambda o: {"Origin": o}  # noqa: E731
    old = g.ws(additional_headers=origin("https://a.example"))
    try:
        assert g.refused(additional_headers=origin("https://b.example")).status_code == 403
        reload(g, with_config(g, service=[{**svc, "allowed_origins": ["https://b.example"]}]))
        assert g.refused(additional_headers=origin("https://a.example")).status_code == 403
        with g.ws(additional_headers=origin("https://b.example")) as c:
            echo_ok(c)
        echo_ok(old, "opened under the old list")
        # Origins are the gateway's side: the bridge was kept, not rebuilt.
        line = [ln for ln in g.log().splitlines() if "configuration reloaded in" in ln][-1]
        assert 'services_updated=["echo"]' in line and "services_rebuilt=[]" in line, line
    finally:
        old.close()


def test_lower_per_ip_limit_refuses_new_handshakes_and_keeps_open_sessions(gateway_factory):
    g = gateway_factory(limits={"max_connections_per_ip": 10})
    conns = [g.ws() for _ in range(3)]
    try:
        reload(g, with_config(g, limits={**g.config["limits"], "max_connections_per_ip": 2}))
        for c in conns:
            echo_ok(c, "kept")
        assert g.refused().status_code == 429
        conns.pop().close()
        conns.pop().close()
        # One session left of 2 allowed: the live count survived the reload.
        deadline = time.monotonic() + 5
        while True:
            try:
                conns.append(g.ws())
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        echo_ok(conns[-1])
        assert g.refused().status_code == 429
    finally:
        for c in conns:
            c.close()


def test_proxy_protocol_peers_and_handshake_rate_follow_a_reload(gateway_factory):
    g = gateway_factory()
    lb = "127.0.0.10"
    v1 = b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert raw_exchange(lb, g.port, v1).startswith(b"HTTP/1.1 400"), "not a PROXY peer yet"
    reload(g, with_config(g, server={**g.config["server"], "proxy_protocol": [f"{lb}/32"]},
                          limits={**g.config["limits"], "handshakes_per_ip_per_second": 0.1,
                                  "handshake_burst_per_ip": 2}))
    assert raw_exchange(lb, g.port, v1).startswith(b"HTTP/1.1 200"), "the header is read now"
    for _ in range(2):
        c, _ = ws_from("127.0.0.6", g.port)
        c.close()
    assert refused_from("127.0.0.6", g.port).status_code == 429


# --- services ------------------------------------------------------------------------------

class TaggingServer:
    """A TCP server that answers every chunk with `tag` + the chunk."""

    def __init__(self, tag: bytes):
        self.tag = tag
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.srv.settimeout(0.2)
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                c, _ = self.srv.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        with c:
            while True:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                c.sendall(self.tag + data)

    def close(self):
        self.stop.set()
        self.srv.close()


def tcp_service(target_port):
    return {"name": "tcp", "path": "/tcp", "bridge": "tcp", "allow_missing_origin": True,
            "settings": {"target": f"127.0.0.1:{target_port}", "connect_timeout": "2s"}}


def tcp_roundtrip(c, data):
    c.send(data)
    got = b""
    deadline = time.monotonic() + 5
    while len(got) < 2 + len(data) and time.monotonic() < deadline:
        got += c.recv(timeout=5)
    return got


def test_changed_bridge_settings_serve_new_sessions_while_old_ones_finish(gateway_factory):
    a, b = TaggingServer(b"A:"), TaggingServer(b"B:")
    try:
        g = gateway_factory(services=[tcp_service(a.port), echo_service()])
        old = g.ws("/tcp", subprotocols=["binary"])
        echo_kept = g.ws()
        assert tcp_roundtrip(old, b"one") == b"A:one"
        reload(g, with_config(g, service=[tcp_service(b.port), echo_service()]))
        line = [ln for ln in g.log().splitlines() if "configuration reloaded in" in ln][-1]
        assert 'services_rebuilt=["tcp"]' in line, line
        assert tcp_roundtrip(old, b"two") == b"A:two", "the old session stays on the old bridge"
        with g.ws("/tcp", subprotocols=["binary"]) as new:
            assert tcp_roundtrip(new, b"three") == b"B:three"
        echo_ok(echo_kept, "unchanged service, same session")
        assert "stopping its background work" not in g.log()
        old.close()
        deadline = time.monotonic() + 5
        while "the last session on a replaced bridge ended" not in g.log():
            assert time.monotonic() < deadline, "the replaced bridge was not retired"
            time.sleep(0.05)
        echo_kept.close()
    finally:
        a.close()
        b.close()


def test_an_http_fallback_session_outlives_a_change_of_its_service(gateway_factory):
    g = gateway_factory()
    s = Fb(g)
    ev = s.events()
    try:
        s.send("before")
        assert ev.message() == (1, "before")
        reload(g, with_config(g, service=[echo_service(allowed_origins=["https://app.example"])]))
        s.send("after")
        assert ev.message() == (2, "after")
        assert s.delete() == 204
    finally:
        ev.close()


def test_removed_and_added_services(gateway_factory):
    g = gateway_factory(services=[echo_service(name="a", path="/a"), echo_service(name="b", path="/b")])
    on_a, on_b = g.ws("/a"), g.ws("/b")
    try:
        reload(g, with_config(g, service=[echo_service(name="a", path="/a"), echo_service(name="c", path="/c")]))
        echo_ok(on_a, "unchanged")
        echo_ok(on_b, "removed, but this session finishes")
        assert g.refused("/b").status_code == 404
        with g.ws("/c") as c:
            echo_ok(c, "added")
        assert g.wait_metric("gateway_handshakes_total", lambda v: (v or 0) >= 1,
                             service="c", result="accepted") == 1
    finally:
        on_a.close()
        on_b.close()


# --- refused and restart-only changes ------------------------------------------------------

def test_a_bad_key_is_refused_by_name_and_nothing_changes(gateway_factory):
    g = gateway_factory(limits={"max_connections_per_ip": 3})
    good = g.config
    cfg = with_config(g, limits={**g.config["limits"], "max_connections_per_ip": 1,
                                 "max_conections": 5})
    reload(g, cfg, result="error")
    refused = [ln for ln in g.log().splitlines() if "configuration reload refused" in ln]
    assert refused and "max_conections" in refused[-1], refused
    assert g.metric("gateway_config_last_reload_successful") == 0
    assert g.metric("gateway_config_reloads_total", result="ok") == 0
    # The lowered per-IP cap in the refused file is not in force: three sessions open.
    conns = [g.ws() for _ in range(3)]
    try:
        for c in conns:
            echo_ok(c)
        assert g.refused().status_code == 429
    finally:
        for c in conns:
            c.close()
    stamp = g.metric("gateway_config_last_reload_success_timestamp_seconds")
    reload(g, good)
    assert g.metric("gateway_config_last_reload_successful") == 1
    assert g.metric("gateway_config_last_reload_success_timestamp_seconds") > stamp


def test_restart_only_keys_are_reported_and_keep_their_values(gateway_factory):
    g = gateway_factory()
    new_port = free_port()
    cfg = with_config(g, server={**g.config["server"], "listen": f"127.0.0.1:{new_port}"},
                      limits={**g.config["limits"], "idle_timeout": "30s"},
                      http_fallback={"enabled": False})
    reload(g, cfg)
    warn = [ln for ln in g.log().splitlines() if "need a restart" in ln]
    assert warn and "server.listen" in warn[-1] and "http_fallback.enabled" in warn[-1], warn
    applied = [ln for ln in g.log().splitlines() if "configuration reloaded in" in ln][-1]
    assert 'applied=["limits.idle_timeout"]' in applied, applied
    assert g.http_get("/healthz")[0] == 200
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", new_port), timeout=1).close()
    with g.ws() as c:
        echo_ok(c)


# --- the admin API -------------------------------------------------------------------------

def test_admin_api_reload_answers_with_the_report_or_the_refusal(gateway_factory):
    import requests
    token = "reload-admin-token-3f9a"
    g = gateway_factory(admin={"token": token}, limits={"max_connections_per_ip": 50})
    api = f"http://{g.host}:{g.admin_port}/api"
    auth = {"Authorization": f"Bearer {token}"}
    old = g.ws()
    try:
        good = with_config(g, limits={**g.config["limits"], "max_connections_per_ip": 40},
                           service=[echo_service(), echo_service(name="more", path="/more")])
        g.config_path.write_text(to_toml(good))
        r = requests.post(f"{api}/reload", headers=auth, timeout=20)
        assert r.status_code == 200, r.text
        assert r.json() == {
            "applied": ["limits.max_connections_per_ip"],
            "restart_required": [],
            "services": {"unchanged": ["echo"], "updated": [], "rebuilt": [], "added": ["more"],
                         "removed": []},
            "sessions_revoked": 0,
        }
        shown = requests.get(f"{api}/config", headers=auth, timeout=5).json()
        assert shown["limits"]["max_connections_per_ip"] == 40, "the configuration in force"
        with g.ws("/more") as c:
            echo_ok(c)

        bad = {**good, "limits": {**good["limits"], "idle_timeout": "soon"}}
        g.config_path.write_text(to_toml(bad))
        r = requests.post(f"{api}/reload", headers=auth, timeout=20)
        assert r.status_code == 422, r.text
        assert r.json()["key"] == "limits.idle_timeout" and "soon" in r.json()["error"]
        assert requests.get(f"{api}/config", headers=auth, timeout=5).json()["limits"]["idle_timeout"] == "1m"
        assert g.metric("gateway_config_reloads_total", result="error") == 1
        assert requests.post(f"{api}/reload", timeout=5).status_code == 401
        assert requests.get(f"{api}/reload", headers=auth, timeout=5).status_code == 405
        echo_ok(old, "through all of it")
    finally:
        old.close()
