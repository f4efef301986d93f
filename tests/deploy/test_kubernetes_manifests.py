"""deploy/kubernetes: every configuration renders, validates against the Kubernetes schemas and
keeps the promises its README makes (security settings, network policies, drain, routing).

No cluster: `kubectl kustomize` renders (today's kubectl, or Debian's kubernetes-client, which
the Makefile's DEBS installs where no kubectl is), kubernetes-validate checks the schemas.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from deploy_support import ROOT
from llmgw.batches.main import STOP_GRACE_SECS
from llmgw.routing import load_routing
from llmgw.settings import Settings

KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["default", "small", "production"]
# The oldest Kubernetes still commonly run when this was written, and the newest the schemas
# of kubernetes-validate cover: an API removed or not yet there fails one of the two.
K8S_VERSIONS = ["1.31", "1.37"]
# Custom resources: kubernetes-validate has no schema for them. Named one by one, so any other
# kind without a schema (a typo in apiVersion or kind) fails. ServiceMonitors are checked by
# test_servicemonitors_select_what_exists instead.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
GATEWAYS = ["llmgw-gateway", "llmgw-gateway-batch"]
GATEWAY_IMAGE_USERS = {"llmgw-gateway", "llmgw-gateway-batch", "llmgw-batch-runner"}

# Environment variables the gateway's containers set that are not fields of Settings, each
# with who reads it. FORWARDED_ALLOW_IPS: gunicorn's own setting (checked below).
READ_BY_GUNICORN = {"FORWARDED_ALLOW_IPS"}

# What both kustomize v2.0.3 (Debian's kubectl 1.20) and v5 build the same way.
KUSTOMIZE_FIELDS = {"namespace", "bases", "resources", "patchesStrategicMerge", "images",
                    "configMapGenerator", "generatorOptions"}


# --- rendering ---------------------------------------------------------------------------------

def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found: install Debian's kubernetes-client (Makefile DEBS)")
    return found


_RENDERS: dict[str, list[dict]] = {}


def render(overlay: str) -> list[dict]:
    if overlay not in _RENDERS:
        result = subprocess.run([kubectl(), "kustomize", str(KUBE / "overlays" / overlay)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        _RENDERS[overlay] = [d for d in yaml.safe_load_all(result.stdout) if d]
    return _RENDERS[overlay]


def objects(overlay: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in render(overlay) if o["kind"] == kind}


def workloads(overlay: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in render(overlay) if o["kind"] in WORKLOADS}


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def selects(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels and matchExpressions) against a set of labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present, value = expr["key"] in labels, labels.get(expr["key"])
        op = expr["operator"]
        if (op == "In" and value not in expr["values"]) or \
           (op == "NotIn" and present and value in expr["values"]) or \
           (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renders(overlay):
    kinds = {o["kind"] for o in render(overlay)}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "NetworkPolicy", "Ingress", "ConfigMap"} <= kinds
    assert all(o["metadata"].get("namespace") == "llm" for o in render(overlay)
               if o["kind"] != "Namespace"), "every object in namespace llm"


def test_kustomizations_keep_to_what_kubectl_1_20_builds():
    for path in sorted(KUBE.rglob("kustomization.yaml")):
        used = set(yaml.safe_load(path.read_text()))
        assert used <= KUSTOMIZE_FIELDS, f"{path.relative_to(ROOT)}: {used - KUSTOMIZE_FIELDS}"


# --- schemas -----------------------------------------------------------------------------------

def validate(obj: dict, version: str) -> None:
    """Raise unless the object is valid for that Kubernetes version (strict: no unknown
    fields). Only the kinds in CRD_KINDS are passed over."""
    if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
        return
    kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates(overlay, version):
    for obj in render(overlay):
        try:
            validate(obj, version)
        except Exception as exc:  # noqa: BLE001 - name the object that failed
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc}")


def test_validation_rejects_broken_objects():
    gateway = objects("default", "Deployment")["llmgw-gateway"]
    validate(gateway, K8S_VERSIONS[0])  # the unbroken original passes
    wrong_type = copy.deepcopy(gateway)
    wrong_type["spec"]["replicas"] = "two"
    unknown_field = copy.deepcopy(gateway)
    pod_spec(unknown_field)["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/healthz"}}
    unknown_kind = {**copy.deepcopy(gateway), "apiVersion": "app/v1"}
    missing = copy.deepcopy(gateway)
    del pod_spec(missing)["containers"][0]["name"]
    for broken in (wrong_type, unknown_field, unknown_kind, missing):
        with pytest.raises(Exception):
            validate(broken, K8S_VERSIONS[0])


# --- security ----------------------------------------------------------------------------------

def security_problems(workload: dict) -> list[str]:
    """What keeps this pod template from the promised settings (empty: none)."""
    name, spec = workload["metadata"]["name"], pod_spec(workload)
    pod_sc = spec.get("securityContext", {})
    problems = []
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: service account token mounted")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"{name}: {flag}")
    if any("hostPath" in v for v in spec.get("volumes", [])):
        problems.append(f"{name}: hostPath volume")
    for c in containers(spec):
        where = f"{name}/{c['name']}"
        sc = {**pod_sc, **c.get("securityContext", {})}
        if sc.get("runAsNonRoot") is not True or sc.get("runAsUser", 1) == 0:
            problems.append(f"{where}: may run as root")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: root filesystem writable")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: privilege escalation allowed")
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        caps = sc.get("capabilities", {})
        if caps.get("drop") != ["ALL"] or caps.get("add"):
            problems.append(f"{where}: capabilities not all dropped")
        if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: seccomp profile not RuntimeDefault")
        resources = c.get("resources", {})
        for part in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(part, {}):
                    problems.append(f"{where}: no {resource} {part}")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down(overlay):
    found = workloads(overlay)
    assert found
    assert [p for w in found.values() for p in security_problems(w)] == []


def test_security_check_finds_each_gap():
    gateway = objects("default", "Deployment")["llmgw-gateway"]
    breakages = {
        "may run as root": lambda s: s["securityContext"].update(runAsUser=0),
        "root filesystem writable": lambda s: s["containers"][0]["securityContext"].pop(
            "readOnlyRootFilesystem"),
        "privilege escalation": lambda s: s["containers"][0]["securityContext"].update(
            allowPrivilegeEscalation=True),
        "capabilities": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(
            add=["NET_ADMIN"]),
        "seccomp": lambda s: s["securityContext"].pop("seccompProfile"),
        "no memory limits": lambda s: s["containers"][0]["resources"]["limits"].pop("memory"),
        "no cpu requests": lambda s: s["containers"][0]["resources"]["requests"].pop("cpu"),
        "token mounted": lambda s: s.pop("automountServiceAccountToken"),
    }
    for expected, breakage in breakages.items():
        broken = copy.deepcopy(gateway)
        breakage(pod_spec(broken))
        problems = security_problems(broken)
        assert any(expected in p for p in problems), (expected, problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_enforces_restricted_pod_security(overlay):
    labels = objects(overlay, "Namespace")["llm"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_writable_paths_are_volumes(overlay):
    """With a read-only root, every place a process writes must be a mount."""
    writes = {"llmgw-gateway": ["/tmp", "/dev/shm", "/var/lib/llmgw"],
              "llmgw-gateway-batch": ["/tmp", "/dev/shm", "/var/lib/llmgw"],
              "llmgw-batch-runner": ["/tmp", "/var/lib/llmgw"]}
    for name, workload in workloads(overlay).items():
        for c in pod_spec(workload)["containers"]:
            mounted = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            wanted = writes.get(name, [])
            if c["name"] == "vllm":
                home = env_of(c)["HOME"]["value"]
                wanted = ["/tmp", "/dev/shm", env_of(c)["HF_HOME"]["value"], home]
            for path in wanted:
                assert path in mounted and not mounted[path].get("readOnly"), (name, path)


# --- network policies --------------------------------------------------------------------------

POD_IP = ipaddress.ip_address("10.244.1.10")   # any pod: a private address
PUBLIC_IP = ipaddress.ip_address("203.0.113.7")


def actors(overlay: str) -> dict[str, tuple[str, dict]]:
    """name -> (namespace, labels): the platform's pods and some from outside it."""
    found = {name: ("llm", w["spec"]["template"]["metadata"]["labels"])
             for name, w in workloads(overlay).items()}
    found.update({
        "ingress-controller": ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}),
        "prometheus": ("monitoring", {"app.kubernetes.io/name": "prometheus"}),
        "stranger-in-llm": ("llm", {"app.kubernetes.io/name": "debug-shell"}),
        "stranger-elsewhere": ("default", {"app": "web"}),
        "external-redis": ("redis", {"app.kubernetes.io/name": "redis"}),
    })
    return found


