"""Real backends and helper processes for the tcp-bridge tests: ngircd, websocat."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gwproc import HOST, free_port

VENV_BIN = Path(sys.executable).parent


def is_listening(port: int, host: str = HOST) -> bool:
    """True when something listens on host:port (read from /proc, so it does
    not open a connection that the listener would have to serve)."""
    want_ip = "".join(f"{int(x):02X}" for x in reversed(host.split(".")))
    want = f"{want_ip}:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        f = line.split()
        if f[1] == want and f[3] == "0A":
            return True
    return False


def wait_listening(port: int, proc: subprocess.Popen, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not is_listening(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not listening on {port} after {timeout}s")
        time.sleep(0.05)


def ngircd_binary() -> str:
    return shutil.which("ngircd") or "/usr/sbin/ngircd"


class Ngircd:
    """ngIRCd in the foreground on a free loopback port, config in its own dir."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        run = self.dir / "run"
        run.mkdir(exist_ok=True)
        os.chmod(run, 0o777)  # ngircd drops root for "nobody" and then writes its PID file
        conf_d = self.dir / "conf.d"
        conf_d.mkdir(exist_ok=True)
        self.conf = self.dir / "ngircd.conf"
        self.conf.write_text(f"""\
[Global]
\tName = irc.e2e.test
\tInfo = gateway e2e test server
\tAdminInfo1 = e2e
\tAdminInfo2 = loopback
\tAdminEMail = e2e@localhost
\tListen = {HOST}
\tPorts = {self.port}
\tMotdPhrase = "e2e"
\tPidFile = {run}/ngircd.pid
\tServerUID = nobody
[Limits]
\tMaxConnections = 200
\tMaxConnectionsIP = 0
\tMaxJoins = 0
\tPingTimeout = 300
\tPongTimeout = 60
[Options]
\tDNS = no
\tIdent = no
\tPAM = no
\tIncludeDir = {conf_d}
""")
        self.log_path = self.dir / "ngircd.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Ngircd":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [ngircd_binary(), "-n", "-f", str(self.conf)],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )
        wait_listening(self.port, self.proc, "ngircd")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class Websocat:
    """websocat as a local TCP listener that bridges each client to a WebSocket."""

    def __init__(self, workdir: Path, ws_url: str, protocol: str = "binary"):
        self.port = free_port()
        self.log_path = workdir / f"websocat-{self.port}.log"
        self.args = [
            str(VENV_BIN / "websocat"), "--binary", "--exit-on-eof", "--protocol", protocol,
            f"tcp-l:{HOST}:{self.port}", ws_url,
        ]
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Websocat":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        wait_listening(self.port, self.proc, "websocat")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
