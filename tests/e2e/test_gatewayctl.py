"""gatewayctl, run as operators run it, against a real gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

CTL = str(Path(sys.executable).with_name("gatewayctl"))


def ctl(stack, *args: str, token: str | None = "stack") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"ADMIN_TOKEN", "GATEWAY_URL"}}
    env["GATEWAY_URL"] = stack.base_url
    if token:
        env["ADMIN_TOKEN"] = stack.admin_token if token == "stack" else token
    return subprocess.run([CTL, *args], env=env, capture_output=True, text=True, timeout=60)


def ok_json(stack, *args: str) -> dict:
    proc = ctl(stack, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_org_lifecycle_through_the_cli(sim_stack):
    created = ok_json(sim_stack, "org", "create", "cli-team", "--profile", "standard",
                      "--set", "rpm_limit=240")
    org_id, key = created["org"]["id"], created["api_key"]
    assert created["org"]["limits"]["rpm_limit"] == 240 and created["org"]["profile"] == "standard"
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(sim_stack.base_url + "/v1/models", headers=auth).status_code == 200

    table = ctl(sim_stack, "org", "list", "--limit", "500")
    assert table.returncode == 0 and "cli-team" in table.stdout and "NAME" in table.stdout

    limits = ok_json(sim_stack, "org", "set-limits", org_id, "--profile", "pro", "--unset", "max_concurrent")
    assert limits["limits"]["rpm_limit"] == 600 and "max_concurrent" not in limits["limits"]

    assert ok_json(sim_stack, "org", "suspend", org_id)["status"] == "suspended"
    assert httpx.get(sim_stack.base_url + "/v1/models", headers=auth).status_code == 403
    assert ok_json(sim_stack, "org", "activate", org_id)["status"] == "active"

    second = ok_json(sim_stack, "key", "create", org_id, "--scopes", "embeddings", "--set", "rpm_limit=10")
    assert second["key"]["scopes"] == ["embeddings"] and second["key"]["limits"] == {"rpm_limit": 10}
    listed = ctl(sim_stack, "key", "list", org_id)
    assert second["key"]["key_id"] in listed.stdout and second["api_key"] not in listed.stdout

    rotated = ok_json(sim_stack, "key", "rotate", created["key"]["key_id"], "--grace", "0")
    assert rotated["old_key"]["status"] == "revoked"
    assert httpx.get(sim_stack.base_url + "/v1/models", headers=auth).status_code == 401
    revoked = ok_json(sim_stack, "key", "revoke", second["key"]["key_id"])
    assert revoked["status"] == "revoked"

    audit = ctl(sim_stack, "audit", "--limit", "5")
    assert audit.returncode == 0 and "key.revoke" in audit.stdout
    assert ok_json(sim_stack, "org", "delete", org_id) == {"deleted": org_id}


def test_cli_errors_exit_1_with_the_servers_message(sim_stack):
    missing = ctl(sim_stack, "org", "show", "org_0000000000000000")
    assert missing.returncode == 1 and "404" in missing.stderr and "no organisation" in missing.stderr
    no_token = ctl(sim_stack, "org", "list", token=None)
    assert no_token.returncode == 1 and "401" in no_token.stderr
    bad = ctl(sim_stack, "org", "create", "x", "--set", "rpm_limit=lots")
    assert bad.returncode != 0 and "FIELD=INTEGER" in bad.stderr


def test_cli_prints_a_table_and_the_key_once_for_people(sim_stack):
    proc = ctl(sim_stack, "org", "create", "people-team")
    assert proc.returncode == 0
    assert "api_key" in proc.stdout and "sk-" in proc.stdout
    assert "shown this once" in proc.stderr


def test_cli_shows_the_backends_state_view(sim_stack):
    def fresh_rows() -> list[str]:
        proc = ctl(sim_stack, "backends")
        assert proc.returncode == 0, proc.stderr
        return [line for line in proc.stdout.splitlines()[1:] if line.split()[-2:] == ["True", "-"]]
    deadline = time.monotonic() + 10
    while len(rows := fresh_rows()) < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    # every backend of the stack, fresh, no error: pool, name, healthy, breaker, in flight,
    # then the backend's own running, waiting and KV cache usage
    assert sorted(r.split()[1] for r in rows) == ["chat0", "chat1", "embed", "rerank", "text2sql"]
    assert all(r.split()[5:8] == ["0.0", "0.0", "0.0"] for r in rows), rows
    detailed = ok_json(sim_stack, "backends")
    state = detailed["pools"]["chat"]["backends"][0]["state"]
    assert state["fresh"] and state["age_secs"] < 3 and state["error"] is None
