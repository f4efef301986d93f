"""Every request passes one middleware chain and one table of error handlers: the same
malformed request to an inference route and to an admin route gets the same error shape, the
same headers and the same access-log line (through gunicorn, real processes)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from stacks import TestStack

BAD_BODIES = [b'{"model": "qwen", ', b"\xff\xfe not utf-8", b"[1, 2, 3]"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = TestStack("sim", tmp_path_factory.mktemp("one-stack"), workers=1).start()
    yield stack
    stack.stop()


def _access_line(stack: TestStack, request_id: str) -> dict:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in (stack.logs / "gateway.log").read_text().splitlines():
            if request_id in line and line.startswith("{"):
                record = json.loads(line)
                if record.get("event") == "request":
                    return record
        time.sleep(0.05)
    raise AssertionError(f"no access line for {request_id}")


@pytest.mark.parametrize("body", BAD_BODIES)
def test_a_malformed_body_is_answered_alike_on_inference_and_admin_routes(stack, body):
    answers = {}
    for route, path, token in [("chat", "/v1/chat/completions", stack.api_key),
                               ("admin", "/admin/orgs", stack.admin_token)]:
        request_id = f"same-{route}-{len(body)}"
        resp = httpx.post(stack.base_url + path, content=body, timeout=10, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "X-Request-ID": request_id})
        answers[route] = (resp, _access_line(stack, request_id))
    (chat, chat_log), (admin, admin_log) = answers["chat"], answers["admin"]
    assert chat.status_code == admin.status_code == 400, (chat.text, admin.text)
    assert set(chat.json()) == set(admin.json()) == {"error"}
    assert set(chat.json()["error"]) == set(admin.json()["error"]) == {
        "message", "type", "param", "code"}
    assert chat.json()["error"]["type"] == admin.json()["error"]["type"] == "invalid_request_error"
    assert chat.json()["error"]["code"] == admin.json()["error"]["code"], (chat.text, admin.text)
    assert chat.headers["content-type"] == admin.headers["content-type"]
    for resp, route in ((chat, "chat"), (admin, "admin")):
        assert resp.headers.get_list("x-request-id") == [f"same-{route}-{len(body)}"]
    assert set(chat_log) == set(admin_log)
    assert chat_log["status"] == admin_log["status"] == 400
    assert chat_log["error"] == admin_log["error"] == chat.json()["error"]["code"]
