"""Start, probe and stop the gateway binary under test.

A `Gateway` owns one process: its config file (free loopback ports, written to a
tmp dir), a log file that tees the process's stderr (also copied to fd 2 so pytest
shows it with a failing test), and helpers for HTTP, WebSocket and /metrics.
"""

from __future__ import annotations

import copy
import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import websockets.sync.client as wsc
from websockets.exceptions import InvalidStatus

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def gateway_bin() -> Path:
    env = os.environ.get("GATEWAY_BIN")
    if env:
        p = Path(env)
        return p if p.is_absolute() else ROOT / p
    return ROOT / "target" / "debug" / "gateway"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --- TOML writing (tomllib only reads) -----------------------------------------

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def _key(k: str) -> str:
    """A bare key, or a quoted one (e.g. a destination prefix such as "/queue/")."""
    return k if k and all(c.isalnum() or c in "-_" for c in k) else _toml_value(k)


def _is_table(v) -> bool:
    return isinstance(v, dict)


def _is_table_array(v) -> bool:
    return isinstance(v, list) and v and all(isinstance(x, dict) for x in v)


def _emit_table(name: str, table: dict, out: list[str], array: bool = False) -> None:
    out.append(f"[[{name}]]" if array else f"[{name}]")
    for k, v in table.items():
        if not _is_table(v) and not _is_table_array(v):
            out.append(f"{_key(k)} = {_toml_value(v)}")
    out.append("")
    for k, v in table.items():
        if _is_table(v):
            _emit_table(f"{name}.{_key(k)}", v, out)
        elif _is_table_array(v):
            for item in v:
                _emit_table(f"{name}.{k}", item, out, array=True)


def to_toml(cfg: dict) -> str:
    out: list[str] = []
    for k, v in cfg.items():
        if not _is_table(v) and not _is_table_array(v):
            out.append(f"{k} = {_toml_value(v)}")
    for k, v in cfg.items():
        if _is_table(v):
            _emit_table(k, v, out)
        elif _is_table_array(v):
            for item in v:
                _emit_table(k, item, out, array=True)
    return "\n".join(out) + "\n"


# --- config -----------------------------------------------------------------------

ECHO_SERVICE = {
    "name": "echo",
    "path": "/echo",
    "bridge": "echo",
    "allow_no_subprotocol": True,
    "allowed_origins": [],
    "allow_missing_origin": True,
    "require_auth": False,
    "require_roles": [],
}


def echo_service(**over) -> dict:
    s = copy.deepcopy(ECHO_SERVICE)
    s.update(over)
    return s


def base_config(port: int, admin_port: int) -> dict:
    return {
        "server": {"listen": f"{HOST}:{port}", "trusted_proxies": []},
        "admin": {"listen": f"{HOST}:{admin_port}"},
        "limits": {
            "max_connections": 19000,
            "max_connections_per_ip": 19000,
            "handshake_timeout": "5s",
            "max_message_size": 4194304,
            "max_frame_size": 4194304,
            "max_header_bytes": 16384,
            "idle_timeout": "60s",
            "outgoing_queue": 256,
            "drain_timeout": "3s",
        },
        "service": [echo_service()],
    }