def peer_matches(peer: dict, policy_ns: str, ns: str, labels: dict, ip) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", []))
    if "namespaceSelector" in peer:
        ns_ok = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": ns})
    else:
        ns_ok = ns == policy_ns
    return ns_ok and selects(peer.get("podSelector", {}), labels)


def rule_allows(rule: dict, peers_key: str, policy_ns: str, ns: str, labels: dict, ip,
                port: int) -> bool:
    ports = rule.get("ports")
    if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == "TCP"
                         for p in ports):
        return False
    peers = rule.get(peers_key)
    return not peers or any(peer_matches(p, policy_ns, ns, labels, ip) for p in peers)


def direction_allows(policies: list[dict], direction: str, ns: str, labels: dict,
                     other_ns: str, other_labels: dict, other_ip, port: int) -> bool:
    """Whether the policies let a pod (ns, labels) send (Egress) or receive (Ingress) this."""
    if ns != "llm":
        return True  # outside the platform's namespace: not ours to restrict
    peers_key = "to" if direction == "Egress" else "from"
    selecting = [p for p in policies
                 if selects(p["spec"]["podSelector"], labels)
                 and direction in p["spec"].get("policyTypes", ["Ingress"])]
    if not selecting:
        return True  # no policy isolates it (the default deny should make this impossible)
    return any(rule_allows(rule, peers_key, "llm", other_ns, other_labels, other_ip, port)
               for p in selecting for rule in p["spec"].get(direction.lower(), []))


