"""Logs never carry API keys, the admin token or personal data: grep a real gateway's log."""

from __future__ import annotations

import re
import time

import httpx
import orjson

from stacks import TestStack

PII = ["alice.smith@example.com", "+44 20 7946 0958", "4111 1111 1111 1111"]


def _lines(stack) -> list[dict]:
    text = (stack.logs / "gateway.log").read_text()
    return [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_content_log_is_redacted_and_secrets_never_logged(tmp_path):
    stack = TestStack("sim", tmp_path, workers=2, env={"LOG_CONTENT": "on"}).start()
    try:
        org = stack.create_org()
        key, other = org["api_key"], stack.create_org()["api_key"]
        planted = " ".join(PII) + f" my key is {other} and token Bearer {stack.admin_token}"
        auth = {"Authorization": f"Bearer {key}"}
        for body in ({"model": "qwen", "messages": [{"role": "user", "content": planted}], "max_tokens": 2},
                     {"model": "qwen", "messages": [{"role": "user", "content": planted}], "stream": True},
                     {"model": PII[0], "messages": [{"role": "user", "content": "x"}]}):
            httpx.post(stack.base_url + "/v1/chat/completions", json=body, headers=auth)
        httpx.post(stack.base_url + "/v1/embeddings", headers=auth,
                   json={"model": "snowflake-arctic-embed", "input": planted})
        httpx.post(stack.base_url + "/v1/chat/completions", json={"model": "qwen"},
                   headers={"Authorization": f"Bearer {key[:-1]}x"})
        httpx.get(stack.base_url + "/admin/orgs", headers={"X-Admin-Token": stack.admin_token + "x"})
        time.sleep(0.5)
        log = (stack.logs / "gateway.log").read_text()
        for secret in [key, other, stack.admin_token, stack.backend_key, *PII]:
            assert secret not in log, f"{secret[:12]}... reached the log"
        contents = [line["content"] for line in _lines(stack) if "content" in line]
        assert len(contents) == 3
        assert all("[REDACTED_EMAIL]" in c and "[REDACTED_KEY]" in c and "[REDACTED_CARD]" in c
                   and "[REDACTED_PHONE]" in c for c in contents), contents
        access = [line for line in _lines(stack) if line.get("event") == "request"]
        assert {line["status"] for line in access} >= {200, 401, 404}
        assert all(line["request_id"] and "latency_ms" in line for line in access)
        assert any(line["key_id"] == org["key"]["key_id"] for line in access)
    finally:
        stack.stop()


def test_default_logs_hold_no_request_text(sim_stack):
    key = sim_stack.api_key
    marker = "the-secret-recipe-is-" + PII[0]
    httpx.post(sim_stack.base_url + "/v1/chat/completions", headers=sim_stack.auth,
               json={"model": "qwen", "messages": [{"role": "user", "content": marker}], "max_tokens": 2})
    time.sleep(0.3)
    log = (sim_stack.logs / "gateway.log").read_text()
    assert "the-secret-recipe" not in log and key not in log and sim_stack.admin_token not in log


def test_secrets_sent_as_request_id_or_in_the_path_are_masked(sim_stack):
    """Secret-shaped values reach log fields that are identifiers by construction (the
    request id, the path): each is masked there too, and the line is still written."""
    stack, key = sim_stack, sim_stack.api_key
    bearer = "Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo"
    secrets = [key, stack.admin_token, stack.backend_key]
    url = stack.base_url
    for n, secret in enumerate(secrets):
        httpx.post(url + "/v1/chat/completions", headers={**stack.auth, "X-Request-ID": secret},
                   json={"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        httpx.get(url + f"/v1/models/{secret}", headers={**stack.auth, "X-Request-ID": f"path-{n}"})
        httpx.get(url + f"/admin/keys/x{secret}", headers={"X-Request-ID": f"admin-{n}"})
    httpx.get(url + "/v1/" + bearer.replace(" ", "%20"), headers={"X-Request-ID": "bearer-path"})
    time.sleep(0.5)
    log = "".join(p.read_text(errors="replace") for p in stack.logs.iterdir() if p.is_file())
    for secret in [*secrets, bearer.split()[1]]:
        assert secret not in log, f"{secret[:12]}... reached the log"
    lines = [line for line in _lines(stack) if line.get("event") == "request"]
    chat_ids = [line["request_id"] for line in lines if line["path"] == "/v1/chat/completions"]
    # None of them is even kept as the request id (request_id.py): each was replaced by one the
    # gateway made, so the backend never sees it either.
    assert len([i for i in chat_ids if re.fullmatch(r"[0-9a-f]{32}", i)]) >= 3, chat_ids
    access = {line["request_id"]: line for line in lines}
    for marker in ["path-0", "path-1", "path-2", "admin-0", "admin-1", "admin-2", "bearer-path"]:
        assert "[REDACTED" in access[marker]["path"], access[marker]


def test_stdlib_log_lines_mask_secrets_too(tmp_path):
    """Not only access lines: the admission's warning when a settlement fails (Redis gone
    mid-stream) names the request id; a secret sent as that id (the admin token) is not kept
    as the id, so the warning names the gateway's own."""
    stack = TestStack("sim", tmp_path, workers=1, sim_args=("--ttft-ms", "0", "--itl-ms", "100"),
                      env={"REDIS_TIMEOUT_SECS": "0.2"}).start()
    try:
        secret = stack.admin_token
        body = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 15,
                "ignore_eos": True, "stream": True}
        with httpx.stream("POST", stack.base_url + "/v1/chat/completions", json=body, timeout=30,
                          headers={**stack.auth, "X-Request-ID": secret}) as resp:
            lines = resp.iter_lines()
            assert next(lines).startswith("data: ")
            stack.redis.popen.terminate()
            stack.redis.popen.wait()
            assert [line for line in lines if line][-1] == "data: [DONE]"
        time.sleep(1)
        log = "".join(p.read_text(errors="replace") for p in stack.logs.iterdir() if p.is_file())
        assert re.search(r"settlement of [0-9a-f]{32} failed", log), log[-2000:]
        assert secret not in log and stack.api_key not in log
    finally:
        stack.stop()
