"""The control plane's operations: organisations and keys changed, audited and invalidated."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..audit import AuditLog
from ..errors import Conflict, InvalidRequest, NotFound
from . import apikeys
from .admin_bodies import KeyCreate, KeyRotate, OrgCreate, OrgPatch
from .limits import PROFILES, Limits
from .model_access import unmatched
from .records import ApiKeyRecord, Org
from .store import NameTaken, TenancyStore, new_org_id


class TenancyAdmin:
    def __init__(self, store: TenancyStore, audit: AuditLog, defaults: Limits,
                 clock: Callable[[], float], catalogue: Sequence[Sequence[str]] = ()) -> None:
        self._store = store
        self._audit = audit
        self._defaults = defaults
        self._clock = clock
        self._catalogue = catalogue  # each model's names: model lists are checked against it

    def view(self, org: Org) -> dict:
        """An organisation as the admin API shows it, with the limits in force."""
        return {**org.model_dump(mode="json"), "limits": org.limits.explicit(),
                "effective_limits": org.limits.over(self._defaults).model_dump()}

    async def org(self, org_id: str) -> Org:
        org = await self._store.get_org(org_id) if org_id.startswith("org_") else None
        if org is None:
            raise NotFound(f"no organisation {org_id[:64]!r}", param="org_id")
        return org

    async def create_org(self, body: OrgCreate, request_id: str | None) -> tuple[Org, str, ApiKeyRecord]:
        now = self._clock()
        limits = body.limits().over(PROFILES[body.profile]) if body.profile else body.limits()
        # Before anything is stored: a refused first key once left its organisation behind.
        self._check_key_limits(body.key, limits, param_prefix="key.")
        self._check_models(body.models, "models")
        self._check_models(body.key.models, "key.models")
        org = Org(id=new_org_id(), name=body.name, profile=body.profile, limits=limits,
                  timezone=body.timezone, models=body.models, created_at=now, updated_at=now)
        try:
            await self._store.create_org(org)
        except NameTaken:
            raise Conflict(f"an organisation named {body.name!r} already exists", param="name") from None
        await self._audit.record("org.create", org.id, before=None, after=self.view(org),
                                 request_id=request_id)
        raw, key = await self.create_key(org, body.key, request_id)
        return org, raw, key

    async def patch_org(self, org_id: str, body: OrgPatch, request_id: str | None) -> Org:
        org = await self.org(org_id)
        before = self.view(org)
        limits = PROFILES[body.profile].explicit() if body.profile else org.limits.explicit()
        for name, value in body.limit_changes().items():
            if value is None:
                limits.pop(name, None)
            else:
                limits[name] = value
        update = {"limits": Limits(**limits), "updated_at": self._clock()}
        if body.profile:
            update["profile"] = body.profile
        for field in ("status", "timezone"):
            if getattr(body, field) is not None:
                update[field] = getattr(body, field)
        if "models" in body.model_fields_set:  # null: every model again
            self._check_models(body.models, "models")
            update["models"] = body.models
        org = org.model_copy(update=update)
        await self._store.save_org(org)
        await self._audit.record("org.update", org.id, before=before, after=self.view(org),
                                 request_id=request_id)
        return org

    async def delete_org(self, org_id: str, request_id: str | None) -> None:
        org = await self.org(org_id)
        removed = await self._store.delete_org(org)
        await self._audit.record("org.delete", org.id, before={**self.view(org), "keys": removed},
                                 after=None, request_id=request_id)

    async def create_key(self, org: Org, body: KeyCreate, request_id: str | None,
                         action: str = "key.create") -> tuple[str, ApiKeyRecord]:
        self._check_key_limits(body, org.limits)
        self._check_models(body.models, "models")
        now = self._clock()
        key_id, raw = apikeys.new_key()
        expires = now + body.expires_in_secs if body.expires_in_secs else None
        key = ApiKeyRecord(key_id=key_id, org_id=org.id, name=body.name, scopes=body.scopes,
                           expires_at=expires, limits=body.limits, models=body.models,
                           created_at=now,
                           digest=apikeys.digest(raw))
        await self._store.add_key(key)
        await self._audit.record(action, f"{org.id}/{key_id}", before=None, after=key.public(),
                                 request_id=request_id)
        return raw, key

    def _check_key_limits(self, body: KeyCreate, org_limits: Limits, param_prefix: str = "") -> None:
        too_high = body.limits.exceeding(org_limits.over(self._defaults))
        if too_high:
            raise InvalidRequest(f"a key's limits must not exceed its organisation's: {', '.join(too_high)}",
                                 param=f"{param_prefix}limits.{too_high[0]}", code="limit_above_org")

    def _check_models(self, patterns: list[str] | None, param: str) -> None:
        """Refuse a pattern that matches no model: a typo would deny every call silently."""
        if self._catalogue and (missing := unmatched(patterns, self._catalogue)):
            raise InvalidRequest(f"{missing[0]!r} matches no model (GET /v1/models lists them)",
                                 param=param, code="unknown_model")

    async def key(self, key_id: str) -> ApiKeyRecord:
        key = await self._store.get_key(key_id) if apikeys.is_key_id(key_id) else None
        if key is None:
            raise NotFound(f"no API key {key_id[:64]!r}", param="key_id")
        return key

    async def rotate_key(self, key_id: str, body: KeyRotate, request_id: str | None
                         ) -> tuple[str, ApiKeyRecord, ApiKeyRecord]:
        old = await self.key(key_id)
        if old.status == "revoked":
            raise InvalidRequest("a revoked key cannot be rotated", param="key_id")
        org = await self.org(old.org_id)
        left = None if old.expires_at is None else max(1, int(old.expires_at - self._clock()))
        raw, new = await self.create_key(
            org, KeyCreate(name=old.name, scopes=old.scopes, limits=old.limits, models=old.models,
                           expires_in_secs=left),
            request_id, action="key.rotate")
        grace_end = self._clock() + body.grace_secs
        update = {"status": "revoked"} if body.grace_secs == 0 else \
            {"expires_at": min(grace_end, old.expires_at or grace_end)}
        retired = old.model_copy(update=update)
        await self._store.save_key(retired)
        await self._audit.record("key.retire", f"{org.id}/{key_id}", before=old.public(),
                                 after=retired.public(), request_id=request_id)
        return raw, new, retired

    async def revoke_key(self, key_id: str, request_id: str | None) -> ApiKeyRecord:
        key = await self.key(key_id)
        revoked = key.model_copy(update={"status": "revoked"})
        await self._store.save_key(revoked)
        await self._audit.record("key.revoke", f"{key.org_id}/{key_id}", before=key.public(),
                                 after=revoked.public(), request_id=request_id)
        return revoked