def reaches(overlay: str, source: str, target: str, port: int) -> bool:
    policies = list(objects(overlay, "NetworkPolicy").values())
    everyone = actors(overlay)
    (src_ns, src_labels), (dst_ns, dst_labels) = everyone[source], everyone[target]
    return (direction_allows(policies, "Egress", src_ns, src_labels, dst_ns, dst_labels,
                             POD_IP, port)
            and direction_allows(policies, "Ingress", dst_ns, dst_labels, src_ns, src_labels,
                                 POD_IP, port))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_default_deny(overlay):
    deny = objects(overlay, "NetworkPolicy")["llmgw-default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_only_what_is_promised(overlay):
    everyone = actors(overlay)
    vllm = [n for n, (_, labels) in everyone.items()
            if labels.get("app.kubernetes.io/component") == "vllm"]
    redis = "llmgw-redis" if "llmgw-redis" in everyone else "external-redis"
    assert vllm
    # who may reach whom, on which port; anything not listed must be refused
    allowed = {("ingress-controller", "llmgw-gateway", 8000),
               ("prometheus", "llmgw-gateway", 8000),
               ("llmgw-batch-runner", "llmgw-gateway-batch", 8000),
               ("prometheus", "llmgw-gateway-batch", 8000)}
    for backend in vllm:
        allowed |= {("llmgw-gateway", backend, 8000), ("llmgw-gateway-batch", backend, 8000),
                    ("prometheus", backend, 8000)}
    for client in ("llmgw-gateway", "llmgw-gateway-batch", "llmgw-batch-runner", redis):
        for port in (6379, 26379):
            if client != redis or redis == "llmgw-redis":
                allowed.add((client, redis, port))
    targets = {"llmgw-gateway": [8000], "llmgw-gateway-batch": [8000],
               "llmgw-batch-runner": [8000], redis: [6379, 26379],
               **{backend: [8000] for backend in vllm}}
    wrong = []
    for source in everyone:
        for target, ports in targets.items():
            for port in ports:
                if source == target and target != redis:
                    continue
                if everyone[source][0] != "llm" and everyone[target][0] != "llm":
                    continue  # neither end is the platform's: no policy of ours applies
                expected = (source, target, port) in allowed
                if reaches(overlay, source, target, port) != expected:
                    wrong.append((source, target, port, "allowed" if not expected else "refused"))
    assert wrong == [], "(source, target, port, what happens instead)"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_vllm_goes_out_and_only_to_public_https(overlay):
    policies = list(objects(overlay, "NetworkPolicy").values())
    for name, (ns, labels) in actors(overlay).items():
        if ns != "llm" or name.startswith("stranger"):
            continue
        outside = direction_allows(policies, "Egress", ns, labels, "", {}, PUBLIC_IP, 443)
        assert outside == (labels.get("app.kubernetes.io/component") == "vllm"), name
        # and nobody reaches a private address outside the cluster's pods (e.g. metadata APIs)
        assert not direction_allows(policies, "Egress", ns, labels, "", {},
                                    ipaddress.ip_address("169.254.169.254"), 443), name


def test_network_policy_check_can_fail():
    """Open the gateway to every pod: the check must notice."""
    policies = objects("default", "NetworkPolicy")
    policy = policies["llmgw-gateway"]
    saved = copy.deepcopy(policy["spec"]["ingress"])
    policy["spec"]["ingress"].append({"ports": [{"protocol": "TCP", "port": 8000}]})
    try:
        # objects() reads the cached render, which holds this very policy object
        assert reaches("default", "stranger-elsewhere", "llmgw-gateway", 8000)
    finally:
        policy["spec"]["ingress"] = saved
    assert not reaches("default", "stranger-elsewhere", "llmgw-gateway", 8000)


# --- the gateway: drain, probes, scaling, settings ---------------------------------------------

def prestop_secs(container: dict) -> float:
    pre = container.get("lifecycle", {}).get("preStop")
    if pre is None:
        return 0.0
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    command = pre["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return float(command[1])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_covers_the_drain(overlay):
    found = workloads(overlay)
    for name in GATEWAYS:
        spec = pod_spec(found[name])
        container = spec["containers"][0]
        env = env_of(container)
        drain = float(env["GRACEFUL_TIMEOUT_SECS"]["value"]) if "GRACEFUL_TIMEOUT_SECS" in env \
            else Settings.model_fields["graceful_timeout_secs"].default
        pre = prestop_secs(container)
        assert pre >= 5, f"{name}: the ingress needs a few seconds to stop sending"
        assert spec["terminationGracePeriodSeconds"] > pre + drain, name
    runner = pod_spec(found["llmgw-batch-runner"])
    assert runner["terminationGracePeriodSeconds"] > STOP_GRACE_SECS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_probes(overlay):
    for name in GATEWAYS:
        container = pod_spec(workloads(overlay)[name])["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling_and_disruption(overlay):
    hpa = objects(overlay, "HorizontalPodAutoscaler")["llmgw-gateway"]["spec"]
    gateway = workloads(overlay)["llmgw-gateway"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "llmgw-gateway"}
    assert hpa["minReplicas"] <= gateway["spec"]["replicas"] <= hpa["maxReplicas"]
    # the failure-open limiter divides by GATEWAY_REPLICAS: the most there can be
    env = env_of(pod_spec(gateway)["containers"][0])
    assert int(env["GATEWAY_REPLICAS"]["value"]) == hpa["maxReplicas"]
    batch_env = env_of(pod_spec(workloads(overlay)["llmgw-gateway-batch"])["containers"][0])
    assert workloads(overlay)["llmgw-gateway-batch"]["spec"]["replicas"] == 1
    assert batch_env["GATEWAY_REPLICAS"]["value"] == "1"
    assert workloads(overlay)["llmgw-gateway-batch"]["spec"]["strategy"]["type"] == "Recreate"
    # every PodDisruptionBudget covers a workload
    labels = [w["spec"]["template"]["metadata"]["labels"] for w in workloads(overlay).values()]
    pdbs = objects(overlay, "PodDisruptionBudget")
    assert "llmgw-gateway" in pdbs
    for name, pdb in pdbs.items():
        assert any(selects(pdb["spec"]["selector"], l) for l in labels), name


def settings_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        alias = field.validation_alias
        for choice in getattr(alias, "choices", []):
            names.add(str(choice).upper())
    return names


def test_gunicorn_reads_forwarded_allow_ips():
    import gunicorn.config
    source = Path(gunicorn.config.__file__).read_text()
    for name in READ_BY_GUNICORN:
        assert f'"{name}"' in source or f"'{name}'" in source, name


def references(value: str) -> list[str]:
    return re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_env_references_come_after_what_they_name(overlay):
    """$(VAR) in env and args sees only the entries above it; a later one stays literal."""
    for name, workload in workloads(overlay).items():
        for c in containers(pod_spec(workload)):
            seen = set()
            for entry in c.get("env", []):
                for ref in references(entry.get("value", "")):
                    assert ref in seen, f"{name}/{c['name']}: {entry['name']} uses $({ref})"
                seen.add(entry["name"])
            for arg in c.get("args", []) + c.get("command", []):
                for ref in references(arg):
                    assert ref in seen, f"{name}/{c['name']}: argument uses $({ref})"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_env_is_real_settings(overlay, tmp_path):
    known = settings_names()
    routing = tmp_path / "routing.yaml"
    routing.write_text((ROOT / "gateway" / "routing.yaml").read_text())
    for name in sorted(GATEWAY_IMAGE_USERS):
        container = pod_spec(workloads(overlay)[name])["containers"][0]
        entries = container["env"]
        spliced = {ref for e in entries for ref in references(e.get("value", ""))}
        unknown = {e["name"] for e in entries} - known - READ_BY_GUNICORN - spliced
        assert not unknown, f"{name}: not gateway settings: {unknown}"
        # and the values pass the gateway's own validation (secrets stand-ins, $(VAR) expanded)
        values = {}
        for e in entries:
            value = e.get("value", "x" * 32 if "valueFrom" in e else "")
            values[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], value)
        values["ROUTING_FILE"] = str(routing)
        settings_env = {k: v for k, v in values.items() if k in known}
        Settings(**{k.lower(): v for k, v in settings_env.items()})


def test_env_check_can_fail():
    with pytest.raises(Exception):
        Settings(log_level="loud")
    assert "GATEWAY_REPLICA" not in settings_names()
    assert "GATEWAY_REPLICAS" in settings_names()


# --- routing and backends ----------------------------------------------------------------------

def routing_text(overlay: str) -> str:
    gateway = workloads(overlay)["llmgw-gateway"]
    container = pod_spec(gateway)["containers"][0]
    routing_file = Path(env_of(container)["ROUTING_FILE"]["value"])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(routing_file.parent))
    volume = next(v for v in pod_spec(gateway)["volumes"] if v["name"] == mount["name"])
    configmap = objects(overlay, "ConfigMap")[volume["configMap"]["name"]]
    return configmap["data"][routing_file.name]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_routing_configmap_loads_and_names_services(overlay, tmp_path):
    text = routing_text(overlay)
    assert "${" not in text, "no environment placeholders: every URL is a Service"
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    table = load_routing(path, env={})
    services = objects(overlay, "Service")
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in workloads(overlay).values()]
    for pool in table.pools.values():
        for backend in pool.backends:
            url = urlsplit(backend.url)
            host = url.hostname.split(".")
            assert host[0] in services, f"{backend.name}: no Service {host[0]}"
            assert len(host) == 1 or host[1] == "llm", f"{backend.name}: another namespace"
            service = services[host[0]]["spec"]
            assert url.port in [p["port"] for p in service["ports"]], backend.name
            matched = [l for l in pods if selects({"matchLabels": service["selector"]}, l)]
            assert matched and all(l.get("app.kubernetes.io/component") == "vllm"
                                   for l in matched), backend.name
    all_pool_names = {w["spec"]["template"]["metadata"]["labels"].get("llmgw/backend")
                      for w in workloads(overlay).values()} - {None}
    assert all_pool_names == {b.name for p in table.pools.values() for b in p.backends}


