"""docker-compose.monitoring.yml: topology, checked without a Docker engine."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from promql_names import MONITORING, ROOT

COMPOSE = ROOT / "docker-compose.monitoring.yml"
NETWORK = "llm-internal"  # the main docker-compose.yml's internal network


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_services(compose):
    assert set(compose["services"]) == {"prometheus", "grafana", "dcgm-exporter",
                                        "redis-exporter", "nginx-exporter"}
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), \
            f"{name}: pin the image version"
        assert service.get("restart") == "unless-stopped", name


def test_joins_the_main_stack_network_as_external(compose):
    assert compose["networks"][NETWORK] == {"external": True, "name": NETWORK}
    services = compose["services"]
    # Prometheus scrapes the stack; the Redis and nginx exporters reach Redis and nginx.
    for name in ("prometheus", "redis-exporter", "nginx-exporter"):
        assert NETWORK in services[name]["networks"], name
    # Grafana only talks to Prometheus, never to the stack itself.
    assert NETWORK not in services["grafana"]["networks"]


def test_only_grafana_and_prometheus_publish_ports(compose):
    published = {name: service["ports"] for name, service in compose["services"].items()
                 if service.get("ports")}
    assert set(published) == {"grafana", "prometheus"}
    assert published["grafana"] == ["${MONITORING_BIND_ADDRESS:-127.0.0.1}:3000:3000"]
    assert published["prometheus"] == ["${MONITORING_BIND_ADDRESS:-127.0.0.1}:9090:9090"]
    # Containers only on an internal network cannot publish: both need the bridge network too.
    for name in published:
        assert "monitoring" in compose["services"][name]["networks"], name


def test_mounts_the_monitoring_folder(compose):
    prometheus = compose["services"]["prometheus"]
    assert "./monitoring/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    secret = compose["secrets"]["gateway_metrics_token"]["file"]
    assert secret == "./monitoring/secrets/gateway_metrics_token"
    assert (MONITORING / "secrets" / ".gitignore").is_file()
    grafana = compose["services"]["grafana"]
    assert "./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]


def test_grafana_password_comes_from_the_environment(compose):
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-admin}"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_dcgm_exporter_gets_the_gpus(compose):
    devices = compose["services"]["dcgm-exporter"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]


def test_exporters_point_at_the_stack(compose):
    services = compose["services"]
    assert services["redis-exporter"]["environment"]["REDIS_ADDR"] == "redis://redis:6379"
    assert any(arg.startswith("--nginx.scrape-uri=") and "http://nginx:" in arg
               for arg in services["nginx-exporter"]["command"])


def test_compose_config_validates():
    """`docker-compose config` parses and validates the file without a Docker engine."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose not installed (Debian package docker-compose)")
    proc = subprocess.run([tool, "-f", str(COMPOSE), "config", "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
