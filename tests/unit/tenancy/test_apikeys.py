"""API key strings: their shape, the digest that is all ever stored, and the Bearer header."""

import hashlib

import pytest

from llmgw.tenancy.apikeys import (MAX_KEY_LENGTH, bearer_token, digest, is_key_id, new_key,
                                   same_digest, well_formed)


def test_a_new_key_is_well_formed_unique_and_carries_its_id():
    keys = [new_key() for _ in range(50)]
    assert len({raw for _, raw in keys}) == 50
    for key_id, raw in keys:
        assert well_formed(raw) and is_key_id(key_id) and len(raw) == MAX_KEY_LENGTH
        assert raw.startswith(f"sk-{key_id}-")


@pytest.mark.parametrize("raw", [
    "", "sk-", "sk-0123456789abcdef-" + "A" * 42, "sk-0123456789abcdef-" + "A" * 44,
    "sk-0123456789ABCDEF-" + "A" * 43,  # the id is lower-case hex
    "pk-0123456789abcdef-" + "A" * 43, "sk-0123456789abcdef-" + "A" * 42 + "=",
    "sk-0123456789abcdef-" + "A" * 42 + "é", "sk-0123456789abcdef-" + "A" * 42 + "\x00",
])
def test_anything_else_is_refused_by_its_shape(raw):
    assert not well_formed(raw)


def test_the_digest_is_sha256_of_the_whole_key_and_compares_exactly():
    _, raw = new_key()
    assert digest(raw) == hashlib.sha256(raw.encode()).hexdigest()
    assert same_digest(digest(raw), digest(raw)) and not same_digest(digest(raw), digest(raw + "x"))


@pytest.mark.parametrize("key_id,ok", [("0123456789abcdef", True), ("0123456789abcde", False),
                                       ("0123456789abcdeg", False), ("0123456789abcdef0", False)])
def test_key_ids(key_id, ok):
    assert is_key_id(key_id) is ok


@pytest.mark.parametrize("header,token", [
    ("Bearer sk-abc", "sk-abc"), ("bearer  sk-abc ", "sk-abc"), ("BEARER sk-abc", "sk-abc"),
    (None, None), ("", None), ("Basic abc", None), ("Bearer", None), ("Bearer   ", None),
    ("Bearer " + "a" * 600, None),  # longer than any key could make it: not read
])
def test_the_bearer_token_of_an_authorization_header(header, token):
    assert bearer_token(header) == token
