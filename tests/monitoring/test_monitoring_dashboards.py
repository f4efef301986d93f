"""Grafana provisioning and dashboards: what Grafana needs to load them, and PromQL that parses."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess

import pytest
import yaml

from promql_names import (DASHBOARD_DIR, MONITORING, ROOT, all_panels, dashboard_expressions,
                          dashboards)

PROVISIONING = MONITORING / "grafana" / "provisioning"
COMPOSE = ROOT / "docker-compose.monitoring.yml"


def provisioned_datasource() -> dict:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (datasource,) = config["datasources"]
    return datasource


def compose_mounts(service: str) -> dict[str, str]:
    """Container path -> host path (relative to the repository) of a service's bind mounts."""
    volumes = yaml.safe_load(COMPOSE.read_text())["services"][service]["volumes"]
    mounts = {}
    for volume in volumes:
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = source[2:]
    return mounts


def test_checked_in_dashboards_are_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location(
        "generate_dashboards", MONITORING / "grafana" / "generate_dashboards.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    rendered = generator.render()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARD_DIR.glob("*.json")}
    assert set(rendered) == set(on_disk)
    stale = [name for name, text in rendered.items() if on_disk[name] != text]
    assert not stale, (f"{stale} differ from generate_dashboards.py: "
                       "run python monitoring/grafana/generate_dashboards.py")


def test_datasource_provisioning():
    datasource = provisioned_datasource()
    assert datasource["uid"] == "prometheus" and datasource["type"] == "prometheus"
    # Grafana reaches Prometheus by its compose service name.
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in yaml.safe_load(COMPOSE.read_text())["services"]
    scrape = yaml.safe_load((MONITORING / "prometheus" / "prometheus.yml").read_text())
    assert datasource["jsonData"]["timeInterval"] == scrape["global"]["scrape_interval"]


def test_dashboard_provider_reads_the_mounted_dashboards():
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "llm-platform.yml").read_text())[
        "providers"]
    assert provider["type"] == "file"
    mounts = compose_mounts("grafana")
    assert mounts[provider["options"]["path"]] == "monitoring/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "monitoring/grafana/provisioning"


def test_three_dashboards():
    boards = dashboards()
    assert set(boards) == {"platform-overview.json", "tenants-usage-quotas.json",
                           "backends-gpus.json"}
    uids = [b["uid"] for b in boards.values()]
    titles = [b["title"] for b in boards.values()]
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)


@pytest.mark.parametrize("file_name", ["platform-overview.json", "tenants-usage-quotas.json",
                                       "backends-gpus.json"])
def test_dashboard_is_provisionable(file_name):
    board = dashboards()[file_name]
    uid = provisioned_datasource()["uid"]
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", board["uid"])
    assert board["title"] and board.get("id") is None  # provisioning assigns ids
    panels = list(all_panels(board["panels"]))
    assert len(panels) >= 10
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids), "panel ids must be unique"

    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel.get("datasource", {}).get("uid") == uid, panel["title"]
        assert panel["type"] == "row" or panel.get("targets"), f"{panel['title']}: no query"
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == uid, panel["title"]
            assert target["expr"].strip() and target["refId"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                 for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid, variable["name"]


def test_dashboard_queries_are_valid_promql(tmp_path):
    """promtool parses every panel and variable query (Grafana macros replaced by values)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install the Debian package `prometheus`")
    expressions = dashboard_expressions()
    rules = [{"record": f"dashboard_query_{i}", "expr": expr}
             for i, expr in enumerate(expressions.values())]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    if proc.returncode != 0:
        names = list(expressions)
        bad = sorted({names[int(i)] for i in re.findall(r"dashboard_query_(\d+)",
                                                        proc.stdout + proc.stderr)})
        pytest.fail(f"invalid PromQL in {bad or 'dashboards'}:\n{proc.stdout}{proc.stderr}")
