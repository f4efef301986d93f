"""The admin API: token rules, validation, profiles, paging, audit, and state that survives restarts."""

from __future__ import annotations

import time

import httpx
import pytest

from stacks import TestStack


def _error(resp: httpx.Response, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if code:
        assert err["code"] == code, err
    return err


def test_admin_token_missing_or_wrong_is_401_and_both_headers_work(sim_stack):
    base = sim_stack.base_url
    assert _error(httpx.get(base + "/admin/orgs"), 401, "unauthorized")["type"] == "unauthorized"
    _error(httpx.get(base + "/admin/orgs", headers={"X-Admin-Token": "wrong-token-wrong-token"}), 401)
    _error(httpx.get(base + "/admin/orgs", headers={"Authorization": "Bearer nope"}), 401)
    assert httpx.get(base + "/admin/orgs", headers={"X-Admin-Token": sim_stack.admin_token}).status_code == 200
    assert httpx.get(base + "/admin/orgs",
                     headers={"Authorization": f"Bearer {sim_stack.admin_token}"}).status_code == 200


def test_admin_unset_answers_503_everywhere(tmp_path):
    stack = TestStack("sim", tmp_path, workers=1, env={"ADMIN_TOKEN": ""}).start()
    try:
        for method, path in [("GET", "/admin/orgs"), ("POST", "/admin/orgs"), ("GET", "/admin/audit"),
                             ("DELETE", "/admin/keys/0123456789abcdef")]:
            resp = httpx.request(method, stack.base_url + path, headers={"X-Admin-Token": "anything-at-all-x"})
            assert _error(resp, 503, "admin_unavailable")["type"] == "admin_unavailable"
    finally:
        stack.stop()


@pytest.mark.parametrize("body,param", [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "bad\nname"}, "name"),
    ({"name": " padded"}, "name"),
    ({"name": "bell\x07"}, "name"),
    ({"name": "x" * 65}, "name"),
    ({"name": "ok", "colour": "red"}, "colour"),
    ({"name": "ok", "rpm_limit": 0}, "rpm_limit"),
    ({"name": "ok", "rpm_limit": "100"}, "rpm_limit"),
    ({"name": "ok", "rpm_limit": 100.5}, "rpm_limit"),
    ({"name": "ok", "rpm_limit": True}, "rpm_limit"),
    ({"name": "ok", "key": {"expires_in_secs": 60.5}}, "key.expires_in_secs"),
    ({"name": "ok", "profile": "gold"}, "profile"),
    ({"name": "ok", "timezone": "Mars/Olympus"}, "timezone"),
    ({"name": "ok", "key": {"scopes": ["root"]}}, "key.scopes[0]"),
    ({"name": "ok", "key": {"scopes": []}}, "key.scopes"),
])
def test_create_org_validation(sim_stack, body, param):
    with sim_stack.admin() as admin:
        assert _error(admin.post("/admin/orgs", json=body), 400)["param"] == param


def test_whole_number_floats_are_integers(sim_stack):
    """JSON Schema, so the document's `integer`, counts 2117.0 as an integer: each admin body
    takes it (it was a 400 in three operations), and stores and shows the integer."""
    with sim_stack.admin() as admin:
        created = admin.post("/admin/orgs", json={
            "name": f"floats-{time.monotonic_ns()}", "rpm_limit": 2117.0,
            "key": {"expires_in_secs": 3600.0, "limits": {"rpm_limit": 100.0}}})
        assert created.status_code == 201, created.text
        org, key = created.json()["org"], created.json()["key"]
        assert org["limits"] == {"rpm_limit": 2117} and '"rpm_limit":2117,' in created.text
        assert key["limits"] == {"rpm_limit": 100}
        patched = admin.patch(f"/admin/orgs/{org['id']}", json={"tpm_limit": 5000.0})
        assert patched.status_code == 200 and patched.json()["org"]["limits"]["tpm_limit"] == 5000
        rotated = admin.post(f"/admin/keys/{key['key_id']}/rotate", json={"grace_secs": 0.0})
        assert rotated.status_code == 200, rotated.text
        err = _error(admin.patch(f"/admin/orgs/{org['id']}", json={"tpm_limit": 5000.5}), 400)
        assert err["param"] == "tpm_limit" and "integer" in err["message"]


def test_duplicate_name_409_unknown_ids_404(sim_stack):
    org = sim_stack.create_org()
    with sim_stack.admin() as admin:
        _error(admin.post("/admin/orgs", json={"name": org["org"]["name"]}), 409, "conflict")
        _error(admin.get("/admin/orgs/org_doesnotexist00"), 404)
        _error(admin.patch("/admin/orgs/nope", json={"rpm_limit": 5}), 404)
        _error(admin.delete("/admin/keys/ffffffffffffffff"), 404)
        _error(admin.post("/admin/keys/not-a-key/rotate", json={}), 404)
        _error(admin.post(f"/admin/keys/{org['key']['key_id']}/rotate", json={"grace_secs": -1}), 400)


