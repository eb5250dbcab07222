"""TLS from the gateway to its brokers, against a private RabbitMQ node with TLS listeners
for AMQP (amqps://) and for its STOMP plugin (stomp+ssl://). The node's certificate is made
by `openssl req -x509` (self-signed, CA:TRUE, as small installs have it) and the node
requires a client certificate (verify_peer, fail_if_no_peer_cert), signed by a CA of the
test's own. Trust by `ca_file` (the server's own certificate) and by `pin_sha256` (curl's
form, computed by openssl); a wrong pin and a missing client certificate are refused with
errors that name RabbitMQ and TLS; the AMQP bridge over amqps://; `--check-config` names the key of a bad file or pin.

The STOMP-over-TLS backend is tested against RabbitMQ's STOMP plugin rather than ActiveMQ:
ActiveMQ's stomp+ssl connector needs a JKS keystore and a second JVM start per module.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from amqp_util import RawAmqp, amqp_service, publish
from gwproc import base_config, gateway_bin, to_toml
from rabbit_util import messages, private_rabbit, stomp, subscribe, wait_ready
from stomp_util import RawStomp, stomp_service
from tls_util import self_signed, signed_by, spki_pin, spki_pin_hex


class Certs:
    def __init__(self, d: Path):
        self.server, self.server_key = self_signed(d, "server", "localhost")
        ca = self_signed(d, "client-ca", "Gateway client CA")
        self.client_ca = ca[0]
        self.client, self.client_key = signed_by(d, "client", ca, "gateway")
        self.other_ca = self_signed(d, "other-ca", "localhost")[0]


@pytest.fixture(scope="module")
def tls_rabbit(tmp_path_factory):
    certs = Certs(tmp_path_factory.mktemp("certs"))

    def configure(d: Path, port: int) -> dict:
        # Ports next to the claimed AMQP port (5700..5799), below the ephemeral range.
        ports = {"amqps": port + 200, "stomp": port + 300, "stomps": port + 400}
        configure.ports = ports
        return {
            "RABBITMQ_PLUGINS": "rabbitmq_stomp",
            "RABBITMQ_STOMP_PORT": str(ports["stomp"]),
            "RABBITMQ_EXTRA_CONF": "\n".join([
                f"listeners.ssl.default = 127.0.0.1:{ports['amqps']}",
                f"stomp.listeners.ssl.1 = 127.0.0.1:{ports['stomps']}",
                f"ssl_options.cacertfile = {certs.client_ca}",
                f"ssl_options.certfile = {certs.server}",
                f"ssl_options.keyfile = {certs.server_key}",
                "ssl_options.verify = verify_peer",
                "ssl_options.fail_if_no_peer_cert = true",
            ]),
        }

    for r in private_rabbit(tmp_path_factory, configure):
        r.certs = certs
        r.amqps = configure.ports["amqps"]
        r.stomps = configure.ports["stomps"]
        yield r


def client_cert(certs: Certs) -> dict:
    return {"client_cert": certs.client, "client_key": certs.client_key}


def amqps(r, host: str = "localhost") -> str:
    return f"amqps://guest:guest@{host}:{r.amqps}/%2f"


def stomps(r, scheme: str = "stomp+ssl") -> str:
    return f"{scheme}://guest:guest@localhost:{r.stomps}/%2f"


def tls_gateway(gateway_factory, backend: str, tls: dict, ready: bool = True):
    gw = gateway_factory(services=[stomp_service(backend=backend, heart_beat=[0, 0], tls=tls)])
    wait_ready(gw, 15, 200 if ready else 503)
    return gw


def round_trip(gw) -> None:
    """A STOMP subscriber gets what another client sends, through the broker."""
    sub, pub = stomp(gw), stomp(gw)
    subscribe(sub, "/topic/tls.check")
    pub.receipt("SEND", {"destination": "/topic/tls.check"}, "over TLS", rid="sent")
    (m,) = messages(sub, 1)
    assert m.body == b"over TLS"


def connections_are_tls(r) -> None:
    """RabbitMQ's view: the gateway's connections to the TLS port are TLS, with its
    client certificate."""
    rows = r.rows("list_connections", "name", "ssl", "peer_cert_subject")
    mine = [row for row in rows if row[0].endswith(f":{r.amqps}")]
    assert mine and all(row[1] == "true" and row[2] == "CN=gateway" for row in mine), rows


def refusal(gw, what: str) -> str:
    """The service stays unready, so clients are refused at the handshake (503), and the
    gateway's log says why: the first failed attempt is logged at WARN."""
    with pytest.raises(Exception, match="503"):
        RawStomp(gw)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [ln for ln in gw.log().splitlines() if " WARN " in ln and f"cannot connect to {what}" in ln]
        if lines:
            return lines[0]
        time.sleep(0.1)
    raise AssertionError(f"no 'cannot connect to {what}' warning in the log:\n{gw.log()[-2000:]}")


