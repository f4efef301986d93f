"""Admin API bodies: strict, unknown fields refused; names, time zones, profiles and grace."""

import pytest
from pydantic import ValidationError

from llmgw.tenancy.admin_bodies import MAX_GRACE_SECS, KeyCreate, KeyRotate, OrgCreate, OrgPatch
from llmgw.tenancy.limits import Limits
from llmgw.tenancy.records import INFERENCE_SCOPES


@pytest.mark.parametrize("name", ["acme", "Ünïcode & Co", "a", "x" * 64, "a b"])
def test_printable_names_are_taken(name):
    assert OrgCreate(name=name).name == name


@pytest.mark.parametrize("name", ["", " acme", "acme ", "x" * 65, "a\nb", "a\x00b", "a\x85b", 5])
def test_names_with_control_characters_edge_spaces_or_too_long_are_refused(name):
    with pytest.raises(ValidationError):
        OrgCreate(name=name)


def test_an_org_body_takes_limits_at_the_top_level_and_a_first_key():
    body = OrgCreate(name="acme", rpm_limit=100, profile="pro", timezone="Europe/Paris",
                     key={"name": "first", "scopes": ["chat"]})
    assert body.limits() == Limits(rpm_limit=100)
    assert body.key.name == "first" and [s.value for s in body.key.scopes] == ["chat"]
    assert OrgCreate(name="x").key.scopes == list(INFERENCE_SCOPES)  # the default first key


@pytest.mark.parametrize("fields", [{"timezone": "Mars/Olympus"}, {"profile": "gold"},
                                    {"unknown": 1}, {"key": {"scopes": []}},
                                    {"key": {"expires_in_secs": 0}}, {"models": ["bad pattern"]}])
def test_bad_org_bodies_are_refused(fields):
    with pytest.raises(ValidationError):
        OrgCreate(name="acme", **fields)


def test_a_patch_says_which_limits_it_changes_null_included():
    patch = OrgPatch(rpm_limit=None, tpm_limit=500, status="suspended")
    assert patch.limit_changes() == {"rpm_limit": None, "tpm_limit": 500}
    assert OrgPatch().limit_changes() == {}
    with pytest.raises(ValidationError):
        OrgPatch(status="deleted")


def test_key_bodies_and_rotation_grace():
    assert KeyRotate().grace_secs == 3600 and KeyRotate(grace_secs=0).grace_secs == 0
    assert KeyRotate(grace_secs=60.0).grace_secs == 60
    for bad in (-1, MAX_GRACE_SECS + 1):
        with pytest.raises(ValidationError):
            KeyRotate(grace_secs=bad)
    with pytest.raises(ValidationError):
        KeyCreate(name="n" * 129)
    with pytest.raises(ValidationError):
        KeyCreate(scopes=["admin"])