def merge(base: dict, over: dict) -> dict:
    """Deep-merge `over` into a copy of `base`; lists (e.g. `service`) replace."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# --- metrics ----------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(3) or ""))
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        samples.append((m.group(1), labels, value))
    return samples


def metric_sum(text: str, name: str, **labels) -> float | None:
    """Sum of the samples of `name` whose labels include `labels`; None if none."""
    total = None
    for n, ls, v in parse_metrics(text):
        if n == name and all(ls.get(k) == str(val) for k, val in labels.items()):
            total = (total or 0.0) + v
    return total


# --- the process --------------------------------------------------------------------

class Gateway:
    def __init__(self, workdir: Path, config: dict, env: dict | None = None, name: str = "gw",
                 client_ssl=None):
        self.workdir = workdir
        self.client_ssl = client_ssl  # an ssl.SSLContext when the server speaks TLS
        self.config = config
        self.name = name
        self.host = HOST
        self.port = int(config["server"]["listen"].rsplit(":", 1)[1])
        self.admin_port = int(config["admin"]["listen"].rsplit(":", 1)[1])
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(to_toml(config))
        self.log_path = workdir / f"{name}.stderr.log"
        self.env = dict(os.environ)
        self.env.setdefault("RUST_LOG", "info")
        self.env.setdefault("NO_COLOR", "1")
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._tee: threading.Thread | None = None

    # lifecycle
    def start(self, timeout: float = 15.0) -> "Gateway":
        binary = gateway_bin()
        if not binary.exists():
            raise RuntimeError(f"gateway binary not found at {binary} (cargo build -p gateway)")
        self.proc = subprocess.Popen(
            [str(binary), "--config", str(self.config_path)],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._tee = threading.Thread(target=self._tee_stderr, daemon=True)
        self._tee.start()
        self.wait_healthy(timeout)
        return self

    def _tee_stderr(self) -> None:
        with open(self.log_path, "ab") as log:
            for line in iter(self.proc.stderr.readline, b""):
                log.write(line)
                log.flush()
                try:
                    os.write(2, f"[{self.name}] ".encode() + line)
                except OSError:
                    pass

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                time.sleep(0.1)
                raise RuntimeError(
                    f"gateway exited with {self.proc.returncode} during startup:\n{self.log()}"
                )
            try:
                status, _ = self.http_get("/healthz", timeout=1.0)
                if status == 200:
                    return
                last = status
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError(f"gateway not healthy after {timeout}s (last: {last}):\n{self.log()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._tee:
            self._tee.join(2)
        return self.returncode

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit. Returns the exit code,
        or None if it had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            return self.returncode
        self.terminate()
        rc = self.wait_exit(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait(5)
        return rc

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    # HTTP
    def http_get(self, path: str, *, admin: bool = False, headers: dict | None = None,
                 timeout: float = 5.0) -> tuple[int, bytes]:
        port = self.admin_port if admin else self.port
        if self.client_ssl is not None and not admin:
            c = http.client.HTTPSConnection(self.host, port, timeout=timeout, context=self.client_ssl)
        else:
            c = http.client.HTTPConnection(self.host, port, timeout=timeout)
        try:
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def metrics_text(self) -> str:
        status, body = self.http_get("/metrics", admin=True)
        assert status == 200, f"/metrics returned {status}"
        return body.decode()

    def metric(self, name: str, **labels) -> float | None:
        return metric_sum(self.metrics_text(), name, **labels)

    def wait_metric(self, name: str, pred, timeout: float = 5.0, **labels) -> float | None:
        """Poll until pred(value) holds; returns the last value (assert on it)."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.metric(name, **labels)
            if pred(v) or time.monotonic() > deadline:
                return v
            time.sleep(0.05)

    # WebSocket
    def url(self, path: str = "/echo") -> str:
        scheme = "wss" if self.client_ssl is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}{path}"

    def ws(self, path: str = "/echo", **kw):
        kw.setdefault("compression", None)
        kw.setdefault("proxy", None)
        kw.setdefault("open_timeout", 5)
        kw.setdefault("close_timeout", 3)
        kw.setdefault("ping_interval", None)
        kw.setdefault("max_size", 64 * 1024 * 1024)
        kw.setdefault("legacy", True)
        if self.client_ssl is not None:
            kw.setdefault("ssl", self.client_ssl)
        return wsc.connect(self.url(path), **kw)

    def refused(self, path: str = "/echo", **kw):
        """Connect expecting an HTTP refusal; returns the websockets Response."""
        try:
            c = self.ws(path, **kw)
        except InvalidStatus as e:
            return e.response
        sp = c.subprotocol
        c.close()
        raise AssertionError(f"handshake to {path} was accepted (subprotocol {sp!r}), expected a refusal")
