"""Model access per organisation and key: lists of names, aliases and * patterns, through the
admin API and gatewayctl, enforced on every inference route and in /v1/models, on every worker
within a second of a change."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CHAT = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
EMBED = {"model": "snowflake-arctic-embed", "input": "hi"}
CTL = str(Path(sys.executable).with_name("gatewayctl"))


def _call(stack, key: str, path: str, body: dict) -> httpx.Response:
    # A new connection each time: the kernel spreads them over the gateway's workers.
    return httpx.post(stack.base_url + path, json=body, headers={
        "Authorization": f"Bearer {key}", "Connection": "close"}, timeout=30)


def _models(stack, key: str) -> set[str]:
    resp = httpx.get(stack.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
    return {m["id"] for m in resp.json()["data"]}


def _error(resp: httpx.Response) -> tuple[int, str]:
    return resp.status_code, resp.json()["error"]["code"]


def test_an_organisation_limited_to_one_model(sim_stack):
    key = sim_stack.create_org(models=["qwen"])["api_key"]
    assert _call(sim_stack, key, "/v1/chat/completions", CHAT).status_code == 200
    refused = _call(sim_stack, key, "/v1/embeddings", EMBED)
    assert _error(refused) == (403, "model_not_allowed")
    assert refused.json()["error"]["param"] == "model"
    # an unknown model is refused alike: the answer does not tell which models exist
    unknown = _call(sim_stack, key, "/v1/chat/completions", {**CHAT, "model": "gpt-4"})
    assert _error(unknown) == (403, "model_not_allowed")
    assert "Qwen" not in unknown.text and "snowflake" not in unknown.text.lower()
    assert _models(sim_stack, key) == {"Qwen/Qwen2.5-7B-Instruct"}
    retrieve = httpx.get(sim_stack.base_url + "/v1/models/snowflake-arctic-embed",
                         headers={"Authorization": f"Bearer {key}"})
    assert retrieve.status_code == 404
    # text2sql without a model names its default model, which this list does not allow
    text2sql = _call(sim_stack, key, "/v1/text2sql", {"messages": CHAT["messages"], "max_tokens": 1})
    assert _error(text2sql) == (403, "model_not_allowed")


def test_patterns_match_names_and_aliases_and_a_key_narrows_its_organisation(sim_stack):
    org = sim_stack.create_org(models=["Qwen/*", "*-embed"], key={"models": ["*embed*"]})
    key = org["api_key"]
    assert _models(sim_stack, key) == {"Snowflake/snowflake-arctic-embed-l-v2.0"}
    assert _call(sim_stack, key, "/v1/embeddings", EMBED).status_code == 200
    assert _error(_call(sim_stack, key, "/v1/chat/completions", CHAT)) == (403, "model_not_allowed")
    with sim_stack.admin() as admin:
        wide = admin.post(f"/admin/orgs/{org['org']['id']}/keys", json={}).json()["api_key"]
    assert _models(sim_stack, wide) == {"Qwen/Qwen2.5-7B-Instruct",
                                        "Snowflake/snowflake-arctic-embed-l-v2.0"}


@pytest.mark.parametrize("body,param,code", [
    ({"models": ["no-such-model*x"]}, "models", "unknown_model"),
    ({"models": ["qwen", "bad name"]}, "models[1]", None),
    ({"models": "qwen"}, "models", None),
    ({"models": [""]}, "models[0]", None),
    ({"key": {"models": ["gpt-*"]}}, "key.models", "unknown_model"),
])
def test_bad_model_lists_are_refused(sim_stack, body, param, code):
    with sim_stack.admin() as admin:
        resp = admin.post("/admin/orgs", json={"name": f"m-{time.monotonic_ns()}", **body})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["param"] == param and (code is None or err["code"] == code), err


def test_a_change_holds_on_every_worker_within_a_second(sim_stack):
    org = sim_stack.create_org()
    key, org_id = org["api_key"], org["org"]["id"]
    assert _call(sim_stack, key, "/v1/embeddings", EMBED).status_code == 200  # cached as allowed
    with sim_stack.admin() as admin:
        admin.patch(f"/admin/orgs/{org_id}", json={"models": ["qwen"]}).raise_for_status()
        time.sleep(1.0)
        codes = {_call(sim_stack, key, "/v1/embeddings", EMBED).status_code for _ in range(16)}
        assert codes == {403}
        admin.patch(f"/admin/orgs/{org_id}", json={"models": None}).raise_for_status()
        time.sleep(1.0)
        codes = {_call(sim_stack, key, "/v1/embeddings", EMBED).status_code for _ in range(16)}
        assert codes == {200}
        rotated = admin.post(f"/admin/orgs/{org_id}/keys", json={"models": ["qwen"]}).json()
        again = admin.post(f"/admin/keys/{rotated['key']['key_id']}/rotate", json={"grace_secs": 0})
        assert again.json()["key"]["models"] == ["qwen"]  # a rotation keeps the list


def test_gatewayctl_sets_and_clears_an_organisations_models(sim_stack):
    org_id = sim_stack.create_org()["org"]["id"]
    env = {"ADMIN_TOKEN": sim_stack.admin_token, "GATEWAY_URL": sim_stack.base_url,
           "PATH": "/usr/bin:/bin"}

    def ctl(*args: str) -> dict:
        proc = subprocess.run([CTL, "--json", *args], env=env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)
    assert ctl("org", "set-models", org_id, "--models", "qwen,*-embed")["models"] == ["qwen", "*-embed"]
    assert ctl("org", "set-models", org_id, "--all")["models"] is None
    key = ctl("key", "create", org_id, "--models", "qwen")
    assert key["key"]["models"] == ["qwen"]
