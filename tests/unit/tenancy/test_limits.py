"""Limit fields: ranges, whole-number floats, and how an organisation's limits sit over the
defaults and a key's narrow them."""

import pytest
from pydantic import ValidationError

from llmgw.tenancy.limits import LIMIT_FIELDS, PROFILES, Limits


def test_whole_number_floats_are_integers_and_nothing_else_is():
    assert Limits(rpm_limit=2117.0).rpm_limit == 2117
    for bad in (2117.5, "2117", True):
        with pytest.raises(ValidationError):
            Limits(rpm_limit=bad)


@pytest.mark.parametrize("field,bad", [("rps", 0), ("rpm_limit", 10_000_001), ("max_concurrent", 0),
                                       ("daily_token_limit", -1), ("tpm_limit", 10**10 + 1)])
def test_values_out_of_range_are_refused(field, bad):
    with pytest.raises(ValidationError):
        Limits(**{field: bad})


def test_unknown_fields_are_refused_and_zero_quotas_allowed():
    with pytest.raises(ValidationError):
        Limits(rpm=5)
    assert Limits(daily_token_limit=0).daily_token_limit == 0


def test_explicit_over_and_narrowed_by():
    org = Limits(rpm_limit=100, tpm_limit=5000)
    assert org.explicit() == {"rpm_limit": 100, "tpm_limit": 5000}
    defaults = Limits(rpm_limit=60, max_concurrent=2)
    assert org.over(defaults) == Limits(rpm_limit=100, tpm_limit=5000, max_concurrent=2)
    key = Limits(rpm_limit=200, max_output_tokens=64)
    assert key.narrowed_by(org) == Limits(rpm_limit=100, tpm_limit=5000, max_output_tokens=64)
    assert Limits(rpm_limit=10).narrowed_by(org).rpm_limit == 10  # the lower wins either way


def test_exceeding_names_only_fields_above_a_set_ceiling():
    ceiling = Limits(rpm_limit=100, tpm_limit=1000)
    assert Limits(rpm_limit=101, tpm_limit=1000, max_concurrent=50).exceeding(ceiling) == ["rpm_limit"]
    assert Limits(rpm_limit=100).exceeding(ceiling) == []


def test_profiles_and_the_field_list():
    assert LIMIT_FIELDS == tuple(Limits.model_fields) and "rpm_limit" in LIMIT_FIELDS
    assert PROFILES["conservative"].rpm_limit < PROFILES["standard"].rpm_limit < PROFILES["pro"].rpm_limit
