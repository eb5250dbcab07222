"""Logins that survive a reconnect storm: successful realm logins and verified JWTs are
remembered (keyed hash, short TTL), password hashes for misses run in a bounded pool, and
what does not fit is refused as "try again" (HTTP 503 + Retry-After, STOMP ERROR + 1013)
while other sessions' traffic keeps flowing."""

import base64
import subprocess
import threading
import time

import bcrypt
import jwt
import pytest

from gwproc import echo_service, gateway_bin
from stomp_util import RawStomp, stomp_service

HS_SECRET = "e2e-login-cache-secret-0123456789abcdef"
PASSWORDS = "gateway_auth_verifications_total"


def basic(user, pw):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


@pytest.fixture(scope="module")
def argon_hash():
    """A hash with the gateway's own (production) argon2 parameters."""
    out = subprocess.run([str(gateway_bin()), "hash-password", "alice-pw"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def slow_hash():
    """A bcrypt hash costly enough that one check is still running when the next arrives."""
    return bcrypt.hashpw(b"slow-pw", bcrypt.gensalt(rounds=12)).decode()


def realm_file(tmp_path, users):
    path = tmp_path / "users.toml"
    path.write_text("".join(
        f"[[user]]\nname = \"{name}\"\npassword_hash = '{h}'\nroles = [\"chat\"]\n\n"
        for name, h in users))
    return str(path)


def make(gateway_factory, tmp_path, users, **auth):
    return gateway_factory(
        auth={"realm_file": realm_file(tmp_path, users),
              "jwt": {"hs256_secret": HS_SECRET}, **auth},
        services=[stomp_service(),
                  echo_service(name="secure", path="/secure", require_auth=True)],
    )


def count(g, kind, result):
    return g.metric(PASSWORDS, kind=kind, result=result) or 0


def stomp_login(g, login, passcode):
    """CONNECT with a login; the CONNECTED or ERROR frame, and the close code if closed."""
    with RawStomp(g) as s:
        s.send("CONNECT", {"accept-version": "1.2", "host": "localhost",
                           "login": login, "passcode": passcode})
        f = s.recv(timeout=30)
        if f.command == "ERROR":
            s.pending.insert(0, f)
            s.expect_error(timeout=5)
        return f, s.close_code


def test_repeated_stomp_logins_are_served_from_the_cache(gateway_factory, tmp_path, argon_hash):
    g = make(gateway_factory, tmp_path, [("alice", argon_hash)])
    t0 = time.monotonic()
    f, _ = stomp_login(g, "alice", "alice-pw")
    first = time.monotonic() - t0
    assert f.command == "CONNECTED", f
    t0 = time.monotonic()
    for _ in range(30):
        f, _ = stomp_login(g, "alice", "alice-pw")
        assert f.command == "CONNECTED", f
    repeat = (time.monotonic() - t0) / 30
    assert count(g, "password", "verified") == 1
    assert count(g, "password", "cache_hit") == 30
    # One argon2 check costs more than a whole cached login, handshake included.
    assert repeat < first, (first, repeat)


def test_repeated_basic_handshakes_are_served_from_the_cache(gateway_factory, tmp_path,
                                                             argon_hash):
    g = make(gateway_factory, tmp_path, [("alice", argon_hash)])
    for _ in range(20):
        with g.ws("/secure", additional_headers=basic("alice", "alice-pw")) as c:
            c.send("hi")
            assert c.recv(timeout=5) == "hi"
    assert count(g, "password", "verified") == 1
    assert count(g, "password", "cache_hit") == 19
    v = g.metric("gateway_handshakes_total", service="secure", result="accepted")
    assert v == 20


def test_a_wrong_password_after_a_cached_right_one_is_refused(gateway_factory, tmp_path,
                                                              argon_hash):
    g = make(gateway_factory, tmp_path, [("alice", argon_hash)])
    assert stomp_login(g, "alice", "alice-pw")[0].command == "CONNECTED"
    assert stomp_login(g, "alice", "alice-pw")[0].command == "CONNECTED"
    assert count(g, "password", "cache_hit") == 1
    f, _ = stomp_login(g, "alice", "alice-pw2")
    assert f.command == "ERROR" and f.headers.get("message") == "login failed", f
    r = g.refused("/secure", additional_headers=basic("alice", "alice-p"))
    assert r.status_code == 401
    assert count(g, "password", "rejected") == 2
    # Refusals are not remembered either way: the right password still works, the wrong
    # one is checked (and refused) again.
    assert stomp_login(g, "alice", "alice-pw")[0].command == "CONNECTED"
    assert stomp_login(g, "alice", "alice-pw2")[0].command == "ERROR"
    assert count(g, "password", "rejected") == 3


def test_cache_size_zero_checks_every_login(gateway_factory, tmp_path, argon_hash):
    g = make(gateway_factory, tmp_path, [("alice", argon_hash)], login_cache_size=0)
    for _ in range(4):
        assert stomp_login(g, "alice", "alice-pw")[0].command == "CONNECTED"
    assert count(g, "password", "verified") == 4
    assert count(g, "password", "cache_hit") == 0


def test_cached_login_expires_after_the_ttl(gateway_factory, tmp_path, argon_hash):
    g = make(gateway_factory, tmp_path, [("alice", argon_hash)], login_cache_ttl="1s")
    assert stomp_login(g, "alice", "alice-pw")[0].command == "CONNECTED"
    assert stomp_login(g, "alice", "alice-pw")[0].command == "CONNECTED"
    time.sleep(1.3)
    assert stomp_login(g, "alice", "alice-pw")[0].command == "CONNECTED"
    assert count(g, "password", "verified") == 2
    assert count(g, "password", "cache_hit") == 1


def test_repeated_tokens_skip_the_signature_but_not_exp(gateway_factory, tmp_path, argon_hash):
    g = make(gateway_factory, tmp_path, [("alice", argon_hash)])
    now = int(time.time())
    token = jwt.encode({"sub": "carol", "exp": now + 2}, HS_SECRET, algorithm="HS256")
    for _ in range(5):
        with g.ws("/secure", additional_headers={"Authorization": f"Bearer {token}"}):
            pass
    assert count(g, "token", "verified") == 1
    assert count(g, "token", "cache_hit") == 4
    time.sleep(max(0.0, now + 3 - time.time()))
    r = g.refused("/secure", additional_headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert b"token expired" in r.body


def test_overload_is_503_with_retry_after_and_stomp_try_again(gateway_factory, tmp_path,
                                                              slow_hash):
    g = make(gateway_factory, tmp_path, [("slow", slow_hash)],
             max_concurrent_hashes=1, max_waiting_hashes=0)
    # Occupy the only hashing slot with one (wrong, so never cached) slow check.
    busy = threading.Thread(
        target=lambda: g.refused("/secure", additional_headers=basic("slow", "wrong")))
    busy.start()
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        r = g.refused("/secure", additional_headers=basic("slow", "slow-pw"))
        assert time.monotonic() - t0 < 2, "refused at once, not after waiting"
        assert r.status_code == 503
        assert r.headers["Retry-After"] == "1"
        assert b"try again" in r.body
        f, code = stomp_login(g, "slow", "slow-pw")
        assert f.command == "ERROR" and f.headers.get("message") == "login busy", f
        assert "try again" in f.text
        assert code == 1013, code
    finally:
        busy.join(timeout=120)
    assert count(g, "password", "overloaded") == 2
    assert g.metric("gateway_handshakes_total", service="secure", result="auth_busy") == 1
    assert g.metric("gateway_auth_verifications_waiting") == 0
    # Once the slot is free the same login goes through.
    assert stomp_login(g, "slow", "slow-pw")[0].command == "CONNECTED"


def test_a_bad_password_flood_leaves_other_sessions_flowing(gateway_factory, tmp_path,
                                                            argon_hash):
    g = make(gateway_factory, tmp_path, [("alice", argon_hash)],
             hash_wait_timeout="500ms", max_waiting_hashes=8)
    sub = RawStomp(g)
    pub = RawStomp(g)
    sub.connect(login="alice", passcode="alice-pw")
    pub.connect(login="alice", passcode="alice-pw")
    sub.receipt("SUBSCRIBE", {"id": "0", "destination": "/topic/live"})

    stop = threading.Event()
    statuses = []

    def flood(k):
        n = 0
        while not stop.is_set() and n < 200:
            r = g.refused("/secure", additional_headers=basic("alice", f"bad-{k}-{n}"))
            statuses.append(r.status_code)
            n += 1

    flooders = [threading.Thread(target=flood, args=(k,)) for k in range(8)]
    for t in flooders:
        t.start()
    latencies = []
    try:
        time.sleep(1.0)  # let the pool fill and the queue overflow
        for i in range(40):
            t0 = time.monotonic()
            pub.send("SEND", {"destination": "/topic/live"}, f"m{i}")
            f = sub.recv(timeout=5)
            latencies.append(time.monotonic() - t0)
            assert f.command == "MESSAGE" and f.text == f"m{i}", f
            time.sleep(0.05)
    finally:
        stop.set()
        for t in flooders:
            t.join(timeout=60)
        sub.ws.close()
        pub.ws.close()
    assert set(statuses) <= {401, 503}, set(statuses)
    assert 503 in statuses and 401 in statuses
    assert count(g, "password", "overloaded") == statuses.count(503)
    latencies.sort()
    # Messages keep flowing while both hashing threads are busy and logins queue.
    assert latencies[-1] < 1.0, latencies[-5:]
    assert latencies[len(latencies) // 2] < 0.25, latencies
