"""Which client X-Request-IDs the gateway keeps: sane ones, never one shaped like a credential."""

from __future__ import annotations

import asyncio
import base64
import random
import secrets
import uuid

import pytest

from llmgw.request_id import RequestIdMiddleware, secret_shaped
from llmgw.tenancy import apikeys

KEY = "sk-0123456789abcdef-" + "A" * 43  # this platform's shape (tenancy/apikeys.py)
JWT = "eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo"


@pytest.mark.parametrize("value", [
    KEY, "trace-" + KEY, "x" + KEY, "sk-proj-abcdefgh", "job.sk-abcdefgh", "sk-", JWT,
    "trace:" + JWT,
])
def test_credential_shaped_ids_are_recognised(value):
    assert secret_shaped(value.encode())


@pytest.mark.parametrize("value", [
    "0f8c2a4e9b1d4c7f8e6a5b3c2d1e0f9a", "task-12345678", "risk-assessment", "disk-0123456789abcd",
    "mine-1", "trace-abc.123", "desk-sk",
])
def test_ordinary_ids_are_not(value):
    assert not secret_shaped(value.encode())


def _answer_to(request_id: str, secrets: tuple[str, ...] = ()) -> tuple[str, list]:
    """The id the app sees and the response headers, for a request sent with `request_id`."""
    seen, sent = {}, []

    async def app(scope, receive, send):
        seen["id"] = scope["state"]["request_id"]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-request-id", b"stale"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "headers": [(b"x-request-id", request_id.encode())]}
    asyncio.run(RequestIdMiddleware(app, secrets)(scope, None, send))
    return seen["id"], sent[0]["headers"]


def test_a_key_sent_as_request_id_is_replaced_and_never_echoed():
    seen, headers = _answer_to(KEY)
    assert seen != KEY and len(seen) == 32
    assert headers == [(b"content-length", b"0"), (b"x-request-id", seen.encode())]


def test_a_sane_id_is_kept_and_set_once():
    seen, headers = _answer_to("task-12345678")
    assert seen == "task-12345678"
    assert headers == [(b"content-length", b"0"), (b"x-request-id", b"task-12345678")]


# --- secrets by shape: the random part of any key, and pieces of the deployment's secrets ---

ADMIN = "hex-admin-token-" + "0123456789abcdef" * 2  # single case: only the piece rule sees it


def _parts(count: int, seed: int) -> list[str]:
    """Random parts of keys as tenancy/apikeys.py makes them (token_urlsafe(32): 43 base64url
    characters), from a seeded generator so that a rare shape cannot make the test flaky."""
    rng = random.Random(seed)
    parts = [base64.urlsafe_b64encode(rng.randbytes(32)).rstrip(b"=").decode() for _ in range(count)]
    assert all(apikeys.well_formed(f"sk-{'0' * 16}-{part}") for part in parts)
    return parts


def _split(text: str, sep: str, every: int) -> str:
    return sep.join(text[i:i + every] for i in range(0, len(text), every))


def _kept(value: str) -> bool:
    seen, _ = _answer_to(value, secrets=(ADMIN,))
    return seen == value


@pytest.mark.parametrize("dress", [
    lambda p: p, lambda p: "req-" + p, lambda p: p + ".1", lambda p: "trace:" + p + ":span",
    lambda p: _split(p, ".", 5), lambda p: _split(p, ":", 3), lambda p: _split(p, "-", 2),
    lambda p: p[:32], lambda p: p[-32:] + "-retry-2", lambda p: "0f8c2a4e" + p[3:38],
])
def test_the_random_part_of_any_key_is_replaced_however_dressed(dress):
    """Any key, not only the caller's: the gateway holds digests, so it goes by shape. 500
    keys each, so a rule that lets a few keys through (one without a digit, say) fails."""
    assert [part for part in _parts(500, seed=17) if _kept(dress(part))] == []


@pytest.mark.parametrize("value", [
    ADMIN, ADMIN[-16:], "x" + ADMIN[16:32] + "y", _split(ADMIN[16:40], ".", 4),
])
def test_sixteen_characters_of_a_deployment_secret_are_replaced(value):
    assert not _kept(value)


def _ulid() -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
    return random.choice("01234567") + "".join(random.choice(alphabet) for _ in range(25))


@pytest.mark.parametrize("make", [
    lambda: str(uuid.uuid4()), lambda: str(uuid.uuid4()).upper(), lambda: uuid.uuid4().hex,
    lambda: "req-" + str(uuid.uuid4()), lambda: secrets.token_hex(16), lambda: secrets.token_hex(8),
    lambda: f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01",  # W3C traceparent
    _ulid, lambda: _ulid().lower(), lambda: f"1-{secrets.token_hex(4)}-{secrets.token_hex(12)}",
    lambda: str(random.randrange(10**18, 10**19)), lambda: "checkout-2024-06-01T12:30:45.123Z",
    lambda: f"order-{random.randrange(10**5)}-customer-{random.randrange(10**5)}",
    lambda: "Req-42", lambda: "ABCdef",
    # a case-folded copy of a random part is no longer the key (about 35 of its bits are
    # lost, and only the gateway can test a guess): kept, as it is shaped like a ULID
    lambda: _parts(1, seed=random.random())[0].lower(),
    lambda: _parts(1, seed=random.random())[0].upper(),
])
def test_ordinary_ids_are_kept(make):
    values = [make() for _ in range(50)]
    assert [v for v in values if not _kept(v)] == []


@pytest.mark.parametrize("value", [
    "RequestFromServiceAlpha", "2ZNLn7QkVbT9dGcXyR0pWmAeHs1",  # CamelCase words; a KSUID
])
def test_mixed_case_ids_of_sixteen_or_more_are_replaced_too(value):
    """The price of the rule: an id mixing cases over 16 characters cannot be told from a
    base62 secret (KSUIDs, nanoids, CamelCase words) and is replaced."""
    assert not _kept(value)
