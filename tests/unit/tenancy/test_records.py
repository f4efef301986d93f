"""The stored shapes: a key's digest is stored but never shown, and only set limits are kept."""

from llmgw.tenancy.limits import Limits
from llmgw.tenancy.records import INFERENCE_SCOPES, ApiKeyRecord, KeyScope, Org


def _key(**fields) -> ApiKeyRecord:
    return ApiKeyRecord(key_id="0123456789abcdef", org_id="org_1", scopes=[KeyScope.CHAT],
                        created_at=1.0, digest="d" * 64, **fields)


def test_the_digest_is_stored_but_never_shown():
    key = _key(limits=Limits(rpm_limit=5))
    assert "digest" not in key.public() and key.stored()["digest"] == "d" * 64
    assert key.public()["limits"] == {"rpm_limit": 5}  # only what was set
    assert key.public()["scopes"] == ["chat"] and key.public()["status"] == "active"
    assert ApiKeyRecord.model_validate(key.stored()) == key  # what is stored reads back whole


def test_defaults_of_an_organisation():
    org = Org(id="org_1", name="acme", created_at=1.0, updated_at=1.0)
    assert (org.status, org.timezone, org.models, org.limits) == ("active", "UTC", None, Limits())


def test_inference_scopes_leave_out_batch_and_monitor():
    assert KeyScope.BATCH not in INFERENCE_SCOPES and KeyScope.MONITOR not in INFERENCE_SCOPES
    assert KeyScope("text2sql") is KeyScope.TEXT2SQL
