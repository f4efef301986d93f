"""GET /monitor/key_usage (seed 001): each key's counters on one day, busiest first; a
`monitor` key sees its own organisation only, the admin token every one (or one)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

CHAT = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def _org_with_monitor_key(stack) -> dict:
    made = stack.open_org()
    with stack.admin() as admin:
        monitor = admin.post(f"/admin/orgs/{made['org']['id']}/keys",
                             json={"name": "ops", "scopes": ["monitor"]}).json()
    return {"id": made["org"]["id"], "key": made["api_key"], "key_id": made["key"]["key_id"],
            "monitor": monitor["api_key"]}


def _get(stack, token: str, **params) -> httpx.Response:
    return httpx.get(stack.base_url + "/monitor/key_usage", params=params,
                     headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture(scope="module")
def two_orgs(sim_stack):
    a, b = _org_with_monitor_key(sim_stack), _org_with_monitor_key(sim_stack)
    for org, calls in ((a, 3), (b, 1)):
        for _ in range(calls):
            httpx.post(sim_stack.base_url + "/v1/chat/completions", json=CHAT, timeout=30,
                       headers={"Authorization": f"Bearer {org['key']}"}).raise_for_status()
    return a, b


def test_a_monitor_key_sees_its_own_organisations_keys_only(sim_stack, two_orgs):
    a, b = two_orgs
    got = _get(sim_stack, a["monitor"])
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["bucket"] == datetime.now(timezone.utc).strftime("%Y%m%d")
    [row] = body["data"]
    assert row["key_id"] == a["key_id"] and row["org_id"] == a["id"]
    assert row["requests"] == 3 and row["success"] == 3 and row["errors"] == 0
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] == 9
    assert _get(sim_stack, a["monitor"], org_id=b["id"]).status_code == 404
    assert [r["org_id"] for r in _get(sim_stack, b["monitor"]).json()["data"]] == [b["id"]]


def test_the_admin_token_sees_every_organisation_busiest_first(sim_stack, two_orgs):
    a, b = two_orgs
    rows = _get(sim_stack, sim_stack.admin_token, limit=1000).json()["data"]
    mine = [r["key_id"] for r in rows if r["org_id"] in (a["id"], b["id"])]
    assert mine == [a["key_id"], b["key_id"]]
    assert [r["requests"] for r in rows] == sorted((r["requests"] for r in rows), reverse=True)
    one = _get(sim_stack, sim_stack.admin_token, org_id=b["id"]).json()["data"]
    assert [r["key_id"] for r in one] == [b["key_id"]]
    assert len(_get(sim_stack, sim_stack.admin_token, limit=1).json()["data"]) == 1


def test_another_day_bad_queries_and_other_credentials(sim_stack, two_orgs):
    a, _ = two_orgs
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y%m%d")
    assert _get(sim_stack, a["monitor"], bucket=yesterday).json()["data"] == []
    for bad in ({"bucket": "20261340"}, {"bucket": "2026-12-01"}, {"limit": 0}, {"limit": 1001}):
        got = _get(sim_stack, a["monitor"], **bad)
        assert got.status_code == 400 and got.json()["error"]["param"] in bad, (bad, got.text)
    assert _get(sim_stack, a["key"]).status_code == 403        # a chat key: no monitor scope
    assert _get(sim_stack, "sk-nope").status_code == 401
    assert httpx.get(sim_stack.base_url + "/monitor/key_usage").status_code == 401
    assert _get(sim_stack, sim_stack.admin_token, org_id="org_" + "0" * 16).status_code == 404
    assert _get(sim_stack, sim_stack.admin_token, org_id="org_nope").status_code == 400


def test_gatewayctl_key_usage(sim_stack, two_orgs):
    import json

    from test_gatewayctl import ctl
    a, b = two_orgs
    shown = ctl(sim_stack, "key-usage", "--org-id", a["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert [r["key_id"] for r in json.loads(shown.stdout)["data"]] == [a["key_id"]]
    table = ctl(sim_stack, "key-usage", "--limit", "1000")
    assert a["key_id"] in table.stdout and b["key_id"] in table.stdout
    assert ctl(sim_stack, "key-usage", "--bucket", "2026-01-01").returncode != 0


def test_usage_over_hours_days_and_months_as_json_and_csv(sim_stack, two_orgs):
    a, b = two_orgs
    hours = _get_usage(sim_stack, a["monitor"], granularity="hour", count=3)
    assert hours.status_code == 200, hours.text
    rows = hours.json()["data"]
    # (summed: the calls may have fallen either side of an hour's turn)
    assert len(rows) == 3 and sum(r["requests"] for r in rows) == 3
    assert sum(r["completion_tokens"] for r in rows) == 9
    assert rows[1]["start"] - rows[0]["start"] == 3600
    month = _get_usage(sim_stack, a["monitor"], granularity="month", count=2).json()["data"]
    assert len(month) == 2 and month[-1]["requests"] >= 3
    only_key = _get_usage(sim_stack, sim_stack.admin_token, org_id=a["id"], key_id=a["key_id"],
                          granularity="day", count=2).json()["data"]
    assert sum(r["requests"] for r in only_key) == 3
    other_key = _get_usage(sim_stack, sim_stack.admin_token, org_id=a["id"], key_id="0" * 16,
                           granularity="day", count=2).json()["data"]
    assert sum(r["requests"] for r in other_key) == 0
    csv_text = _get_usage(sim_stack, a["monitor"], granularity="day", count=2, format="csv")
    assert csv_text.headers["content-type"].startswith("text/csv")
    lines = csv_text.text.strip().splitlines()
    assert lines[0] == "start,requests,success,errors,prompt_tokens,completion_tokens"
    assert len(lines) == 3 and sum(int(line.split(",")[1]) for line in lines[1:]) == 3
    for bad in ({"granularity": "week"}, {"granularity": "day", "count": 401}, {"count": 0},
                {"key_id": "nope"}, {"format": "xml"}):
        got = _get_usage(sim_stack, a["monitor"], **bad)
        assert got.status_code == 400, (bad, got.text)
    assert _get_usage(sim_stack, sim_stack.admin_token).status_code == 400  # which organisation?
    assert _get_usage(sim_stack, a["monitor"], org_id=b["id"]).status_code == 404
    assert _get_usage(sim_stack, a["key"]).status_code == 403


def _get_usage(stack, token, **params):
    return httpx.get(stack.base_url + "/monitor/usage", params=params,
                     headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_gatewayctl_usage_series_and_audit_filters(sim_stack, two_orgs):
    from test_gatewayctl import ctl, ok_json
    a, _ = two_orgs
    csv_out = ctl(sim_stack, "usage-series", a["id"], "--granularity", "hour", "--count", "2", "--csv")
    assert csv_out.returncode == 0 and csv_out.stdout.startswith("start,requests"), csv_out.stderr
    table = ctl(sim_stack, "usage-series", a["id"], "--count", "2")
    assert table.returncode == 0 and "COMPLETION_TOKENS" in table.stdout
    with sim_stack.admin() as admin:
        admin.patch(f"/admin/orgs/{a['id']}", json={"rpm_limit": 600}).raise_for_status()
    mine = ok_json(sim_stack, "audit", "--org-id", a["id"], "--limit", "10")["data"]
    assert mine and all(e["target"] == a["id"] or e["target"].startswith(a["id"] + "/") for e in mine)
    assert {e["action"] for e in mine} >= {"org.create", "key.create", "org.update"}
    keys = ok_json(sim_stack, "audit", "--org-id", a["id"], "--action", "key.")["data"]
    assert keys and {e["action"] for e in keys} == {"key.create"}
    exact = ok_json(sim_stack, "audit", "--action", "org.update", "--limit", "1")["data"]
    assert [e["target"] for e in exact] == [a["id"]]
    assert ctl(sim_stack, "audit", "--action", "Bad Action").returncode != 0


def test_an_organisations_latest_refusals_say_which_limit_and_key(sim_stack):
    from test_gatewayctl import ok_json
    org = sim_stack.open_org(rpm_limit=2)
    statuses = [httpx.post(sim_stack.base_url + "/v1/chat/completions", json=CHAT, timeout=30,
                           headers={"Authorization": f"Bearer {org['api_key']}"}).status_code
                for _ in range(6)]
    assert statuses.count(429) == 4, statuses
    with sim_stack.admin() as admin:
        deadline = time.monotonic() + 5  # written off the request path
        while not (rows := admin.get(f"/admin/orgs/{org['org']['id']}/rejections").json()["data"]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert admin.get("/admin/orgs/org_nope/rejections").status_code == 404
    assert {r["code"] for r in rows} == {"limit_rpm"}
    assert {r["key_id"] for r in rows} == {org["key"]["key_id"]}
    assert 1 <= sum(r["refusals"] for r in rows) <= 4 and all(r["retry_after_secs"] >= 1 for r in rows)
    assert ok_json(sim_stack, "rejections", org["org"]["id"])["data"][0]["code"] == "limit_rpm"


def test_the_overview_of_the_last_hour_per_model(sim_stack, two_orgs):
    a, _ = two_orgs
    got = httpx.get(sim_stack.base_url + "/monitor/overview", timeout=30,
                    headers={"Authorization": f"Bearer {a['monitor']}"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert 0 < body["window_secs"] <= 3660
    [qwen] = [m for m in body["models"] if m["model"] == "Qwen/Qwen2.5-7B-Instruct"]
    assert qwen["requests"] >= 4 and qwen["requests_per_s"] > 0 and qwen["tokens"] > 0
    assert 0 < qwen["latency_p50_s"] <= qwen["latency_p95_s"] <= qwen["latency_p99_s"]
    assert httpx.get(sim_stack.base_url + "/monitor/overview").status_code == 401
    from test_gatewayctl import ctl, ok_json
    models = ok_json(sim_stack, "overview")["models"]
    assert any(m["model"] == "Qwen/Qwen2.5-7B-Instruct" and m["requests"] >= 4 for m in models)
    shown = ctl(sim_stack, "overview")
    assert shown.returncode == 0 and "Qwen/Qwen2.5-7B-Instruct" in shown.stdout
