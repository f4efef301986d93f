"""Prometheus config and alert rules: promtool's checks and unit tests, and our conventions."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from promql_names import MONITORING, ROOT, RULES_DIR

PROMETHEUS_DIR = MONITORING / "prometheus"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
COMPOSE = ROOT / "docker-compose.monitoring.yml"
SEVERITIES = {"critical", "warning", "info"}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install the Debian package `prometheus` "
                    "(scripts/ensure-debs.sh prometheus:promtool; `make test` does it)")
    return path


def run(cmd: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd[:3])} failed:\n{output}"
    return output


def load_config() -> dict:
    return yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())


def alert_rules() -> dict[str, dict]:
    rules = {}
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["alert"] not in rules, f"alert {rule['alert']} defined twice"
                    rules[rule["alert"]] = rule
    return rules


def test_promtool_check_config(promtool, tmp_path):
    """The whole config, rule files included. The gateway's token is a compose secret that
    exists only in the container, so a copy of the config points at a stand-in file."""
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy)
    token = tmp_path / "gateway_metrics_token"
    token.write_text("stand-in-token")
    config = copy / "prometheus.yml"
    text = config.read_text()
    assert "/run/secrets/gateway_metrics_token" in text
    config.write_text(text.replace("/run/secrets/gateway_metrics_token", str(token)))
    output = run([promtool, "check", "config", str(config)])
    assert "SUCCESS" in output and "rule files found" in output


def test_promtool_check_rules(promtool):
    files = sorted(RULES_DIR.glob("*.yml"))
    assert files
    output = run([promtool, "check", "rules", *map(str, files)])
    assert output.count("SUCCESS") == len(files)


def test_promtool_test_rules(promtool):
    files = sorted(RULE_TESTS_DIR.glob("*.yml"))
    assert files
    output = run([promtool, "test", "rules", *map(str, files)], cwd=RULE_TESTS_DIR)
    assert "FAILED" not in output


def test_alerts_have_a_duration_severity_and_text():
    rules = alert_rules()
    assert len(rules) >= 10
    for name, rule in rules.items():
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), name
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no `for:`"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity"
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name


def test_the_alerts_the_platform_needs_exist():
    wanted = {"BackendDown", "PoolUnavailable", "CircuitBreakerOpen", "Gateway5xxRatioHigh",
              "GenerationLatencyP99High", "EmbedRerankLatencyP99High", "QueueWaitHigh",
              "QuotaNearExhaustion", "GPUMemoryNearFull", "GPUTemperatureHigh",
              "GPUTemperatureCritical", "RedisDown", "RateLimiterDegraded", "GatewayDown"}
    assert wanted <= set(alert_rules())


def test_every_alert_is_tested_firing_and_not_firing():
    """Each alert has a unit test where it fires and one where it stays silent."""
    fires, silent = set(), set()
    for path in RULE_TESTS_DIR.glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    rules = set(alert_rules())
    assert rules - fires == set(), "alerts never tested firing"
    assert rules - silent == set(), "alerts never tested staying silent"


def test_rule_tests_load_every_rule_file():
    loaded = set()
    for path in RULE_TESTS_DIR.glob("*.yml"):
        for rule_file in yaml.safe_load(path.read_text())["rule_files"]:
            loaded.add((RULE_TESTS_DIR / rule_file).resolve())
    assert {p.resolve() for p in RULES_DIR.glob("*.yml")} <= loaded


def test_scrape_jobs():
    jobs = {job["job_name"]: job for job in load_config()["scrape_configs"]}
    assert set(jobs) == {"prometheus", "gateway", "vllm", "dcgm", "redis", "nginx"}
    assert jobs["dcgm"]["static_configs"][0]["targets"] == ["dcgm-exporter:9400"]
    assert jobs["redis"]["static_configs"][0]["targets"] == ["redis-exporter:9121"]
    assert jobs["nginx"]["static_configs"][0]["targets"] == ["nginx-exporter:9113"]


def test_gateway_scrape_uses_the_compose_secret():
    gateway = next(j for j in load_config()["scrape_configs"] if j["job_name"] == "gateway")
    auth = gateway["authorization"]
    assert auth.get("type", "Bearer") == "Bearer" and "credentials" not in auth
    secret = Path(auth["credentials_file"])
    assert secret.parent == Path("/run/secrets")
    compose = yaml.safe_load(COMPOSE.read_text())
    assert secret.name in compose["secrets"]
    assert secret.name in compose["services"]["prometheus"]["secrets"]


def test_vllm_targets_match_the_routing_table():
    """One target per backend of gateway/routing.yaml, at its compose address, with the
    backend and pool names the gateway's own metrics use."""
    routing = yaml.safe_load((ROOT / "gateway" / "routing.yaml").read_text())
    expected = {}
    for pool, spec in routing["pools"].items():
        for backend in spec["backends"]:
            default_url = re.search(r":-(http://[^}]+)\}", backend["url"]).group(1)
            expected[default_url.removeprefix("http://")] = {"backend": backend["name"],
                                                              "pool": pool}
    vllm = next(j for j in load_config()["scrape_configs"] if j["job_name"] == "vllm")
    found = {}
    for group in vllm["static_configs"]:
        for target in group["targets"]:
            found[target] = group["labels"]
    assert found == expected
