"""docker-compose.yml: valid for compose (no engine needed) and the topology of seed 002's 4xL4 host."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
import yaml

from deploy_support import BACKEND_KEY, ROOT, compose_project, mounts, run_compose_config
from llmgw.routing import load_routing

VLLM = {"vllm-chat0": ("0", "0.90"), "vllm-chat1": ("1", "0.90"), "vllm-text2sql": ("2", "0.90"),
        "vllm-embed": ("3", "0.40"), "vllm-rerank": ("3", "0.40")}
SERVICES = {"nginx", "gateway", "gateway-batch", "batch-runner", "redis", *VLLM}


def flag(command: list[str], name: str) -> list[str]:
    """The values after --name (or of --name=value), up to the next flag."""
    joined = [item.split("=", 1)[1] for item in command if item.startswith(name + "=")]
    if joined:
        return joined
    if name not in command:
        return []
    values = []
    for item in command[command.index(name) + 1:]:
        if item.startswith("--"):
            break
        values.append(item)
    return values


def test_services(compose):
    assert set(compose["services"]) == SERVICES
    for name, service in compose["services"].items():
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name


def test_backend_api_key_is_required(tmp_path):
    project = compose_project(tmp_path, [])  # .env.example leaves BACKEND_API_KEY empty
    result = run_compose_config(project)
    assert result.returncode != 0
    assert "BACKEND_API_KEY" in result.stderr


def test_gateway_replicas_follow_the_setting(tmp_path, compose):
    assert compose["services"]["gateway"]["deploy"]["replicas"] == 1
    project = compose_project(tmp_path, [f"BACKEND_API_KEY={BACKEND_KEY}"])
    result = run_compose_config(project, GATEWAY_REPLICAS="3")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["services"]["gateway"]["deploy"]["replicas"] == 3


def test_only_nginx_publishes_ports(compose):
    published = {name: s.get("ports") for name, s in compose["services"].items() if s.get("ports")}
    assert list(published) == ["nginx"]
    assert {(int(p["published"]), int(p["target"])) for p in published["nginx"]} == {(443, 443), (80, 80)}


def test_networks(compose):
    assert compose["networks"]["internal"]["internal"] is True
    # docker-compose.monitoring.yml joins it by this name
    assert compose["networks"]["internal"]["name"] == "llm-internal"
    assert not compose["networks"]["edge"].get("internal")
    for name, service in compose["services"].items():
        networks = set(service["networks"])
        assert "internal" in networks, name
        assert ("edge" in networks) == (name == "nginx"), name
        # egress: only so the vLLM servers can fetch weights; nobody publishes on it
        assert ("egress" in networks) == (name in VLLM), name


@pytest.mark.parametrize("name", sorted(VLLM))
def test_vllm_server(compose, name):
    service = compose["services"][name]
    device, fraction = VLLM[name]
    assert service["image"].startswith("vllm/vllm-openai:")
    [devices] = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices["driver"] == "nvidia" and devices["device_ids"] == [device]
    assert devices["capabilities"] == ["gpu"]
    command = service["command"]
    assert flag(command, "--gpu-memory-utilization") == [fraction]
    assert flag(command, "--api-key") == [BACKEND_KEY]
    assert flag(command, "--port") == ["8000"]
    generates = "--runner" not in command  # pooling servers (embed, rerank) call no tools
    assert ("--enable-auto-tool-choice" in command) == generates
    assert flag(command, "--tool-call-parser") == (["hermes"] if generates else [])
    assert mounts(service)[service["environment"]["HF_HOME"]] == str(ROOT / "hf-cache")
    assert "/health" in " ".join(service["healthcheck"]["test"])


def test_gpu_3_shares_at_most_80_percent(compose):
    shared = [n for n in VLLM if VLLM[n][0] == "3"]
    total = sum(float(flag(compose["services"][n]["command"], "--gpu-memory-utilization")[0])
                for n in shared)
    assert sorted(shared) == ["vllm-embed", "vllm-rerank"] and total <= 0.80 + 1e-9


def test_served_names_match_routing_yaml(compose):
    """Every backend routing.yaml names is a compose service serving exactly its pool's models."""
    routing = load_routing(ROOT / "gateway" / "routing.yaml", env={})
    seen = set()
    for pool in routing.pools.values():
        served = sorted({m.served_name for m in routing.models
                         if m.pool.name == pool.name and m.parent is None})  # adapters: below
        for backend in pool.backends:
            url = urlsplit(backend.url)
            service = compose["services"][url.hostname]
            assert flag(service["command"], "--served-model-name") == served, url.hostname
            assert flag(service["command"], "--port") == [str(url.port)]
            seen.add(url.hostname)
    assert seen == set(VLLM)


def test_servers_schedule_by_priority_where_routing_yaml_says_so(compose):
    routing = load_routing(ROOT / "gateway" / "routing.yaml", env={})
    for pool in routing.pools.values():
        for backend in pool.backends:
            command = compose["services"][f"vllm-{backend.name}"]["command"]
            expected = ["priority"] if pool.priority_scheduling else []
            assert flag(command, "--scheduling-policy") == expected, backend.name
    assert routing.pools["chat"].priority_scheduling  # where batch work mostly runs


