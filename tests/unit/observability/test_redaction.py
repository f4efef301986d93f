"""What the log redactor masks, and what it leaves readable."""

from __future__ import annotations

import pytest

from llmgw.observability.redaction import Redactor
from llmgw.tenancy.apikeys import new_key

KEY = new_key()[1]
REDACTOR = Redactor(("admin-token-0123456789", "backend-key-abcdefgh"))


@pytest.mark.parametrize("text", [
    KEY, f"x{KEY}", f"/v1/models/{KEY}", KEY[:30], "sk-proj-abcdefgh12345678",
    "Bearer abcdefgh12345678", "bEaReR\tabcdefgh12345678", "BEARER abcdefgh12345678",
    "id-admin-token-0123456789-x", "backend-key-abcdefgh"])
def test_secret_shapes_are_masked(text):
    masked = REDACTOR.secrets(text)
    assert "[REDACTED_" in masked
    assert "abcdefgh12345678" not in masked and KEY[20:30] not in masked
    assert "0123456789" not in masked


@pytest.mark.parametrize("text", [
    "5f0c6b8a1e2d4c3b9a7f6e5d4c3b2a19", "/v1/chat/completions", "task-12345678-abcdef",
    "/admin/orgs/risk-assessment-team", "bearer", "the bearer of news"])
def test_ordinary_identifiers_are_left_alone(text):
    assert REDACTOR.secrets(text) == text


def test_free_text_masks_personal_data_after_keys():
    text = REDACTOR.free_text(f"mail alice@example.com, card 4111 1111 1111 1111, key {KEY}")
    assert text == "mail [REDACTED_EMAIL], card [REDACTED_CARD], key [REDACTED_KEY]"


OTHER = new_key()[1][20:]


@pytest.mark.parametrize("path, masked", [
    (f"/v1/models/{KEY[20:]}", "/v1/models/[REDACTED_SECRET]"),
    (f"/v1/models/x{KEY[20:]}.json", "/v1/models/[REDACTED_SECRET]"),
    (f"/admin/keys/{KEY[20:]}/rotate", "/admin/keys/[REDACTED_SECRET]/rotate"),
    (f"/v1/{KEY[20:]}/{OTHER}", "/v1/[REDACTED_SECRET]/[REDACTED_SECRET]")])
def test_a_path_loses_the_random_part_of_any_key(path, masked):
    """The random part alone is no `sk-` key and no configured secret: masked by its shape."""
    assert REDACTOR.path(path) == masked


@pytest.mark.parametrize("path", [
    "/v1/chat/completions", "/admin/orgs/org_0123456789abcdef/keys",
    "/admin/keys/0123456789abcdef/rotate", "/v1/models/Qwen2.5-7B", "/docs/oauth2-redirect",
    f"/v1/models/{KEY[20:].lower()}"])
def test_a_path_keeps_routes_and_public_ids(path):
    assert REDACTOR.path(path) == path
