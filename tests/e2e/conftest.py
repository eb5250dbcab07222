"""Fixtures: a gateway process per test, with its own config on free ports.

    def test_x(gw):                      # default config: echo service at /echo
    def test_y(gateway_factory):         # custom config
        g = gateway_factory(limits={"idle_timeout": "1s"}, services=[...])

At teardown every started gateway gets SIGTERM and must exit (its stderr is in
the test's captured output, prefixed with its name).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gwproc import Gateway, base_config, free_port, gateway_bin, merge  # noqa: E402


def pytest_report_header(config):
    return f"gateway binary: {gateway_bin()}"


@pytest.fixture(scope="session")
def gateway_binary() -> Path:
    b = gateway_bin()
    if not b.exists():
        pytest.fail(f"gateway binary missing: {b} (run `cargo build -p gateway` first)", pytrace=False)
    return b


@pytest.fixture
def gateway_factory(tmp_path, gateway_binary):
    started: list[Gateway] = []

    def make(*, services=None, env=None, start=True, name=None, client_ssl=None, **sections) -> Gateway:
        if services is not None:
            sections["service"] = services
        name = name or f"gw{len(started)}"
        # A port found free can be taken (e.g. as the local port of an outgoing
        # connection) before the gateway binds it: then try again on other ports.
        for attempt in range(3):
            cfg = merge(base_config(free_port(), free_port()), sections)
            g = Gateway(tmp_path, cfg, env=env, name=name, client_ssl=client_ssl)
            started.append(g)
            if not start:
                return g
            try:
                return g.start()
            except RuntimeError as e:
                if "Address already in use" not in str(e) or attempt == 2:
                    raise
                g.log_path.rename(g.log_path.with_suffix(f".bind-failed-{attempt}.log"))

    yield make

    problems = []
    for g in started:
        if g.proc is None:
            continue
        drain = 10.0
        if g.alive():
            rc = g.stop(timeout=drain + 5)
            if rc is None:
                problems.append(f"{g.name} did not exit within {drain + 5}s of SIGTERM (killed)")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def gw(gateway_factory) -> Gateway:
    return gateway_factory()


@pytest.fixture
def tcp_upper():
    """A TCP server on a free loopback port that sends back every chunk it reads,
    upper-cased (so its answers are told apart from the echo bridge's). Yields
    (port, list of accepted-connection counts)."""
    import socket
    import threading

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    stats = {"accepted": 0, "closed": 0}
    stop = threading.Event()

    def serve(conn):
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                conn.sendall(data.upper())
        stats["closed"] += 1

    def accept_loop():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            stats["accepted"] += 1
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    t = threading.Thread(target=accept_loop, daemon=True)
    t.start()
    yield srv.getsockname()[1], stats
    stop.set()
    t.join(2)
    srv.close()