# --- amqps:// (the STOMP bridge's RabbitMQ backend) ----------------------------------

def test_amqps_trusts_the_self_signed_server_certificate_through_ca_file(tls_rabbit, gateway_factory):
    gw = tls_gateway(gateway_factory, amqps(tls_rabbit),
                     {"ca_file": tls_rabbit.certs.server, **client_cert(tls_rabbit.certs)})
    round_trip(gw)
    connections_are_tls(tls_rabbit)


@pytest.mark.parametrize("form", ["curl", "hex-list"])
def test_amqps_trusts_the_pinned_key_alone(tls_rabbit, gateway_factory, form):
    """No ca_file: the pin is the trust. By IP address, server_name gives the name to check."""
    pin = spki_pin(tls_rabbit.certs.server) if form == "curl" else [spki_pin_hex(tls_rabbit.certs.server)]
    gw = tls_gateway(gateway_factory, amqps(tls_rabbit, "127.0.0.1"),
                     {"pin_sha256": pin, "server_name": "localhost", **client_cert(tls_rabbit.certs)})
    round_trip(gw)


def test_amqps_wrong_pin_is_refused_naming_rabbitmq_and_tls(tls_rabbit, gateway_factory):
    gw = tls_gateway(gateway_factory, amqps(tls_rabbit),
                     {"pin_sha256": spki_pin(tls_rabbit.certs.other_ca), **client_cert(tls_rabbit.certs)},
                     ready=False)
    msg = refusal(gw, "RabbitMQ")
    assert "TLS handshake with localhost failed" in msg and "pin_sha256" in msg, msg
    # The key the server did show, as openssl computes it, to compare with the setting.
    assert spki_pin(tls_rabbit.certs.server) in msg, msg


def test_amqps_without_the_ca_file_the_self_signed_server_is_unknown(tls_rabbit, gateway_factory):
    gw = tls_gateway(gateway_factory, amqps(tls_rabbit), client_cert(tls_rabbit.certs), ready=False)
    msg = refusal(gw, "RabbitMQ")
    assert "TLS handshake" in msg and "invalid peer certificate: CaUsedAsEndEntity" in msg, msg


def test_amqps_client_certificate_is_required_by_the_node(tls_rabbit, gateway_factory):
    gw = tls_gateway(gateway_factory, amqps(tls_rabbit), {"ca_file": tls_rabbit.certs.server},
                     ready=False)
    msg = refusal(gw, "RabbitMQ")
    assert "CertificateRequired" in msg, msg


# --- amqps:// (the AMQP bridge, each client logging in as itself) --------------------

def test_amqp_bridge_over_amqps_with_a_pin(tls_rabbit, gateway_factory):
    """Pass-through credentials: each client's own broker connection is made over TLS."""
    gw = gateway_factory(services=[amqp_service(
        backend=amqps(tls_rabbit), credentials="pass-through",
        tls={"pin_sha256": spki_pin(tls_rabbit.certs.server), **client_cert(tls_rabbit.certs)})])
    wait_ready(gw, 15)
    with RawAmqp(gw) as c:
        c.handshake("guest", "guest")
        c.open_channel(1)
        q = c.declare_queue(1, f"tls.{time.time_ns()}")
        c.send(publish(1, "", q, b"over amqps"))
        assert c.get_eventually(1, q).body == b"over amqps"
        connections_are_tls(tls_rabbit)


# --- stomp+ssl:// (the STOMP-broker backend, against RabbitMQ's STOMP plugin) ---------

