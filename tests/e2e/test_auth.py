"""Authentication (Basic against a realm file, JWT HS256/RS256 by header, query,
cookie) and role checks."""

import base64
import subprocess
import time

import bcrypt
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gwproc import echo_service, gateway_bin

HS_SECRET = "e2e-hs256-secret-0123456789abcdef"


def basic(user, pw):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def argon_hash():
    out = subprocess.run([str(gateway_bin()), "hash-password", "alice-pw"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    h = out.stdout.strip()
    assert h.startswith("$argon2id$"), h
    return h


@pytest.fixture
def ag(gateway_factory, tmp_path, rsa_key, argon_hash):
    bob_hash = bcrypt.hashpw(b"bob-pw", bcrypt.gensalt(rounds=4)).decode()
    assert bob_hash.startswith("$2b$")
    realm = tmp_path / "users.toml"
    realm.write_text(
        "[[user]]\n"
        'name = "alice"\n'
        f"password_hash = '{argon_hash}'\n"
        'roles = ["trader", "viewer"]\n\n'
        "[[user]]\n"
        'name = "bob"\n'
        f"password_hash = '{bob_hash}'\n"
        'roles = ["viewer"]\n'
    )
    pub = tmp_path / "jwt_pub.pem"
    pub.write_bytes(rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return gateway_factory(
        auth={
            "realm_file": str(realm),
            "cookie": "access_token",
            "jwt": {"hs256_secret": HS_SECRET, "rs256_public_key": str(pub)},
        },
        services=[
            echo_service(name="public", path="/public"),
            echo_service(name="secure", path="/secure", require_auth=True),
            echo_service(name="traders", path="/traders", require_roles=["trader"]),
        ],
    )


def hs(sub="carol", roles=("viewer",), exp_in=300, secret=HS_SECRET, **extra):
    now = int(time.time())
    claims = {"sub": sub, "roles": list(roles), "iat": now, "exp": now + exp_in, **extra}
    return jwt.encode(claims, secret, algorithm="HS256")


def rs(key, sub="dave", roles=("viewer",), exp_in=300):
    now = int(time.time())
    return jwt.encode({"sub": sub, "roles": list(roles), "iat": now, "exp": now + exp_in},
                      key, algorithm="RS256")


def accepted(g, path, **kw):
    with g.ws(path, **kw) as c:
        c.send("auth-ok")
        assert c.recv(timeout=5) == "auth-ok"


# --- Basic --------------------------------------------------------------------

def test_basic_argon2_user(ag):
    accepted(ag, "/secure", additional_headers=basic("alice", "alice-pw"))


def test_basic_bcrypt_user(ag):
    accepted(ag, "/secure", additional_headers=basic("bob", "bob-pw"))


@pytest.mark.parametrize("user,pw", [("alice", "wrong"), ("bob", "alice-pw"), ("nobody", "x")])
def test_basic_wrong_password_401(ag, user, pw):
    assert ag.refused("/secure", additional_headers=basic(user, pw)).status_code == 401


def test_wrong_credentials_401_even_without_require_auth(ag):
    assert ag.refused("/public", additional_headers=basic("alice", "wrong")).status_code == 401
    assert ag.refused("/public", additional_headers=bearer(hs(secret="not-the-secret-but-just-as-long-0123"))).status_code == 401
    accepted(ag, "/public")  # no credentials at all: fine


def test_missing_credentials_401(ag):
    assert ag.refused("/secure").status_code == 401
    v = ag.wait_metric("gateway_handshakes_total", lambda v: (v or 0) >= 1, service="secure", result="unauthenticated")
    assert v == 1


# --- JWT ------------------------------------------------------------------------

def test_bearer_hs256(ag):
    accepted(ag, "/secure", additional_headers=bearer(hs()))


def test_bearer_rs256(ag, rsa_key):
    accepted(ag, "/secure", additional_headers=bearer(rs(rsa_key)))


def test_rs256_signed_by_other_key_401(ag):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert ag.refused("/secure", additional_headers=bearer(rs(other))).status_code == 401


def test_access_token_query(ag):
    accepted(ag, f"/secure?access_token={hs()}")
    assert ag.refused("/secure?access_token=not.a.jwt").status_code == 401


def test_cookie(ag):
    accepted(ag, "/secure", additional_headers={"Cookie": f"theme=dark; access_token={hs()}"})
    assert ag.refused("/secure", additional_headers={"Cookie": "access_token=garbage"}).status_code == 401


def test_expired_jwt_401(ag):
    assert ag.refused("/secure", additional_headers=bearer(hs(exp_in=-120))).status_code == 401


def test_tampered_jwt_401(ag):
    h, p, s = hs().split(".")
    forged_payload = base64.urlsafe_b64encode(
        b'{"sub":"carol","roles":["trader"],"exp":9999999999}').rstrip(b"=").decode()
    assert ag.refused("/traders", additional_headers=bearer(f"{h}.{forged_payload}.{s}")).status_code == 401


def test_alg_none_jwt_401(ag):
    token = jwt.encode({"sub": "eve", "roles": ["trader"], "exp": int(time.time()) + 300}, None, algorithm="none")
    assert ag.refused("/traders", additional_headers=bearer(token)).status_code == 401


# --- roles ----------------------------------------------------------------------

def test_missing_role_403(ag):
    assert ag.refused("/traders", additional_headers=basic("bob", "bob-pw")).status_code == 403
    assert ag.refused("/traders", additional_headers=bearer(hs(roles=["viewer"]))).status_code == 403
    v = ag.wait_metric("gateway_handshakes_total", lambda v: (v or 0) >= 2, service="traders", result="forbidden")
    assert v == 2


def test_role_required_means_auth_required(ag):
    assert ag.refused("/traders").status_code == 401


def test_right_role_accepted(ag, rsa_key):
    accepted(ag, "/traders", additional_headers=basic("alice", "alice-pw"))
    accepted(ag, "/traders", additional_headers=bearer(hs(roles=["trader"])))
    accepted(ag, "/traders", additional_headers=bearer(rs(rsa_key, roles=["viewer", "trader"])))
