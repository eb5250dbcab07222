"""The admin API on the admin listener: sessions of both transports listed, filtered,
paged and closed (the client sees the close code and reason), a principal's sessions
closed at once, the drain, the redacted configuration, auth and bad input; and
schemathesis checking the implementation against gateway/admin-openapi.yaml."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import bcrypt
import jwt
import pytest
import requests
from websockets.exceptions import ConnectionClosed

import stomp_util
import wsraw
from gwproc import ROOT, echo_service
from test_http_fallback import Fb

TOKEN = "admin-e2e-token-6c1f0b"
HS_SECRET = "admin-e2e-hs256-secret-0123456789abcdef"
OPENAPI = ROOT / "gateway" / "admin-openapi.yaml"


# --- helpers --------------------------------------------------------------------------

class Admin:
    """requests against one gateway's admin listener."""

    def __init__(self, g, token: str | None = TOKEN):
        self.base = f"http://{g.host}:{g.admin_port}"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path, params=None, headers=None):
        return requests.get(self.base + path, params=params,
                            headers={**self.headers, **(headers or {})}, timeout=5)

    def post(self, path, body=None, data=None, headers=None):
        return requests.post(self.base + path, json=body, data=data,
                             headers={**self.headers, **(headers or {})}, timeout=5)

    def sessions(self, **params) -> dict:
        r = self.get("/api/sessions", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def session(self, sid: int) -> dict:
        r = self.get(f"/api/sessions/{sid}")
        assert r.status_code == 200, r.text
        return r.json()

    def by_port(self, port: int) -> dict:
        """The session whose client connected from this local port."""
        found = [s for s in self.sessions(limit=1000)["sessions"]
                 if s["peer"].rsplit(":", 1)[1] == str(port)]
        assert len(found) == 1, found
        return found[0]

    def wait_gone(self, sid: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get(f"/api/sessions/{sid}").status_code == 404:
                return
            time.sleep(0.05)
        raise AssertionError(f"session {sid} still listed after {timeout}s")


def basic(user, pw):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def hs_token(sub, exp_in=600):
    now = int(time.time())
    return jwt.encode({"sub": sub, "roles": ["viewer"], "iat": now, "exp": now + exp_in},
                      HS_SECRET, algorithm="HS256"), now + exp_in


def port_of(ws) -> int:
    return ws.local_address[1]


def close_of(ws, timeout=5.0):
    """(code, reason) of the close frame the gateway sent this websockets client."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ws.recv(timeout=deadline - time.monotonic())
        except TimeoutError:
            break
        except ConnectionClosed as e:
            assert e.rcvd is not None, "closed without a close frame"
            return e.rcvd.code, e.rcvd.reason
    raise AssertionError("the connection stayed open")


def echoes(ws, text="still here"):
    ws.send(text)
    assert ws.recv(timeout=5) == text


@pytest.fixture
def realm(tmp_path):
    h = bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(rounds=4)).decode()
    p = tmp_path / "users.toml"
    p.write_text(f'[[user]]\nname = "alice"\npassword_hash = \'{h}\'\nroles = ["trader"]\n')
    return p


@pytest.fixture
def ag(gateway_factory, realm):
    """Realm and JWT logins, echo and STOMP; the admin token comes from the environment."""
    return gateway_factory(
        env={"GATEWAY__ADMIN__TOKEN": TOKEN},
        auth={"realm_file": str(realm), "jwt": {"hs256_secret": HS_SECRET}},
        services=[echo_service(), stomp_util.stomp_service()],
    )


# --- listing, filters, pages, traffic --------------------------------------------------

def test_sessions_of_every_kind_listed_filtered_and_paged(ag):
    admin = Admin(ag)
    anon = [ag.ws("/echo") for _ in range(3)]
    token, exp = hs_token("carol")
    carol = ag.ws("/echo", additional_headers={"Authorization": f"Bearer {token}"})
    stomp = stomp_util.RawStomp(ag, additional_headers=basic("alice", "alice-pw"))
    stomp.connect()
    fb = Fb(ag, "/echo")
    try:
        page = admin.sessions()
        assert page["total"] == 6 and page["next_cursor"] is None
        ids = [s["id"] for s in page["sessions"]]
        assert ids == sorted(ids) and len(set(ids)) == 6

        a = admin.by_port(port_of(anon[0]))
        assert a["service"] == "echo" and a["transport"] == "websocket"
        assert a["principal"] is None and a["origin"] is None and a["closing"] is False
        assert a["subprotocol"] is None and a["peer"].startswith("127.0.0.1:")
        assert a["age_seconds"] >= 0 and a["started_at"].endswith("Z")
        assert (a["messages_in"], a["bytes_in"], a["messages_out"], a["bytes_out"]) == (0, 0, 0, 0)

        st = admin.sessions(subprotocol="v12.stomp")
        assert st["total"] == 1
        p = st["sessions"][0]["principal"]
        assert p == {"name": "alice", "roles": ["trader"], "auth_method": "basic", "expires_at": None}
        assert st["sessions"][0]["service"] == "stomp"

        c = admin.sessions(principal="carol")["sessions"]
        assert len(c) == 1 and c[0]["principal"]["auth_method"] == "bearer"
        assert c[0]["principal"]["expires_at"] == time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(exp))

        http = admin.sessions(transport="http")["sessions"]
        assert len(http) == 1 and http[0]["service"] == "echo"
        assert admin.sessions(transport="websocket")["total"] == 5
        assert admin.sessions(service="echo")["total"] == 5
        assert admin.sessions(service="echo", transport="websocket", subprotocol="")["total"] == 4
        assert admin.sessions(peer="127.0.0.1")["total"] == 6
        assert admin.sessions(peer="127.0.0.0/8")["total"] == 6
        assert admin.sessions(peer="10.0.0.0/8")["total"] == 0
        assert admin.sessions(principal="nobody")["total"] == 0

        # Pages of 2 by cursor cover every session once, in id order.
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            pg = admin.sessions(**params)
            assert pg["total"] == 6 and len(pg["sessions"]) <= 2
            seen += [s["id"] for s in pg["sessions"]]
            cursor = pg["next_cursor"]
            if cursor is None:
                break
        assert seen == ids
        assert [s["id"] for s in admin.sessions(limit=2, offset=1)["sessions"]] == ids[1:3]
        # A cursor stays good when the session it names is gone.
        after_first = admin.sessions(limit=1)["next_cursor"]
        assert [s["id"] for s in admin.sessions(cursor=after_first, limit=3)["sessions"]] == ids[1:4]

        # Traffic counts follow the session's own messages, both ways.
        for i in range(3):
            anon[0].send("x" * 10)
            assert anon[0].recv(timeout=5) == "x" * 10
        deadline = time.monotonic() + 5
        while True:
            a = admin.session(a["id"])
            counts = (a["messages_in"], a["bytes_in"], a["messages_out"], a["bytes_out"])
            if counts == (3, 30, 3, 30) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert counts == (3, 30, 3, 30)
        assert admin.by_port(port_of(anon[1]))["messages_in"] == 0
        fb.send("over http")
        deadline = time.monotonic() + 5
        while admin.session(http[0]["id"])["messages_in"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert admin.session(http[0]["id"])["bytes_in"] == len("over http")
    finally:
        for w in anon + [carol]:
            w.close()
        stomp.ws.close()
        fb.delete()


def test_queue_depth_shows_a_client_that_stopped_reading(ag):
    admin = Admin(ag)
    conn = wsraw.open_ws(ag.host, ag.port, "/echo")
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stop = threading.Event()

    def flood():
        frame = wsraw.build_frame(wsraw.OP_TEXT, b"y" * 8192)
        conn.sock.settimeout(0.5)
        while not stop.is_set():
            try:
                conn.sock.sendall(frame)
            except (socket.timeout, OSError):
                continue

    sid = admin.by_port(conn.sock.getsockname()[1])["id"]
    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        queued = 0
        while time.monotonic() < deadline:
            queued = admin.session(sid)["queued"]
            if queued == 256:
                break
            time.sleep(0.1)
        # limits.outgoing_queue: the echo bridge waits for room, nothing is lost.
        assert queued == 256
    finally:
        stop.set()
        t.join(3)
        conn.close()


# --- closing ------------------------------------------------------------------------------

def test_close_one_with_code_and_reason_others_unaffected(ag):
    admin = Admin(ag)
    a, b, c = (ag.ws("/echo") for _ in range(3))
    fb = Fb(ag, "/echo")
    try:
        target = admin.by_port(port_of(b))
        r = admin.post(f"/api/sessions/{target['id']}/close", {"code": 4001, "reason": "maintenance window"})
        assert r.status_code == 202, r.text
        assert r.json() == {"closed": 1, "code": 4001, "reason": "maintenance window"}
        assert close_of(b) == (4001, "maintenance window")
        admin.wait_gone(target["id"])
        echoes(a)
        echoes(c)

        # The HTTP fallback client gets the same code in its close event; default code 1000.
        fsid = admin.sessions(transport="http")["sessions"][0]["id"]
        events = fb.events()
        r = admin.post(f"/api/sessions/{fsid}/close", {"code": 4003, "reason": "moved"})
        assert r.status_code == 202
        ev = None
        while ev is None or ev[0] != "close":
            ev = events.message()
        assert ev[1] == {"code": 4003, "reason": "moved"}
        events.close()

        r = admin.post(f"/api/sessions/{admin.by_port(port_of(c))['id']}/close")
        assert r.status_code == 202 and r.json()["code"] == 1000
        assert close_of(c)[0] == 1000
        echoes(a)
        assert admin.sessions()["total"] == 1
    finally:
        for w in (a, b, c):
            w.close()


def test_close_every_session_of_a_principal(ag):
    admin = Admin(ag)
    alice_echo = ag.ws("/echo", additional_headers=basic("alice", "alice-pw"))
    stomp = stomp_util.RawStomp(ag, additional_headers=basic("alice", "alice-pw"))
    stomp.connect()
    token, _ = hs_token("carol")
    carol = ag.ws("/echo", additional_headers={"Authorization": f"Bearer {token}"})
    anon = ag.ws("/echo")
    try:
        assert admin.sessions(principal="alice")["total"] == 2
        r = admin.post("/api/principals/alice/close", {"code": 4002, "reason": "account locked"})
        assert r.status_code == 202, r.text
        assert r.json() == {"closed": 2, "code": 4002, "reason": "account locked"}
        assert close_of(alice_echo) == (4002, "account locked")
        deadline = time.monotonic() + 5
        while stomp.close_code is None and time.monotonic() < deadline:
            try:
                stomp.recv(timeout=0.5)  # the bridge may say goodbye (ERROR) first
            except AssertionError:
                pass
        assert (stomp.close_code, stomp.close_reason) == (4002, "account locked")
        echoes(carol)
        echoes(anon)
        deadline = time.monotonic() + 5
        while admin.sessions(principal="alice")["total"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert admin.sessions(principal="alice")["total"] == 0
        assert admin.sessions()["total"] == 2
        # Nobody by that name: nothing closed, not an error; names are percent-decoded.
        r = admin.post("/api/principals/ann%20lee/close")
        assert r.status_code == 202 and r.json()["closed"] == 0
    finally:
        for w in (alice_echo, carol, anon):
            w.close()
        stomp.ws.close()


# --- drain --------------------------------------------------------------------------------

def test_drain_goes_unready_then_exits_0_after_sessions_close(gateway_factory):
    g = gateway_factory(admin={"token": TOKEN}, limits={"drain_timeout": "8s"})
    admin = Admin(g)
    ws = g.ws("/echo")
    # A client that never answers the close frame keeps the drain open for the gateway's
    # linger (2 s): long enough to look at it.
    mute = wsraw.open_ws(g.host, g.port, "/echo")
    assert g.http_get("/readyz")[0] == 200
    t0 = time.monotonic()
    r = admin.post("/api/drain")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body == {"draining": True, "started": True, "sessions": 2, "drain_timeout_seconds": 8.0}
    status, text = g.http_get("/readyz", admin=True)
    assert status == 503 and b"draining" in text
    assert g.metric("gateway_draining") == 1
    info = admin.get("/api/info").json()
    assert info["draining"] is True and info["ready"] is False and "draining" in info["problems"]
    assert admin.post("/api/drain").json()["started"] is False
    assert close_of(ws) == (1001, "server shutting down")
    with pytest.raises(OSError):
        g.http_get("/readyz", timeout=1)  # the public listener is closed
    assert g.wait_exit(10) == 0
    assert time.monotonic() - t0 < 8
    assert "drain requested through the admin API" in g.log()
    mute.close()


# --- configuration ------------------------------------------------------------------------

def test_effective_configuration_has_no_secret(gateway_factory, tmp_path, realm):
    token_file = tmp_path / "admin.token"
    token_file.write_text("file-admin-token-5a9e\n")
    secrets = ["file-admin-token-5a9e", HS_SECRET, "amqp-pass-111", "stomp-pass-222",
               "amqp-bridge-pass-333"]
    g = gateway_factory(
        admin={"token_file": str(token_file)},
        auth={"realm_file": str(realm), "jwt": {"hs256_secret": HS_SECRET}},
        services=[
            echo_service(),
            {**stomp_util.stomp_service(backend="amqp://gw:amqp-pass-111@127.0.0.1:1/%2f"),
             "name": "via-rabbit", "path": "/rabbit"},
            {**stomp_util.stomp_service(backend="stomp://gw:stomp-pass-222@127.0.0.1:1"),
             "name": "via-activemq", "path": "/activemq"},
            {"name": "amqp", "path": "/amqp", "bridge": "amqp", "allow_no_subprotocol": True,
             "allow_missing_origin": True,
             "settings": {"backend": "amqp://gw:amqp-bridge-pass-333@127.0.0.1:1/%2f"}},
        ],
    )
    admin = Admin(g, "file-admin-token-5a9e")
    r = admin.get("/api/config")
    assert r.status_code == 200, r.text
    for s in secrets:
        assert s not in r.text, f"{s} in {r.text}"
    cfg = r.json()
    assert cfg["admin"]["token_file"] == str(token_file)
    assert cfg["auth"]["realm_file"] == str(realm)
    assert cfg["auth"]["jwt"]["hs256_secret"] == "<redacted>"
    services = {s["name"]: s for s in cfg["service"]}
    assert services["via-rabbit"]["settings"]["backend"] == "amqp://gw:<redacted>@127.0.0.1:1/%2f"
    assert services["via-activemq"]["settings"]["backend"] == "stomp://gw:<redacted>@127.0.0.1:1"
    assert services["amqp"]["settings"]["backend"] == "amqp://gw:<redacted>@127.0.0.1:1/%2f"
    assert cfg["limits"]["drain_timeout"] == "3s"
    # The old header no longer opens it: the file's token is the one.
    assert Admin(g).get("/api/config").status_code == 401


# --- auth and bad input -------------------------------------------------------------------

def test_without_a_token_the_api_is_off_and_metrics_stay_open(gw):
    admin = Admin(gw, token=None)
    for path in ["/api/sessions", "/api/info", "/api/config", "/api/nothing"]:
        r = admin.get(path)
        assert r.status_code == 404 and "admin.token" in r.json()["error"], (path, r.text)
    assert admin.post("/api/drain").status_code == 404
    assert Admin(gw).get("/api/sessions").status_code == 404  # any token: still off
    assert admin.get("/metrics").status_code == 200
    assert admin.get("/healthz").status_code == 200
    assert admin.get("/readyz").status_code == 200
    r = admin.get("/api/openapi.yaml")
    assert r.status_code == 200 and r.headers["content-type"] == "application/yaml"
    assert r.text == OPENAPI.read_text()
    assert gw.alive()


def test_missing_or_wrong_token_401(ag):
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}]:
        r = requests.get(f"http://{ag.host}:{ag.admin_port}/api/sessions", headers=headers, timeout=5)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer realm=")
        assert "error" in r.json()
    r = requests.post(f"http://{ag.host}:{ag.admin_port}/api/drain", timeout=5)
    assert r.status_code == 401
    wrong = requests.get(f"http://{ag.host}:{ag.admin_port}/api/info",
                         headers={"Authorization": "Bearer wrong"}, timeout=5)
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    # curl, as an operator types it.
    out = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {TOKEN}",
                          f"http://{ag.host}:{ag.admin_port}/api/info"],
                         capture_output=True, text=True, timeout=10)
    info = json.loads(out.stdout)
    assert info["ready"] is True and info["draining"] is False and info["sessions"] == 0
    assert ag.http_get("/readyz")[0] == 200


def test_bad_input_400_and_sessions_carry_on(ag):
    admin = Admin(ag)
    ws = ag.ws("/echo")
    sid = admin.by_port(port_of(ws))["id"]
    for params, word in [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"limit": "x"}, "limit"),
                         ({"offset": -1}, "offset"), ({"peer": "not-an-ip"}, "peer"),
                         ({"peer": "10.0.0.0/33"}, "peer"), ({"transport": "sse"}, "transport"),
                         ({"cursor": "bogus"}, "cursor"), ({"servce": "echo"}, "servce")]:
        r = admin.get("/api/sessions", params=params)
        assert r.status_code == 400 and word in r.json()["error"], (params, r.text)
    r = admin.get("/api/sessions?service=a&service=b")
    assert r.status_code == 400 and "twice" in r.json()["error"]
    assert admin.get("/api/sessions/abc").status_code == 400
    assert admin.get("/api/sessions/-1").status_code == 400
    r = admin.get("/api/sessions/999999")
    assert r.status_code == 404 and "999999" in r.json()["error"]
    assert admin.post("/api/sessions/999999/close").status_code == 404
    for body in [{"code": 1005}, {"code": 999}, {"code": 1002}, {"code": 5000}, {"code": "4000"},
                 {"code": None}, {"reason": "é" * 62}, {"reason": 5}, {"cod": 4000}, [4000]]:
        r = admin.post(f"/api/sessions/{sid}/close", body)
        assert r.status_code == 400, (body, r.text)
    r = admin.post(f"/api/sessions/{sid}/close", {"reason": "é" * 62})
    assert "124 bytes" in r.json()["error"]
    r = admin.post(f"/api/sessions/{sid}/close", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = admin.post(f"/api/sessions/{sid}/close", data=b"x" * 20000)
    assert r.status_code == 413
    assert admin.post("/api/principals/%FF/close").status_code == 400
    r = requests.delete(f"{admin.base}/api/sessions/{sid}", headers=admin.headers, timeout=5)
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    r = admin.get("/api/drain")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    # None of that touched the session or the process.
    echoes(ws)
    assert admin.session(sid)["closing"] is False
    assert ag.alive()
    ws.close()


# --- the contract ---------------------------------------------------------------------------

def test_schemathesis_finds_the_implementation_true_to_its_openapi_file(ag, tmp_path):
    """Every operation but the drain (it would end the run), with live sessions to find."""
    st = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "st"
    if not st.exists():
        pytest.fail("schemathesis missing: tests/scripts/install-deps.sh installs it", pytrace=False)
    alive = [ag.ws("/echo") for _ in range(3)]
    stomp = stomp_util.RawStomp(ag, additional_headers=basic("alice", "alice-pw"))
    stomp.connect()
    fb = Fb(ag, "/echo")
    base = f"http://{ag.host}:{ag.admin_port}"
    cmd = [str(st), "run", str(OPENAPI), "--url", base,
           "-H", f"Authorization: Bearer {TOKEN}",
           "--checks", "all",
           "--exclude-operation-id", "drain",
           # The schema's maxLength counts characters, the close frame's limit (123) bytes:
           # ASCII makes them one, so a valid-looking 123-character reason is valid.
           "--generation-codec", "ascii",
           "--max-examples", "60", "--workers", "1", "--seed", "1",
           "--no-color", "--report", "junit", "--report-junit-path", str(tmp_path / "junit.xml")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    print(out.stdout[-6000:])
    print(out.stderr[-3000:])
    assert out.returncode == 0, "schemathesis reported failures (output above)"
    assert "No issues found" in out.stdout
    junit = (tmp_path / "junit.xml").read_text()
    assert 'failures="0"' in junit and 'errors="0"' in junit
    assert ag.alive()
    for w in alive:
        w.close()
    stomp.ws.close()
    fb.delete()
