"""`gateway --check-config`, env overrides, `gateway hash-password`."""

import os
import re
import subprocess

import pytest

from gwproc import base_config, free_port, gateway_bin, to_toml


def run(args, env_extra=None, timeout=30):
    env = dict(os.environ)
    env.update(env_extra or {})
    p = subprocess.run([str(gateway_bin()), *args], capture_output=True, text=True,
                       timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout + p.stderr


def write(tmp_path, text, name="cfg.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_check_config_valid_prints_effective(tmp_path, gateway_binary):
    port = free_port()
    p = write(tmp_path, to_toml(base_config(port, free_port())))
    rc, out = run(["--check-config", str(p)])
    assert rc == 0, out
    assert f"127.0.0.1:{port}" in out
    assert "/echo" in out


def test_check_config_unknown_key(tmp_path, gateway_binary):
    text = to_toml(base_config(free_port(), free_port())).replace("[server]\n", "[server]\nlistne = \"127.0.0.1:1\"\n", 1)
    rc, out = run(["--check-config", str(write(tmp_path, text))])
    assert rc != 0, out
    assert "listne" in out, out


def test_check_config_unknown_service_key(tmp_path, gateway_binary):
    text = to_toml(base_config(free_port(), free_port())).replace('bridge = "echo"', 'bridge = "echo"\nbridgee = "x"', 1)
    rc, out = run(["--check-config", str(write(tmp_path, text))])
    assert rc != 0, out
    assert "bridgee" in out, out


def test_check_config_bad_value_names_key(tmp_path, gateway_binary):
    text = to_toml(base_config(free_port(), free_port())).replace("max_connections = 19000", 'max_connections = "lots"', 1)
    rc, out = run(["--check-config", str(write(tmp_path, text))])
    assert rc != 0, out
    assert "max_connections" in out, out


def test_check_config_unknown_bridge(tmp_path, gateway_binary):
    text = to_toml(base_config(free_port(), free_port())).replace('bridge = "echo"', 'bridge = "no-such-bridge"', 1)
    rc, out = run(["--check-config", str(write(tmp_path, text))])
    assert rc != 0, out
    assert "no-such-bridge" in out, out


def test_env_override_in_check_config(tmp_path, gateway_binary):
    port = free_port()
    p = write(tmp_path, to_toml(base_config(port, free_port())))
    rc, out = run(["--check-config", str(p)], {
        "GATEWAY__SERVER__LISTEN": "127.0.0.1:9999",
        "GATEWAY__LIMITS__MAX_CONNECTIONS": "4321",
    })
    assert rc == 0, out
    assert "127.0.0.1:9999" in out, out
    assert f"127.0.0.1:{port}" not in out, "file value printed although overridden"
    assert re.search(r"max_connections\W+4321", out), out


def test_env_override_takes_effect_at_run(gateway_factory):
    g = gateway_factory(start=False)
    other = free_port()
    g.env["GATEWAY__SERVER__LISTEN"] = f"127.0.0.1:{other}"
    g.port = other
    g.start()
    with g.ws() as c:
        c.send("env")
        assert c.recv(timeout=5) == "env"


def test_hash_password(gateway_binary):
    rc, out = run(["hash-password", "s3cret"])
    assert rc == 0, out
    h = out.strip().splitlines()[-1]
    assert h.startswith("$argon2id$v=19$"), h
    rc2, out2 = run(["hash-password", "s3cret"])
    assert out2.strip().splitlines()[-1] != h, "hashes must be salted"


def _deploy_configs():
    from gwproc import ROOT
    # users.example.toml is a realm file, not a gateway configuration.
    return sorted(p for p in (ROOT / "deploy").glob("*.toml") if p.name != "users.example.toml")


@pytest.fixture(scope="module")
def deploy_files(tmp_path_factory):
    """The files the examples name under /etc/gateway/ and /srv/gateway/www, made in a tmp
    dir: a TLS certificate and key, a JWT public key, the example realm, a static dir."""
    import datetime
    import shutil

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    from gwproc import ROOT

    root = tmp_path_factory.mktemp("deploy")
    etc = root / "etc"
    (etc / "tls").mkdir(parents=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    for f in ("fullchain.pem", "clients-ca.pem"):
        (etc / "tls" / f).write_bytes(pem)
    (etc / "tls" / "privkey.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    rsa_pub = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    (etc / "jwt-public.pem").write_bytes(rsa_pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (etc / "admin.token").write_text("example-admin-token\n")
    users = ROOT / "deploy" / "users.example.toml"
    if users.exists():
        shutil.copy(users, etc / "users.toml")
    www = root / "www"
    www.mkdir()
    return etc, www


@pytest.mark.parametrize("example", _deploy_configs(), ids=lambda p: p.name)
def test_shipped_example_config_is_valid(example, tmp_path, deploy_files, gateway_binary):
    """Every deploy/*.toml passes --check-config (README shows them, so the docs cannot
    rot), with the files it names made in a tmp dir. Broker backends are built but never
    connect: the check does not run them."""
    import tomllib

    etc, www = deploy_files
    cfg = tmp_path / example.name
    cfg.write_text(example.read_text().replace("/etc/gateway/", f"{etc}/")
                   .replace("/srv/gateway/www", str(www)))
    rc, out = run(["--check-config", str(cfg)])
    assert rc == 0, out
    for service in tomllib.loads(example.read_text()).get("service", []):
        assert f'name = "{service["name"]}"' in out, f"service {service['name']} missing:\n{out}"


def test_check_config_hides_secrets_and_prints_valid_toml(tmp_path, gateway_binary):
    """What --check-config prints lands in terminals and CI logs: broker passwords in URIs
    and secret-named settings are redacted, and the output is still a configuration."""
    cfg = base_config(free_port(), free_port())
    cfg["service"] = [{
        "name": "stomp-rabbit", "path": "/stomp", "bridge": "stomp",
        "allow_missing_origin": True,
        "settings": {"backend": "amqp://gw:Sup3rSecretPw@127.0.0.1:5672/%2f"},
    }]
    rc, out = run(["--check-config", str(write(tmp_path, to_toml(cfg)))])
    assert rc == 0, out
    assert "Sup3rSecretPw" not in out, out
    assert "amqp://gw:<redacted>@127.0.0.1:5672" in out, out
    again = write(tmp_path, out, name="printed.toml")
    rc, out2 = run(["--check-config", str(again)])
    assert rc == 0, out2
