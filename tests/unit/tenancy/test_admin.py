"""The control plane's operations against a real redis-server: organisations and keys created,
changed, rotated, revoked and deleted, each checked first, stored and audited."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from llmgw.audit import AuditLog
from llmgw.errors import Conflict, InvalidRequest, NotFound
from llmgw.tenancy.admin import TenancyAdmin
from llmgw.tenancy.admin_bodies import KeyCreate, KeyRotate, OrgCreate, OrgPatch
from llmgw.tenancy.apikeys import digest, well_formed
from llmgw.tenancy.limits import PROFILES, Limits
from llmgw.tenancy.records import Org
from llmgw.tenancy.store import TenancyStore

DEFAULTS = Limits(rpm_limit=60, max_concurrent=4)
CATALOGUE = [("Qwen/Qwen3-0.6B", "small"), ("bge-m3",)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _run(port: int, scenario):
    async def main():
        redis = Redis(port=port, decode_responses=True)
        clock = Clock()
        store = TenancyStore(redis, clock)
        audit = AuditLog(redis, clock)
        try:
            return await scenario(TenancyAdmin(store, audit, DEFAULTS, clock, CATALOGUE),
                                  store, audit, clock)
        finally:
            await redis.aclose()
    return asyncio.run(main())


def _name() -> str:
    return f"org-{time.monotonic_ns()}"


def test_creating_an_org_stores_it_with_its_first_key_and_audits_both(redis_port):
    async def scenario(admin, store, audit, clock):
        body = OrgCreate(name=_name(), profile="standard", rpm_limit=90, models=["small"],
                         key={"name": "first", "scopes": ["chat"]})
        org, raw, key = await admin.create_org(body, "req-1")
        entries, _ = await audit.read(10, None, org_id=org.id)
        return org, raw, key, await store.get_org(org.id), await store.lookup(digest(raw)), entries
    org, raw, key, stored, found, entries = _run(redis_port, scenario)
    assert org.limits == Limits(rpm_limit=90).over(PROFILES["standard"])  # the body over the profile
    assert stored == org and found == (key, org) and well_formed(raw) and key.name == "first"
    assert [e["action"] for e in entries] == ["key.create", "org.create"]  # newest first
    assert entries[1]["after"]["effective_limits"]["max_concurrent"] == PROFILES["standard"].max_concurrent
    assert "digest" not in entries[0]["after"] and entries[0]["request_id"] == "req-1"


def test_a_refused_first_key_leaves_no_organisation_behind(redis_port):
    async def scenario(admin, store, audit, clock):
        name = _name()
        with pytest.raises(InvalidRequest) as above:
            await admin.create_org(OrgCreate(name=name, rpm_limit=10, key={"limits": {"rpm_limit": 11}}), None)
        with pytest.raises(InvalidRequest) as unknown:
            await admin.create_org(OrgCreate(name=name, key={"models": ["gpt-*"]}), None)
        org, _, _ = await admin.create_org(OrgCreate(name=name), None)  # the name is still free
        with pytest.raises(Conflict):
            await admin.create_org(OrgCreate(name=name), None)
        return above.value, unknown.value, org
    above, unknown, org = _run(redis_port, scenario)
    assert (above.code, above.param) == ("limit_above_org", "key.limits.rpm_limit")
    assert (unknown.code, unknown.param) == ("unknown_model", "key.models")
    assert org.name and org.limits == Limits()


def test_a_key_may_not_exceed_its_orgs_limits_or_the_defaults_it_inherits(redis_port):
    async def scenario(admin, store, audit, clock):
        org, _, _ = await admin.create_org(OrgCreate(name=_name(), tpm_limit=1000), None)
        with pytest.raises(InvalidRequest) as over_default:
            await admin.create_key(org, KeyCreate(limits=Limits(max_concurrent=5)), None)
        _, key = await admin.create_key(org, KeyCreate(limits=Limits(tpm_limit=1000, max_concurrent=4),
                                                       expires_in_secs=60), None)
        return over_default.value, key
    over_default, key = _run(redis_port, scenario)
    assert over_default.param == "limits.max_concurrent"
    assert key.expires_at == Clock().now + 60


def test_a_patch_resets_limits_to_a_profile_or_the_defaults_and_sets_models(redis_port):
    async def scenario(admin, store, audit, clock):
        org, _, _ = await admin.create_org(OrgCreate(name=_name(), rpm_limit=5, tpm_limit=500,
                                                     models=["small"]), None)
        clock.now += 10
        nulled = await admin.patch_org(org.id, OrgPatch(rpm_limit=None, status="suspended"), None)
        profiled = await admin.patch_org(org.id, OrgPatch(profile="pro", tpm_limit=7), None)
        models_kept = await admin.patch_org(org.id, OrgPatch(timezone="Asia/Tokyo"), None)
        all_models = await admin.patch_org(org.id, OrgPatch(models=None), None)
        with pytest.raises(InvalidRequest):
            await admin.patch_org(org.id, OrgPatch(models=["nothing-*"]), None)
        entries, _ = await audit.read(10, None, org_id=org.id, action="org.update")
        return org, nulled, profiled, models_kept, all_models, await store.get_org(org.id), entries
    org, nulled, profiled, models_kept, all_models, stored, entries = _run(redis_port, scenario)
    assert nulled.limits == Limits(tpm_limit=500) and nulled.status == "suspended"
    assert nulled.updated_at == org.updated_at + 10
    assert profiled.limits == Limits(**{**PROFILES["pro"].explicit(), "tpm_limit": 7})
    assert profiled.profile == "pro"
    assert models_kept.models == ["small"] and models_kept.timezone == "Asia/Tokyo"
    assert all_models.models is None and stored == all_models
    assert len(entries) == 4 and entries[-1]["before"]["limits"] == {"rpm_limit": 5, "tpm_limit": 500}


def test_unknown_ids_are_not_found(redis_port):
    async def scenario(admin, store, audit, clock):
        errors = []
        for call in (admin.org("org_0000000000000000"), admin.org("not-an-org"),
                     admin.key("0" * 16), admin.key("x" * 5000)):
            with pytest.raises(NotFound) as err:
                await call
            errors.append(err.value)
        return errors
    errors = _run(redis_port, scenario)
    assert [e.param for e in errors] == ["org_id", "org_id", "key_id", "key_id"]
    assert all(len(e.message) < 100 for e in errors)  # an id is quoted, cut short


def test_rotating_a_key_makes_a_like_one_and_retires_the_old_after_its_grace(redis_port):
    async def scenario(admin, store, audit, clock):
        org, raw, old = await admin.create_org(
            OrgCreate(name=_name(), key={"name": "k", "scopes": ["chat", "batch"],
                                         "limits": {"rpm_limit": 3}, "expires_in_secs": 7200}), None)
        clock.now += 100
        new_raw, new, retired = await admin.rotate_key(old.key_id, KeyRotate(grace_secs=600), None)
        _, newer, revoked = await admin.rotate_key(new.key_id, KeyRotate(grace_secs=0), None)
        with pytest.raises(InvalidRequest):
            await admin.rotate_key(new.key_id, KeyRotate(), None)  # revoked now
        entries, _ = await audit.read(10, None, org_id=org.id, action="key.")
        return clock.now, old, new_raw, new, retired, revoked, newer, \
            await store.get_key(old.key_id), entries
    now, old, new_raw, new, retired, revoked, newer, stored_old, entries = _run(redis_port, scenario)
    assert (new.name, new.scopes, new.limits) == (old.name, old.scopes, old.limits)
    assert new.key_id != old.key_id and well_formed(new_raw)
    assert new.expires_at == now + (old.expires_at - now)  # what was left of its life
    assert retired.expires_at == now + 600 and retired.status == "active" and stored_old == retired
    assert revoked.status == "revoked" and newer.expires_at == new.expires_at
    assert [e["action"] for e in entries][:4] == ["key.retire", "key.rotate", "key.retire", "key.rotate"]


def test_a_grace_longer_than_the_keys_life_keeps_its_expiry(redis_port):
    async def scenario(admin, store, audit, clock):
        _, _, old = await admin.create_org(OrgCreate(name=_name(), key={"expires_in_secs": 60}), None)
        _, _, retired = await admin.rotate_key(old.key_id, KeyRotate(grace_secs=3600), None)
        return old, retired
    old, retired = _run(redis_port, scenario)
    assert retired.expires_at == old.expires_at


def test_revoking_and_deleting_are_stored_and_audited(redis_port):
    async def scenario(admin, store, audit, clock):
        org, raw, key = await admin.create_org(OrgCreate(name=_name()), None)
        revoked = await admin.revoke_key(key.key_id, "req-r")
        found = await store.lookup(digest(raw))
        await admin.delete_org(org.id, "req-d")
        entries, _ = await audit.read(10, None, org_id=org.id)
        with pytest.raises(NotFound):
            await admin.org(org.id)
        return key, revoked, found, entries
    key, revoked, found, entries = _run(redis_port, scenario)
    assert revoked.status == "revoked" and found[0].status == "revoked"
    assert [e["action"] for e in entries[:2]] == ["org.delete", "key.revoke"]
    assert entries[0]["before"]["keys"] == [key.key_id] and entries[0]["after"] is None


def test_the_view_shows_the_set_limits_and_those_in_force():
    admin = TenancyAdmin(None, None, DEFAULTS, Clock())
    view = admin.view(Org(id="org_1", name="acme", limits=Limits(rpm_limit=5), created_at=1.0,
                          updated_at=1.0))
    assert view["limits"] == {"rpm_limit": 5}
    assert view["effective_limits"]["rpm_limit"] == 5 and view["effective_limits"]["max_concurrent"] == 4
