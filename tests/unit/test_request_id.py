"""Which client X-Request-IDs the gateway keeps: sane ones, never one shaped like a credential."""

from __future__ import annotations

import asyncio

import pytest

from llmgw.request_id import RequestIdMiddleware, secret_shaped

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


def _answer_to(request_id: str) -> tuple[str, list]:
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
    asyncio.run(RequestIdMiddleware(app)(scope, None, send))
    return seen["id"], sent[0]["headers"]


def test_a_key_sent_as_request_id_is_replaced_and_never_echoed():
    seen, headers = _answer_to(KEY)
    assert seen != KEY and len(seen) == 32
    assert headers == [(b"content-length", b"0"), (b"x-request-id", seen.encode())]


def test_a_sane_id_is_kept_and_set_once():
    seen, headers = _answer_to("task-12345678")
    assert seen == "task-12345678"
    assert headers == [(b"content-length", b"0"), (b"x-request-id", b"task-12345678")]