@pytest.mark.parametrize("scheme", ["stomp+ssl", "stomps"])
def test_stomp_over_tls_with_a_pin(tls_rabbit, gateway_factory, scheme):
    gw = tls_gateway(gateway_factory, stomps(tls_rabbit, scheme),
                     {"pin_sha256": spki_pin(tls_rabbit.certs.server), **client_cert(tls_rabbit.certs)})
    round_trip(gw)
    # (The node refuses TLS clients without a certificate, so these presented the gateway's.)
    rows = tls_rabbit.rows("list_stomp_connections", "conn_name", "ssl")
    mine = [r for r in rows if r[0].endswith(f":{tls_rabbit.stomps}")]
    assert mine and all(r[1] == "true" for r in mine), rows


def test_stomp_over_tls_through_ca_file_and_a_wrong_pin(tls_rabbit, gateway_factory):
    gw = tls_gateway(gateway_factory, stomps(tls_rabbit),
                     {"ca_file": tls_rabbit.certs.server, **client_cert(tls_rabbit.certs)})
    round_trip(gw)
    bad = tls_gateway(gateway_factory, stomps(tls_rabbit),
                      {"pin_sha256": spki_pin(tls_rabbit.certs.other_ca), **client_cert(tls_rabbit.certs)},
                      ready=False)
    msg = refusal(bad, "the STOMP broker")
    assert f"localhost:{tls_rabbit.stomps} over TLS" in msg and "pin_sha256" in msg, msg


def test_stomp_failover_list_with_a_tls_member(tls_rabbit, gateway_factory):
    """A failover list mixing schemes: the plain first member does not answer, so the
    gateway goes on to the stomp+ssl:// one, with the service's TLS settings."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    backend = f"failover:(stomp://guest:guest@127.0.0.1:{dead}/%2f,{stomps(tls_rabbit)})"
    gw = tls_gateway(gateway_factory, backend,
                     {"pin_sha256": spki_pin(tls_rabbit.certs.server), **client_cert(tls_rabbit.certs)})
    round_trip(gw)
    rows = tls_rabbit.rows("list_stomp_connections", "conn_name", "ssl")
    mine = [r for r in rows if r[0].endswith(f":{tls_rabbit.stomps}")]
    assert mine and all(r[1] == "true" for r in mine), rows


# --- configuration --------------------------------------------------------------------

def check(tmp_path, backend: str, tls: dict) -> tuple[int, str]:
    cfg = base_config(1, 2)
    cfg["service"] = [stomp_service(backend=backend, tls=tls)]
    p = tmp_path / "gateway.toml"
    p.write_text(to_toml(cfg))
    r = subprocess.run([str(gateway_bin()), "--check-config", str(p)], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("case", ["missing-ca-file", "not-pem", "bad-pin", "key-without-cert",
                                  "tls-on-plain-uri"])
def test_check_config_names_the_tls_key(tmp_path, gateway_binary, case):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    backend, tls, key, says = {
        "missing-ca-file": ("amqps://u:p@h/%2f", {"ca_file": str(tmp_path / "nope.pem")},
                            "tls.ca_file", "nope.pem"),
        "not-pem": ("stomp+ssl://h", {"ca_file": str(junk)}, "tls.ca_file", "no PEM certificate"),
        "bad-pin": ("amqps://u:p@h/%2f", {"pin_sha256": "sha256//AAAA"}, "tls.pin_sha256",
                    "32"),
        "key-without-cert": ("stomps://h", {"client_key": str(junk)}, "tls.client_cert",
                             "certificate"),
        "tls-on-plain-uri": ("amqp://u:p@h/%2f", {"ca_file": str(junk)}, "tls", "amqps://"),
    }[case]
    rc, out = check(tmp_path, backend, tls)
    assert rc != 0, out
    assert key in out and says in out, out


def test_check_config_accepts_a_good_tls_table(tmp_path, gateway_binary):
    crt = self_signed(tmp_path, "ok", "localhost")[0]
    rc, out = check(tmp_path, "amqps://u:p@localhost/%2f",
                    {"ca_file": crt, "pin_sha256": spki_pin(crt)})
    assert rc == 0, out
    assert "pin_sha256" in out, out
