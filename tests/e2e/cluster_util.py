"""A private RabbitMQ cluster for a test module (tests/scripts/rabbitmq-cluster.sh on claimed
ports, all state in its own dir), with node-loss helpers:

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory):
        yield from private_cluster(tmp_path_factory)          # 3 nodes (CLUSTER_SIZE)

    cluster.urls                     # amqp://guest:guest@127.0.0.1:PORT/%2f per node
    cluster.backend()                # the same as one comma-separated `backend` value
    cluster.stop_node(1); cluster.start_node(1)
    cluster.connections_by_node()    # {node name: [connection names]}, from rabbitmqctl
    cluster.ctl(2, "list_queues")    # rabbitmqctl on node 2

Ports: RABBITMQ_CLUSTER_PORT_BASE=B puts node I on AMQP B+I, STOMP B+10+I, Erlang
distribution B+30+I and the cluster's epmd on B+90; unset, a free base is claimed (with a
lock file, as concurrent runs stop and start nodes mid-module) from 5800, 5900, ... 6700.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from rabbit_util import RMQ_BIN, listening, need, pika

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "scripts" / "rabbitmq-cluster.sh"
#: Nodes in the module's cluster. Quorum queues survive the loss of one node only with 3.
CLUSTER_SIZE = int(os.environ.get("GATEWAY_TEST_CLUSTER_SIZE", "3"))


def _ports(base: int, size: int) -> list[int]:
    out = [base + 90]
    for i in range(1, size + 1):
        out += [base + i, base + 10 + i, base + 30 + i]
    return out


def _claim_base(size: int):
    fixed = os.environ.get("RABBITMQ_CLUSTER_PORT_BASE")
    candidates = [int(fixed)] if fixed else range(5800, 6800, 100)
    for base in candidates:
        lock = open(f"/tmp/gateway-e2e-rabbitmq-cluster-{base}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        if any(listening(p) for p in _ports(base, size)):
            lock.close()
            continue
        return base, lock
    raise RuntimeError(f"no free port base for a RabbitMQ cluster among {list(candidates)}")


@dataclass
class Cluster:
    dir: Path
    env: dict
    size: int
    base: int
    info: dict = field(default_factory=dict)

    def script(self, *args: str, timeout: float = 180) -> str:
        r = subprocess.run(["bash", str(SCRIPT), args[0], str(self.dir), *args[1:]], env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"rabbitmq-cluster.sh {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
        return r.stdout

    def start(self) -> None:
        out = self.script("start")
        self.info = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    # --- nodes ---------------------------------------------------------------------
    def node(self, i: int) -> str:
        return f"rabbit{i}@localhost"

    def port(self, i: int) -> int:
        return self.base + i

    def endpoint(self, i: int) -> str:
        """`host:port` of node I, as the gateway names it (logs, ERRORs, the `node` label)."""
        return f"127.0.0.1:{self.port(i)}"

    def url(self, i: int) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port(i)}/%2f"

    @property
    def urls(self) -> list[str]:
        return [self.url(i) for i in range(1, self.size + 1)]

    def backend(self, order: list[int] | None = None) -> str:
        """The nodes as one `backend` setting, in `order` (node numbers) if given."""
        return ",".join(self.url(i) for i in (order or range(1, self.size + 1)))

    def stop_node(self, i: int) -> None:
        self.script("stop-node", str(i))

    def start_node(self, i: int) -> None:
        self.script("start-node", str(i))

    def running(self, i: int) -> bool:
        return listening(self.port(i))

    # --- rabbitmqctl -------------------------------------------------------------------
    def ctl(self, i: int, *args: str, timeout: float = 60) -> str:
        d = self.dir / f"n{i}"
        r = subprocess.run([str(RMQ_BIN / "rabbitmqctl"), "-n", self.node(i), "-q", *args],
                           env={**self.env, "HOME": str(d), "ERL_EPMD_PORT": str(self.base + 90),
                                "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins")},
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"rabbitmqctl -n {self.node(i)} {' '.join(args)}: {r.stderr}"
        return r.stdout

    def rows(self, i: int, *args: str) -> list[list[str]]:
        lines = [ln for ln in self.ctl(i, *args, "--no-table-headers").splitlines() if ln.strip()]
        return [ln.split("\t") for ln in lines]

    def any_running(self) -> int:
        for i in range(1, self.size + 1):
            if self.running(i):
                return i
        raise AssertionError("no node of the cluster is running")

    def connections_by_node(self, prefix: str = "") -> dict[str, list[str]]:
        """Client connections whose client-given name (`connection_name`) starts with
        `prefix`, by the node they are on (the node is in the connection process's pid:
        <rabbit2@localhost.1.2.3>)."""
        out: dict[str, list[str]] = {}
        for pid, props in self.rows(self.any_running(), "list_connections", "pid", "client_properties"):
            m = re.search(r'"connection_name",(?:"longstr",)?"([^"]*)"', props)
            name = m.group(1) if m else ""
            if not name.startswith(prefix):
                continue
            node = pid.strip("<>").rsplit(".", 3)[0]
            out.setdefault(node, []).append(name)
        return out

    def queue_info(self, name: str, *items: str) -> dict[str, str] | None:
        """`list_queues` items for queue `name` (e.g. type, leader, members), or None."""
        for row in self.rows(self.any_running(), "list_queues", "name", *items):
            if row[0] == name:
                return dict(zip(items, row[1:]))
        return None

    def wait_for_quorum_leader(self, name: str, not_on: str | None = None, timeout: float = 30) -> str:
        """The node leading quorum queue `name`, once there is one (other than `not_on`)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.queue_info(name, "leader")
            leader = info and info["leader"]
            if leader and leader != not_on and "@" in leader:
                return leader
            assert time.monotonic() < deadline, f"no leader for {name} within {timeout}s: {info}"
            time.sleep(0.5)

    def pika(self, i: int):
        return pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=self.port(i), credentials=pika.PlainCredentials("guest", "guest"),
            connection_attempts=3, retry_delay=0.5))


def private_cluster(tmp_path_factory, size: int = CLUSTER_SIZE, plugins: str = ""):
    """Generator for a module fixture: a started cluster of `size` nodes, stopped after."""
    need((RMQ_BIN / "rabbitmq-server").exists(),
         "rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    need(pika is not None, "pika is not installed in the test venv")
    d = tmp_path_factory.mktemp("rabbitmq-cluster")
    base, lock = _claim_base(size)
    env = dict(os.environ)
    env.update({
        "RABBITMQ_CLUSTER_SIZE": str(size),
        "RABBITMQ_CLUSTER_PORT_BASE": str(base),
        "RABBITMQ_PLUGINS": plugins,
    })
    c = Cluster(d, env, size, base)
    t0 = time.monotonic()
    try:
        c.start()
        print(f"RabbitMQ cluster of {size} ready in {time.monotonic() - t0:.1f}s (ports {base}+)")
        yield c
    finally:
        c.script("stop")
        lock.close()