@pytest.mark.parametrize("overlay", ["default", "production"])
def test_full_routing_is_the_gateways(overlay, tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(routing_text(overlay))
    ours, shipped = load_routing(path, env={}), load_routing(ROOT / "gateway" / "routing.yaml",
                                                             env={})
    assert {m.name: (m.aliases, m.pool.name, m.endpoints) for m in ours.models} == \
        {m.name: (m.aliases, m.pool.name, m.endpoints) for m in shipped.models}
    assert {n: [b.name for b in p.backends] for n, p in ours.pools.items()} == \
        {n: [b.name for b in p.backends] for n, p in shipped.pools.items()}


def compose_commands() -> dict[str, list[str]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return {name: s["command"] for name, s in compose["services"].items()
            if name.startswith("vllm-")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_vllm_as_compose_runs_it(overlay):
    commands = compose_commands()
    backends = {n: w for n, w in workloads(overlay).items()
                if w["spec"]["template"]["metadata"]["labels"].get(
                    "app.kubernetes.io/component") == "vllm"}
    assert backends
    for name, workload in backends.items():
        c = pod_spec(workload)["containers"][0]
        expected = [re.sub(r"\$\{BACKEND_API_KEY:\?[^}]*\}", "$(BACKEND_API_KEY)", a)
                    for a in commands[name]]
        assert c["args"] == expected, name
        for part in ("requests", "limits"):
            assert int(c["resources"][part]["nvidia.com/gpu"]) >= 1, name
        for probe in ("readinessProbe", "startupProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["path"] == "/health", (name, probe)
        assert workload["spec"]["strategy"]["type"] == "Recreate", name


# --- references between objects ----------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_pods_and_ports(overlay):
    templates = [w["spec"]["template"] for w in workloads(overlay).values()]
    for name, service in objects(overlay, "Service").items():
        matched = [t for t in templates
                   if selects({"matchLabels": service["spec"]["selector"]}, t["metadata"]["labels"])]
        assert matched, f"Service {name} selects no pod"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for t in matched:
                declared = [(p.get("name"), p["containerPort"])
                            for c in t["spec"]["containers"] for p in c.get("ports", [])]
                assert any(target in pair for pair in declared), (name, target)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_is_tls_and_public_paths_only(overlay):
    services = objects(overlay, "Service")
    for name, ingress in objects(overlay, "Ingress").items():
        spec = ingress["spec"]
        tls_hosts = {h for t in spec["tls"] for h in t["hosts"]}
        for rule in spec["rules"]:
            assert rule["host"] in tls_hosts, name
            for path in rule["http"]["paths"]:
                assert path["path"].startswith(("/v1", "/health")), path
                backend = path["backend"]["service"]
                assert backend["name"] == "llmgw-gateway"
                ports = services[backend["name"]]["spec"]["ports"]
                assert backend["port"].get("name") in [p["name"] for p in ports]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_volumes_and_configmaps_exist(overlay):
    claims = set(objects(overlay, "PersistentVolumeClaim"))
    configmaps = set(objects(overlay, "ConfigMap"))
    for name, workload in workloads(overlay).items():
        templates = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        spec = pod_spec(workload)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims, (name, v)
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps, (name, v)
        for c in containers(spec):
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes or m["name"] in templates, (name, m)


def secret_refs(overlay: str) -> set[str]:
    found = set()
    for obj in render(overlay):
        text = yaml.safe_dump(obj)
        found |= set(re.findall(r"secretKeyRef:\n\s+key: [^\n]+\n\s+name: ([\w-]+)", text))
        found |= set(re.findall(r"secretName: ([\w-]+)", text))
        if obj["kind"] == "ServiceMonitor":
            for endpoint in obj["spec"]["endpoints"]:
                if "authorization" in endpoint:
                    found.add(endpoint["authorization"]["credentials"]["name"])
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_not_shipped_and_documented(overlay):
    assert "Secret" not in {o["kind"] for o in render(overlay)}
    readme = (KUBE / "README.md").read_text()
    refs = secret_refs(overlay)
    assert {"llmgw-admin", "llmgw-redis", "llmgw-batch-runner", "llmgw-backend",
            "llmgw-tls"} <= refs
    for name in refs:
        assert re.search(rf"kubectl .*create secret \w+ {name}\b", readme), name


def test_servicemonitors_select_what_exists():
    services = objects("production", "Service")
    monitors = objects("production", "ServiceMonitor")
    assert monitors
    for name, monitor in monitors.items():
        selected = [s for s in services.values()
                    if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
        assert selected, name
        for endpoint in monitor["spec"]["endpoints"]:
            for s in selected:
                assert endpoint["port"] in [p["name"] for p in s["spec"]["ports"]], name
    gateways = [s["metadata"]["name"] for s in services.values()
                if selects(monitors["llmgw-gateway"]["spec"]["selector"], s["metadata"]["labels"])]
    assert sorted(gateways) == sorted(GATEWAYS)
    assert "ServiceMonitor" not in {o["kind"] for o in render("default")}
