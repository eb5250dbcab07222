"""wss:// with server.tls, and client certificates (client_auth)."""

import datetime
import ipaddress
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import wsraw


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject_key, cn, issuer_key, issuer_name, *, ca=False, server=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(_name(cn)).issuer_name(issuer_name or _name(cn))
         .public_key(subject_key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
    elif server:
        b = (b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem_key(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


def _pem_cert(c):
    return c.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(ca_key, "e2e test CA", ca_key, None, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _cert(srv_key, "localhost", ca_key, ca.subject, server=True)
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _cert(cli_key, "e2e client", ca_key, ca.subject)
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _cert(other_ca_key, "other CA", other_ca_key, None, ca=True)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = _cert(rogue_key, "rogue client", other_ca_key, other_ca.subject)
    files = {
        "ca": (d / "ca.pem", _pem_cert(ca)),
        "cert": (d / "server.pem", _pem_cert(srv) + _pem_cert(ca)),
        "key": (d / "server.key", _pem_key(srv_key)),
        "client_cert": (d / "client.pem", _pem_cert(cli)),
        "client_key": (d / "client.key", _pem_key(cli_key)),
        "rogue_cert": (d / "rogue.pem", _pem_cert(rogue)),
        "rogue_key": (d / "rogue.key", _pem_key(rogue_key)),
    }
    for path, data in files.values():
        path.write_bytes(data)
    return {k: str(p) for k, (p, _) in files.items()}


def client_ctx(pki, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def test_wss_echo(gateway_factory, pki):
    g = gateway_factory(server={"tls": {"cert": pki["cert"], "key": pki["key"]}},
                        client_ssl=client_ctx(pki))
    assert g.http_get("/healthz")[0] == 200
    with g.ws() as c:
        c.send("over tls")
        assert c.recv(timeout=5) == "over tls"
        c.send(b"\x00" * 100_000)
        assert c.recv(timeout=5) == b"\x00" * 100_000


def test_plain_ws_to_tls_port_refused(gateway_factory, pki):
    g = gateway_factory(server={"tls": {"cert": pki["cert"], "key": pki["key"]}},
                        client_ssl=client_ctx(pki))
    with wsraw.connect(g.host, g.port) as c:
        c.send(wsraw.upgrade_request(f"{g.host}:{g.port}", "/echo", key=wsraw.new_key()))
        data = c.wait_eof(timeout=15)
    assert b"101 Switching Protocols" not in data
    with g.ws() as c:  # still serving TLS
        c.send("ok")
        assert c.recv(timeout=5) == "ok"


def test_tls_handshake_timeout(gateway_factory, pki):
    g = gateway_factory(server={"tls": {"cert": pki["cert"], "key": pki["key"]}},
                        limits={"handshake_timeout": "1s"}, client_ssl=client_ctx(pki))
    t0 = time.monotonic()
    with wsraw.connect(g.host, g.port) as c:  # TCP only, no ClientHello
        c.wait_eof(timeout=5)
    assert 0.8 <= time.monotonic() - t0 <= 4


def test_client_cert_required(gateway_factory, pki):
    g = gateway_factory(
        server={"tls": {"cert": pki["cert"], "key": pki["key"], "client_ca": pki["ca"],
                        "client_auth": "required"}},
        client_ssl=client_ctx(pki, pki["client_cert"], pki["client_key"]),
    )
    with g.ws() as c:
        c.send("with cert")
        assert c.recv(timeout=5) == "with cert"
    import websockets.sync.client as wsc
    from websockets.exceptions import WebSocketException
    for label, ctx in (("no certificate", client_ctx(pki)),
                       ("certificate from another CA", client_ctx(pki, pki["rogue_cert"], pki["rogue_key"]))):
        try:
            c = wsc.connect(g.url(), ssl=ctx, proxy=None, open_timeout=5, legacy=True)
            # TLS 1.3: the server's refusal of the certificate may surface on first use.
            c.send("x")
            got = c.recv(timeout=5)
        except (ssl.SSLError, OSError, EOFError, WebSocketException):
            continue
        pytest.fail(f"{label}: session worked (got {got!r}) although client_auth = required")


def test_client_cert_optional(gateway_factory, pki):
    g = gateway_factory(
        server={"tls": {"cert": pki["cert"], "key": pki["key"], "client_ca": pki["ca"],
                        "client_auth": "optional"}},
        client_ssl=client_ctx(pki),
    )
    with g.ws() as c:  # no certificate: fine
        c.send("no cert")
        assert c.recv(timeout=5) == "no cert"
    import websockets.sync.client as wsc
    with wsc.connect(g.url(), ssl=client_ctx(pki, pki["client_cert"], pki["client_key"]),
                     proxy=None, open_timeout=5, legacy=True) as c:
        c.send("cert")
        assert c.recv(timeout=5) == "cert"