def test_create_shows_the_key_once_and_stores_only_a_digest(sim_stack):
    import redis
    org = sim_stack.create_org(name="digest-check", rpm_limit=77)
    key = org["api_key"]
    assert key.startswith("sk-" + org["key"]["key_id"] + "-") and len(key) == 63
    assert org["org"]["limits"] == {"rpm_limit": 77}
    assert org["org"]["effective_limits"]["rpm_limit"] == 77
    assert org["org"]["effective_limits"]["max_output_tokens"] == 512  # default fills the rest
    with sim_stack.admin() as admin:
        listed = admin.get(f"/admin/orgs/{org['org']['id']}/keys").text
    assert key not in listed and "digest" not in listed
    r = redis.Redis.from_url(sim_stack.redis_url)
    assert not any(key.encode() in (r.dump(k) or b"") for k in r.scan_iter("llmgw:*"))


def test_profile_with_overrides_and_null_restores_default(sim_stack):
    org_id = sim_stack.create_org()["org"]["id"]
    with sim_stack.admin() as admin:
        patched = admin.patch(f"/admin/orgs/{org_id}", json={"profile": "pro", "rpm_limit": 900}).json()["org"]
        assert patched["profile"] == "pro"
        assert patched["limits"] == {"max_concurrent": 4, "rpm_limit": 900, "tpm_limit": 400000,
                                     "max_context_tokens": 16384, "max_output_tokens": 1024}
        back = admin.patch(f"/admin/orgs/{org_id}", json={"rpm_limit": None}).json()["org"]
        assert "rpm_limit" not in back["limits"] and back["effective_limits"]["rpm_limit"] == 120
        assert admin.get(f"/admin/orgs/{org_id}").json()["org"]["limits"] == back["limits"]


def test_list_orgs_is_paginated(sim_stack):
    for _ in range(3):
        sim_stack.create_org()
    with sim_stack.admin() as admin:
        everything = admin.get("/admin/orgs", params={"limit": 500}).json()
        first = admin.get("/admin/orgs", params={"limit": 2, "offset": 0}).json()
        second = admin.get("/admin/orgs", params={"limit": 2, "offset": 2}).json()
        assert first["total"] == everything["total"] >= 3
        ids = [o["id"] for o in first["data"] + second["data"]]
        assert ids == [o["id"] for o in everything["data"][:4]] and len(set(ids)) == 4
        _error(admin.get("/admin/orgs", params={"limit": 0}), 400)


def test_audit_records_every_change_without_secrets(sim_stack):
    org = sim_stack.create_org()
    org_id, key_id = org["org"]["id"], org["key"]["key_id"]
    with sim_stack.admin() as admin:
        admin.patch(f"/admin/orgs/{org_id}", json={"tpm_limit": 5000}).raise_for_status()
        rotated = admin.post(f"/admin/keys/{key_id}/rotate", json={"grace_secs": 0}).json()
        admin.delete(f"/admin/keys/{rotated['key']['key_id']}").raise_for_status()
        admin.delete(f"/admin/orgs/{org_id}").raise_for_status()
        page = admin.get("/admin/audit", params={"limit": 6}).json()
        older = admin.get("/admin/audit", params={"limit": 6, "before": page["next_before"]}).json()
    actions = [e["action"] for e in page["data"]]
    assert actions == ["org.delete", "key.revoke", "key.retire", "key.rotate", "org.update", "key.create"]
    assert older["data"][0]["action"] == "org.create" and older["data"][0]["target"] == org_id
    update = page["data"][4]
    assert update["before"]["limits"] == {} and update["after"]["limits"] == {"tpm_limit": 5000}
    text = str(page) + str(older)
    assert org["api_key"] not in text and rotated["api_key"] not in text and "digest" not in text
    assert sim_stack.admin_token not in text


def test_state_survives_gateway_and_redis_restarts(tmp_path):
    stack = TestStack("sim", tmp_path, workers=2).start()
    try:
        org = stack.create_org(name="durable", profile="standard")
        auth = {"Authorization": f"Bearer {org['api_key']}"}
        models = lambda: httpx.get(stack.base_url + "/v1/models", headers=auth).status_code  # noqa: E731
        assert models() == 200
        stack.restart_gateway()
        assert models() == 200
        stack.restart_redis()
        assert models() == 200
        late = stack.create_org(name="written-just-before-a-crash")
        time.sleep(1.5)  # appendfsync everysec: a write older than a second survives a crash
        stack.restart_redis(kill=True)
        time.sleep(1)  # the workers' Redis connections reconnect
        assert httpx.get(stack.base_url + "/v1/models",
                         headers={"Authorization": f"Bearer {late['api_key']}"}).status_code == 200
        with stack.admin() as admin:
            names = {o["name"] for o in admin.get("/admin/orgs").json()["data"]}
            assert {"durable", "written-just-before-a-crash"} <= names
            assert admin.get(f"/admin/orgs/{org['org']['id']}").json()["org"]["profile"] == "standard"
    finally:
        stack.stop()
