"""GET /monitor/key_usage (seed 001): each key's counters on one day, busiest first; a
`monitor` key sees its own organisation only, the admin token every one (or one)."""

from __future__ import annotations

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
    assert _get(sim_stack, sim_stack.admin_token, org_id="org_nope").status_code == 404


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