def test_health_checks_and_start_order(compose):
    services = compose["services"]
    condition = {name: {dep: spec["condition"] for dep, spec in s.get("depends_on", {}).items()}
                 for name, s in services.items()}
    assert condition["nginx"] == {"gateway": "service_healthy"}
    # Backends only need to have started: the gateway's own checks route around a dead one.
    assert condition["gateway"] == {"redis": "service_healthy",
                                    **{name: "service_started" for name in VLLM}}
    # The second server on GPU 3 starts once the first has sized its memory.
    assert condition["vllm-rerank"] == {"vllm-embed": "service_healthy"}
    assert "/healthz" in " ".join(services["gateway"]["healthcheck"]["test"])
    assert "redis-cli ping" in " ".join(services["redis"]["healthcheck"]["test"])
    assert "/nginx-health" in " ".join(services["nginx"]["healthcheck"]["test"])


def test_redis_appends_to_a_named_volume(compose):
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    assert flag(redis["command"], "--appendonly") == ["yes"]
    assert mounts(redis)["/data"] == "redis-data"
    assert "redis-data" in compose["volumes"]


def test_gateway_service(compose):
    gateway = compose["services"]["gateway"]
    assert gateway["build"]["dockerfile"] == "gateway/Dockerfile"
    env = gateway["environment"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["BACKEND_API_KEY"] == BACKEND_KEY
    assert env["ADMIN_TOKEN"] == "a" * 32
    assert env["GATEWAY_PORT"] == "8000"
    assert env["ROUTING_FILE"] == "/app/routing.yaml"  # where the Dockerfile puts it
    assert "container_name" not in gateway  # replicas cannot share one name


def test_nginx_renders_the_shared_template(compose, cert_dir):
    nginx = compose["services"]["nginx"]
    assert mounts(nginx) == {
        "/etc/nginx/templates": str(ROOT / "nginx" / "templates"),
        "/docker-entrypoint.d/18-llm-edge.envsh": str(ROOT / "nginx" / "18-llm-edge.envsh"),
        "/etc/nginx/ffdhe2048.pem": str(ROOT / "nginx" / "ffdhe2048.pem"),
        "/etc/nginx/certs": str(cert_dir.resolve())}
    env = nginx["environment"]
    # nginx.conf.template -> /etc/nginx/nginx.conf; only EDGE_* placeholders are replaced
    assert env["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"
    assert env["NGINX_ENVSUBST_FILTER"] == "^EDGE_"
    assert env["EDGE_CERT"] == "/etc/nginx/certs/cert-fullchain.crt"
    assert env["EDGE_CERT_KEY"] == "/etc/nginx/certs/cert.key"
    assert (ROOT / "nginx" / "18-llm-edge.envsh").stat().st_mode & 0o111, "the image sources only +x"


def lora_modules(command: list[str]) -> list[tuple[str, str, str | None]]:
    """(name, path, base model) of each --lora-modules entry, read as vLLM reads them."""
    found = []
    for item in flag(command, "--lora-modules"):
        if "=" in item and "," not in item:
            name, path = item.split("=", 1)
            found.append((name, path, None))
        else:
            entry = json.loads(item)
            found.append((entry["name"], entry["path"], entry.get("base_model_name")))
    return found


def test_lora_adapters_match_routing_yaml(compose):
    """Every backend of a pool loads exactly the adapters routing.yaml declares for the pool,
    under their served names, from their source, on their base model (none in the shipped
    file: then LoRA stays off)."""
    routing = load_routing(ROOT / "gateway" / "routing.yaml", env={})
    for pool in routing.pools.values():
        declared = sorted((a.served_name, a.source, a.base_served_name) for a in pool.adapters)
        for backend in pool.backends:
            command = compose["services"][urlsplit(backend.url).hostname]["command"]
            assert sorted(lora_modules(command)) == declared, backend.name
            assert ("--enable-lora" in command) == bool(declared), backend.name


def test_vllm_servers_see_the_adapter_folder_read_only(compose):
    for name in VLLM:
        service = compose["services"][name]
        assert mounts(service)["/adapters"] == str(ROOT / "adapters")
        [volume] = [v for v in service["volumes"]
                    if (v.split(":")[1] if isinstance(v, str) else v["target"]) == "/adapters"]
        assert volume.endswith(":ro") if isinstance(volume, str) else volume["read_only"]


def test_the_batch_gateway_is_the_gateway_with_one_worker_and_only_runners_use_it(compose):
    services = compose["services"]
    gateway, batch = services["gateway"], services["gateway-batch"]
    assert batch["image"] == gateway["image"] and "build" not in batch
    assert batch["environment"] == {**gateway["environment"], "GATEWAY_WORKERS": "1",
                                    "GATEWAY_REPLICAS": "1"}
    same = ("volumes", "networks", "healthcheck", "depends_on", "stop_grace_period", "ulimits")
    assert all(batch[k] == gateway[k] for k in same) and "ports" not in batch
    assert services["batch-runner"]["depends_on"]["gateway-batch"]["condition"] == "service_healthy"
    # nginx sends clients to the realtime instances only
    assert services["nginx"]["environment"]["GATEWAY_UPSTREAMS"] == "gateway:8000"


def test_the_batch_runner_shares_the_gateways_image_volume_and_token(compose):
    runner, gateway = compose["services"]["batch-runner"], compose["services"]["gateway"]
    assert runner["image"] == gateway["image"] and runner["command"] == ["llmgw-batch-runner"]
    assert runner["environment"]["BATCH_GATEWAY_URL"] == "http://gateway-batch:8000"
    assert runner["environment"]["BATCH_RUNNER_TOKEN"] == gateway["environment"]["BATCH_RUNNER_TOKEN"]
    assert runner["environment"]["DATA_DIR"] == gateway["environment"]["DATA_DIR"]
    assert "gateway-data:/var/lib/llmgw:rw" in runner["volumes"]
    assert "gateway-data:/var/lib/llmgw:rw" in gateway["volumes"]
    assert runner["networks"] == {"internal": None} and "ports" not in runner
