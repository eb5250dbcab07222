"""The gateway's log on stderr: `[log] format = "json"` writes one JSON object per line,
and every line a session produces (the transport's and the bridge's own) carries the
session's id, service, principal, peer, transport and subprotocol; `log.level` from the
file applies unless `RUST_LOG` is set; text stays the default; a bad level is refused by
`--check-config` with its key named.

Sessions are STOMP ones: stomp.py logging in with CONNECT login/passcode against the realm,
a raw client with a JWT on the handshake, and an anonymous one.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import bcrypt
import jwt
import pytest

from gwproc import base_config, free_port, gateway_bin, to_toml
from stomp_util import Listener, RawStomp, stomp_service

stomp = pytest.importorskip("stomp")

HS_SECRET = "e2e-logging-hs256-secret-0123456789abcdef"
ACL = [
    {"roles": ["trader"], "subscribe": ["/topic/prices.#"]},
    {"roles": ["anonymous"], "subscribe": ["/topic/status"]},
]
# Session lines at debug (start, end, the bridge's ERROR), everything else at info.
LEVEL = "info,gateway=debug,bridge_stomp=debug"


def realm(tmp_path) -> str:
    p = tmp_path / "users.toml"
    h = bcrypt.hashpw(b"tina-pw", bcrypt.gensalt(rounds=4)).decode()
    p.write_text(f'[[user]]\nname = "tina"\npassword_hash = \'{h}\'\nroles = ["trader"]\n')
    return str(p)


def start(gateway_factory, tmp_path, log: dict | None, env: dict | None = None):
    sections = {"auth": {"realm_file": realm(tmp_path), "jwt": {"hs256_secret": HS_SECRET}}}
    if log is not None:
        sections["log"] = log
    # gwproc sets RUST_LOG=info for every test; blank, the file's log.level is in force.
    return gateway_factory(services=[stomp_service(acl=ACL, heart_beat=[0, 0])],
                           env={"RUST_LOG": "", **(env or {})}, **sections)


class Raw(RawStomp):
    def __init__(self, gw, headers: dict | None = None):
        self.ws = gw.ws("/ws", subprotocols=["v12.stomp"], additional_headers=headers or {})
        self.pending = []
        self.close_code = None
        self.close_reason = None

    @property
    def local(self) -> str:
        host, port = self.ws.socket.getsockname()[:2]
        return f"{host}:{port}"


def session_id(connected_headers: dict) -> int:
    m = re.fullmatch(r"session-(\d+)", connected_headers["session"])
    assert m, connected_headers
    return int(m.group(1))


def bearer(sub: str, roles: list[str]) -> dict:
    now = int(time.time())
    token = jwt.encode({"sub": sub, "roles": roles, "iat": now, "exp": now + 300},
                       HS_SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def stomp_py_login_refused_subscribe(gw) -> int:
    """stomp.py logs in as tina on CONNECT, is refused a SUBSCRIBE; returns the session id."""
    conn = stomp.WSStompConnection([(gw.host, gw.port)], ws_path="/ws",
                                   header={"Sec-WebSocket-Protocol": "v12.stomp"},
                                   reconnect_attempts_max=1, timeout=5)
    lst = Listener()
    conn.set_listener("t", lst)
    conn.connect(username="tina", passcode="tina-pw", wait=True)
    sid = session_id(lst.connected.get(timeout=3).headers)
    conn.subscribe("/topic/orders.secret", id="denied")
    err = lst.errors.get(timeout=5)
    assert err.headers.get("message") == "access denied", err.headers
    deadline = time.monotonic() + 5
    while not lst.disconnected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lst.disconnected, "the gateway did not close after the ERROR"
    return sid


def lines_of(gw) -> list[str]:
    return [ln for ln in gw.log().splitlines() if ln.strip()]


def test_json_lines_carry_the_session_fields(gateway_factory, tmp_path):
    gw = start(gateway_factory, tmp_path, {"format": "json", "level": LEVEL})

    login_sid = stomp_py_login_refused_subscribe(gw)

    with Raw(gw, bearer("jo", ["trader"])) as jo:
        jo_sid = session_id(jo.connect().headers)
        jo_peer = jo.local
        jo.send("SUBSCRIBE", {"destination": "/topic/orders.x", "id": "s"})
        assert jo.expect_error(5).headers["message"] == "access denied"
        assert jo.close_code == 1008

    with Raw(gw) as anon:
        anon_sid = session_id(anon.connect().headers)
        anon_peer = anon.local
        anon.receipt("DISCONNECT", rid="bye")

    assert gw.stop() == 0
    records = []
    for ln in lines_of(gw):
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {ln!r}")
        assert isinstance(rec, dict), ln
        for key in ("timestamp", "level", "target", "message"):
            assert key in rec, f"{key} missing: {ln}"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", rec["timestamp"]), ln
        records.append(rec)
    assert any("listening on" in r["message"] and "session" not in r for r in records)

    def of(sid):
        got = [r for r in records if r.get("session") == sid]
        assert got, f"no lines for session {sid}"
        for r in got:
            assert r["service"] == "stomp", r
            assert r["transport"] == "websocket", r
            assert r["subprotocol"] == "v12.stomp", r
            assert re.fullmatch(r"127\.0\.0\.1:\d+", r["peer"]), r
        messages = [r["message"] for r in got]
        assert messages[0] == "session start" and messages[-1] == "session end", messages
        return got

    # The realm login on CONNECT names the principal from then on, on the bridge's own
    # line (STOMP ERROR) as on the transport's.
    login = of(login_sid)
    assert "principal" not in login[0], login[0]
    error = [r for r in login if r["message"].startswith("STOMP ERROR")]
    assert error and error[0]["target"].startswith("bridge_stomp"), login
    assert error[0]["level"] == "DEBUG" and error[0]["reason"] == "access_denied", error
    assert all(r["principal"] == "tina" for r in login[login.index(error[0]):]), login

    # A JWT on the handshake: the principal is there from the first line.
    jo_lines = of(jo_sid)
    assert all(r["principal"] == "jo" and r["peer"] == jo_peer for r in jo_lines), jo_lines
    assert any("session ended" in r["message"] and r.get("source") == "client" for r in jo_lines)

    anon_lines = of(anon_sid)
    assert all("principal" not in r and r["peer"] == anon_peer for r in anon_lines), anon_lines


def test_text_stays_the_default_and_shows_the_session_when_asked(gateway_factory, tmp_path):
    gw = start(gateway_factory, tmp_path, {"level": LEVEL, "session_fields": True})
    with Raw(gw, bearer("jo", ["trader"])) as jo:
        sid = session_id(jo.connect().headers)
        peer = jo.local
        jo.send("SUBSCRIBE", {"destination": "/topic/orders.x", "id": "s"})
        jo.expect_error(5)
    assert gw.stop() == 0
    lines = lines_of(gw)
    assert not any(ln.lstrip().startswith("{") for ln in lines), lines
    assert any(re.search(r" INFO gateway::run: listening on http://", ln) for ln in lines), lines
    span = (f"session{{session={sid} service=stomp principal=jo peer={peer} "
            f"transport=websocket subprotocol=v12.stomp}}: ")
    error = [ln for ln in lines if "STOMP ERROR" in ln]
    assert error and span + "bridge_stomp::session: STOMP ERROR" in error[0], (span, error)
    assert "\x1b[" not in "".join(lines), "colour codes in a log that is not a terminal"

    # Without the setting, text lines go without the span (it costs memory per session).
    plain = start(gateway_factory, tmp_path, {"level": LEVEL})
    with Raw(plain, bearer("jo", ["trader"])) as jo:
        jo.connect()
        jo.send("SUBSCRIBE", {"destination": "/topic/orders.x", "id": "s"})
        jo.expect_error(5)
    assert plain.stop() == 0
    error = [ln for ln in lines_of(plain) if "STOMP ERROR" in ln]
    assert error and "session{" not in error[0], error


def test_rust_log_outranks_log_level(gateway_factory, tmp_path):
    quiet = start(gateway_factory, tmp_path, {"level": "warn"})
    loud = start(gateway_factory, tmp_path, {"level": "warn"}, env={"RUST_LOG": "info"})
    for g in (quiet, loud):
        assert g.stop() == 0
    assert not any("listening on" in ln for ln in lines_of(quiet)), lines_of(quiet)
    assert any("listening on" in ln for ln in lines_of(loud)), lines_of(loud)


def test_a_startup_failure_in_json_is_still_one_json_line(gateway_factory, tmp_path):
    gw = start(gateway_factory, tmp_path, {"format": "json"})
    taken = gw.config["server"]["listen"]
    cfg = base_config(free_port(), free_port())
    cfg["server"]["listen"] = taken
    cfg["log"] = {"format": "json"}
    path = tmp_path / "clash.toml"
    path.write_text(to_toml(cfg))
    p = subprocess.run([str(gateway_bin()), "--config", str(path)], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL,
                       env={"RUST_LOG": "", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 1, p.stderr
    records = [json.loads(ln) for ln in p.stderr.splitlines() if ln.strip()]
    errors = [r for r in records if r["level"] == "ERROR"]
    assert len(errors) == 1 and "server.listen" in errors[0]["message"], p.stderr


def check_config(tmp_path, log: dict, env: dict | None = None):
    cfg = base_config(free_port(), free_port())
    cfg["log"] = log
    path = tmp_path / "cfg.toml"
    path.write_text(to_toml(cfg))
    p = subprocess.run([str(gateway_bin()), "--check-config", str(path)], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL,
                       env={"PATH": "/usr/bin:/bin", **(env or {})})
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize("log, key, words", [
    ({"level": "debg"}, "log.level", ["`debg` is not a level", "debg=debug"]),
    ({"level": "info,bridge_stomp=loud"}, "log.level", ["bridge_stomp=loud"]),
    ({"level": ""}, "log.level", ["empty"]),
    ({"format": "xml"}, "log.format", ["xml"]),
])
def test_check_config_refuses_a_bad_log_setting(gateway_binary, tmp_path, log, key, words):
    rc, out = check_config(tmp_path, log)
    assert rc == 2, out
    assert f"`{key}`" in out, out
    for w in words:
        assert w in out, out


def test_check_config_shows_the_log_settings_and_takes_env_overrides(gateway_binary, tmp_path):
    rc, out = check_config(tmp_path, {"format": "json", "level": "warn,bridge_stomp=debug"})
    assert rc == 0, out
    assert re.search(r'\[log\]\nformat = "json"\nlevel = "warn,bridge_stomp=debug"', out), out
    rc, out = check_config(tmp_path, {}, env={"GATEWAY__LOG__LEVEL": "verbose"})
    assert rc == 2 and "`log.level`" in out and "`verbose`" in out, out


def wait_for_line(gw, pred, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ln in lines_of(gw):
            rec = json.loads(ln)
            if pred(rec):
                return rec
        time.sleep(0.05)
    raise AssertionError(f"no such line within {timeout}s:\n{gw.log()[-3000:]}")


def test_sighup_applies_a_new_level_and_keeps_the_format(gateway_factory, tmp_path):
    gw = start(gateway_factory, tmp_path, {"format": "json", "level": "info"})
    with Raw(gw) as before:
        first = session_id(before.connect().headers)
        before.receipt("DISCONNECT", rid="bye")

    # The level goes up to debug; the format change needs a restart and is only reported.
    gw.config["log"] = {"format": "text", "level": LEVEL}
    gw.config_path.write_text(to_toml(gw.config))
    gw.proc.send_signal(signal.SIGHUP)
    now = wait_for_line(gw, lambda r: r["message"].startswith("log level now"))
    assert LEVEL in now["message"], now
    warned = wait_for_line(gw, lambda r: "need a restart" in r["message"])
    assert "log.format" in warned["keys"], warned

    with Raw(gw) as after:
        second = session_id(after.connect().headers)
        after.receipt("DISCONNECT", rid="bye")
    wait_for_line(gw, lambda r: r.get("session") == second and r["message"] == "session end")
    assert gw.stop() == 0
    records = [json.loads(ln) for ln in lines_of(gw)]  # still JSON after the reload
    assert not [r for r in records if r.get("session") == first and r["level"] == "DEBUG"]
    assert [r for r in records if r.get("session") == second and r["message"] == "session start"]
