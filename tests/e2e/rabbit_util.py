"""A private RabbitMQ node for a test module (tests/scripts/rabbitmq.sh on claimed ports, all
state in its own dir, so stopping and restarting it affects no other module), and STOMP
helpers shared by the RabbitMQ tests.

    @pytest.fixture(scope="module")
    def rabbit(tmp_path_factory):
        yield from private_rabbit(tmp_path_factory)
"""

from __future__ import annotations

import fcntl
import itertools
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from stomp_util import RawStomp, stomp_service

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "scripts" / "rabbitmq.sh"
RMQ_BIN = Path("/usr/lib/rabbitmq/bin")
CI = bool(os.environ.get("CI"))

try:
    import pika
except ImportError:  # pragma: no cover - depends on the venv
    pika = None

ids = itertools.count(1)


def need(ok: bool, why: str) -> None:
    if ok:
        return
    if CI:
        pytest.fail(f"{why} (CI is set: tests/scripts/install-deps.sh must provide it)", pytrace=False)
    pytest.skip(why)


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_fixed_port(start: int, stop: int, also=lambda p: True) -> int:
    """A free port below the ephemeral range (where the gateways take theirs)."""
    for p in range(start, stop):
        if not listening(p) and also(p):
            return p
    raise RuntimeError(f"no free port in {start}..{stop}")


@dataclass
class Rabbit:
    dir: Path
    env: dict
    node: str
    port: int

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2f"

    def script(self, cmd: str, timeout: float = 90) -> str:
        r = subprocess.run(["bash", str(SCRIPT), cmd, str(self.dir)], env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"rabbitmq.sh {cmd} failed ({r.returncode}):\n{r.stderr}")
        return r.stdout

    def ctl(self, *args: str) -> str:
        # The Erlang cookie lives in the node's HOME (the script points HOME at its dir).
        r = subprocess.run([str(RMQ_BIN / "rabbitmqctl"), "-n", self.node, "-q", *args],
                           env={**self.env, "HOME": str(self.dir),
                                # Plugins' own commands (list_stomp_connections) need it.
                                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins")},
                           capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, f"rabbitmqctl {' '.join(args)}: {r.stderr}"
        return r.stdout

    def rows(self, *args: str) -> list[list[str]]:
        """`rabbitmqctl list_*` output as rows (header line dropped)."""
        lines = [ln for ln in self.ctl(*args, "--no-table-headers").splitlines() if ln.strip()]
        return [ln.split("\t") for ln in lines]

    def pika(self):
        return pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=self.port, credentials=pika.PlainCredentials("guest", "guest"),
            connection_attempts=3, retry_delay=0.5))


def _claim_ports():
    """(AMQP port, epmd port, lock) for a private node. Nodes are stopped and restarted
    mid-module, so a port merely free now could be taken meanwhile by another module's node
    or another run of these tests (e.g. a concurrent tests/run.sh): a lock file per port
    keeps them apart."""
    for port in range(5700, 5800):
        lock = open(f"/tmp/gateway-e2e-rabbitmq-{port}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        epmd = port - 1330  # 4370..4469, next to the default 4369
        if any(listening(p) for p in (port, port + 20000, epmd)):
            lock.close()
            continue
        return port, epmd, lock
    raise RuntimeError("no free port for a private RabbitMQ node in 5700..5799")


def private_rabbit(tmp_path_factory, configure=None):
    """Generator for a module fixture: a started node, stopped afterwards. `configure(dir,
    port)` may return more environment for tests/scripts/rabbitmq.sh (plugins, extra
    rabbitmq.conf lines, ports derived from the claimed AMQP port)."""
    need((RMQ_BIN / "rabbitmq-server").exists(),
         "rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    need(pika is not None, "pika is not installed in the test venv")
    d = tmp_path_factory.mktemp("rabbitmq")
    port, epmd, lock = _claim_ports()
    env = dict(os.environ)
    env.update({
        "RABBITMQ_AMQP_PORT": str(port),
        "RABBITMQ_NODENAME": f"gwtest{port}@localhost",
        "RABBITMQ_PLUGINS": "",
        "ERL_EPMD_PORT": str(epmd),
    })
    if configure is not None:
        env.update(configure(d, port))
    r = Rabbit(d, env, env["RABBITMQ_NODENAME"], port)
    try:
        r.script("start")
        yield r
    finally:
        r.script("stop")
        lock.close()


def rabbit_gateway(rabbit: Rabbit, gateway_factory, name=None, **settings):
    """A gateway with the STOMP service on `rabbit`, once its backend is connected."""
    settings.setdefault("backend", rabbit.url)
    settings.setdefault("heart_beat", [0, 0])
    gw = gateway_factory(services=[stomp_service(**settings)], name=name)
    # The backend connects in the background; until then the service is not ready.
    wait_ready(gw, 10)
    return gw


def wait_ready(gw, timeout: float, status: int = 200) -> None:
    deadline = time.monotonic() + timeout
    while gw.http_get("/readyz")[0] != status:
        assert time.monotonic() < deadline, f"/readyz did not turn {status} within {timeout}s"
        time.sleep(0.05)


def stomp(gw, **connect_headers) -> RawStomp:
    c = RawStomp(gw)
    c.connect(**connect_headers)
    return c


def subscribe(c: RawStomp, dest: str, sid: str = "s1", **headers) -> None:
    c.receipt("SUBSCRIBE", {"destination": dest, "id": sid, **headers}, rid=f"sub-{next(ids)}")


def messages(c: RawStomp, n: int, timeout: float = 5.0) -> list:
    out = []
    while len(out) < n:
        f = c.recv(timeout)
        assert f.command == "MESSAGE", f"expected MESSAGE, got {f}"
        out.append(f)
    return out


def no_frame(c: RawStomp, wait: float = 0.3) -> None:
    try:
        f = c.recv(wait)
    except AssertionError:
        return
    raise AssertionError(f"unexpected frame {f}")


def no_error_logs(gw) -> None:
    """Expected outages and refusals are not the gateway's own errors: no ERROR lines."""
    errors = [ln for ln in gw.log().splitlines() if " ERROR " in ln]
    assert not errors, "\n".join(errors[:5])
