"""Issue 17's "done when": no secret of the deployment in any file the stack writes, after
requests carrying them everywhere a client can put them, through nginx (TLS) to two workers."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import httpx
import pytest

from stack.processes import start_edge, stop, wait_healthy
from stacks import TestStack, free_port

# Small, so a body nginx itself refuses (413 past MAX_BODY_BYTES + 64 KiB) is cheap to send.
MAX_BODY = 4096


@pytest.fixture
def stack_behind_tls(tmp_path):
    stack = TestStack("sim", tmp_path, workers=2, env={"MAX_BODY_BYTES": str(MAX_BODY)}).start()
    https_port, http_port = free_port(), free_port()
    nginx = None
    try:
        nginx = start_edge(stack.cfg, [stack.cfg.gateway_port], https_port=https_port,
                           http_port=http_port)
        wait_healthy([nginx], 20, stack.logs)
        yield stack, https_port, http_port
    finally:
        stack.stop()
        if nginx is not None:
            stop([nginx.popen.pid], grace=10)


def _carriers(secret: str) -> list[tuple[str, str, dict, object]]:
    """(method, target, headers, json body or raw bytes) carrying the secret in one place each."""
    chat = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    anthropic = {"model": "qwen", "messages": [{"role": "user", "content": secret}], "max_tokens": 2}
    return [
        ("GET", f"/v1/{secret}", {}, None),
        ("GET", f"/v1/models/{secret}", {}, None),
        ("GET", f"/v1/models?key={secret}&again={secret}", {}, None),
        ("GET", f"/admin/orgs/{secret}", {}, None),
        ("GET", "/admin/audit?before=" + secret, {}, None),
        ("POST", f"/v1/chat/completions?api_key={secret}", {}, chat),
        ("POST", "/v1/chat/completions", {"X-Request-ID": secret}, chat),
        ("POST", "/v1/chat/completions", {"X-Request-ID": f"req.{secret}.1"}, chat),
        ("POST", "/v1/chat/completions", {"User-Agent": secret, "Referer": f"https://x/{secret}",
                                          "X-Api-Key": secret, "Cookie": f"session={secret}",
                                          "X-Forwarded-For": secret, "Traceparent": secret}, chat),
        ("GET", "/v1/models", {"Authorization": f"Bearer {secret}"}, None),
        ("GET", "/admin/orgs", {"X-Admin-Token": secret + "x"}, None),
        ("POST", "/v1/chat/completions", {}, {**chat, "model": secret}),
        ("POST", "/v1/chat/completions", {}, {**chat, "user": secret, "stream": True,
                                              "messages": [{"role": "user", "content": secret}]}),
        ("POST", "/v1/chat/completions", {}, {**chat, secret: 1}),
        ("POST", "/v1/chat/completions", {}, {**chat, "max_tokens": secret}),
        ("POST", "/v1/chat/completions", {}, b'{"model": "' + secret.encode() + b'", "messages": ['),
        # Anthropic's SDKs send the key as x-api-key: a credential on /v1/messages only
        ("POST", "/v1/messages", {"Authorization": "", "X-Api-Key": secret}, anthropic),
        ("POST", "/v1/messages/count_tokens", {"Authorization": "", "X-Api-Key": secret},
         {"model": secret, "messages": anthropic["messages"]}),
        ("POST", "/v1/messages", {"Authorization": "", "X-Api-Key": secret},
         {**anthropic, "stream": True, "system": secret}),
        ("POST", "/v1/embeddings", {}, {"model": "snowflake-arctic-embed", "input": secret}),
        ("POST", "/v1/rerank", {}, {"model": "bge-reranker-v2-m3", "query": secret,
                                    "documents": [secret]}),
        ("POST", f"/v1/chat/completions?k={secret}", {"Referer": secret},
         {**chat, "pad": "x" * (MAX_BODY + 70_000)}),  # refused by nginx itself (413)
        # the console's sign-in: the token in its body (a session for the admin token), in a
        # query string (refused), in a cookie
        ("POST", "/dashboard/session", {"Authorization": ""}, {"token": secret}),
        ("POST", f"/dashboard/session?token={secret}", {"Authorization": ""}, None),
        ("GET", "/dashboard/session", {"Authorization": "", "Cookie": f"llmgw_console={secret}"}, None),
    ]


def _admin_carriers(secret: str) -> list[tuple[str, str, dict, object]]:
    """Admin API bodies: invalid names, unknown fields, bad limits (400s that name the field)."""
    return [
        ("POST", "/admin/orgs", {}, {"name": secret}),
        ("POST", "/admin/orgs", {}, {"name": "team-x", secret: 1}),
        ("POST", "/admin/orgs", {}, {"name": "team-y", "rpm_limit": secret}),
        ("POST", "/admin/orgs", {}, {"name": "team-z", "timezone": secret}),
        ("POST", f"/admin/keys/{secret}/rotate", {}, {"grace_secs": secret}),
    ]


def _send(client: httpx.Client, auth: dict, method: str, target: str, headers: dict, body) -> int:
    content = body if isinstance(body, bytes) else None
    payload = None if isinstance(body, bytes) or body is None else body
    resp = client.request(method, target, headers={**auth, **headers}, json=payload,
                          content=content)
    return resp.status_code


def _hits(state_dir: Path, secrets: dict[str, str]) -> dict[str, list[str]]:
    """For each secret, the files under state_dir holding it: every log (logs/: gateway, nginx
    access and error, simulators, Redis) and nginx's rendered config. Not redis/, the
    database: it keeps what the admin API was asked to store (an organisation named with a
    secret is data, not a log line), nor the certificate pair."""
    files = [p for p in state_dir.rglob("*")
             if p.is_file() and not {"certs", "redis"} & set(p.relative_to(state_dir).parts)]
    assert len([p for p in files if p.parent.name == "logs"]) >= 9, files  # 5 sims, gw, redis, nginx x2
    return {name: [str(p.relative_to(state_dir)) for p in files if secret.encode() in p.read_bytes()]
            for name, secret in secrets.items()}


def test_no_secret_of_the_deployment_in_any_log(stack_behind_tls):
    stack, https_port, http_port = stack_behind_tls
    org = stack.create_org()
    key = org["api_key"]
    secrets = {"ADMIN_TOKEN": stack.admin_token, "BACKEND_API_KEY": stack.backend_key,
               "api key": key, "its random part": key[20:]}
    ca = ssl.create_default_context(cafile=stack.cfg.state_dir / "certs" / "cert-fullchain.crt")
    statuses = set()
    with httpx.Client(base_url=f"https://127.0.0.1:{https_port}", verify=ca, timeout=30) as client:
        for secret in secrets.values():
            for carrier in _carriers(secret):
                statuses.add(_send(client, {"Authorization": f"Bearer {key}"}, *carrier))
            for carrier in _admin_carriers(secret):
                statuses.add(_send(client, {"X-Admin-Token": stack.admin_token}, *carrier))
    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}") as plain:
        for secret in secrets.values():
            statuses.add(plain.get(f"/v1/{secret}", headers={"Referer": secret}).status_code)
    # The run reached every kind of answer: served, refused by the gateway, refused by nginx.
    assert {200, 301, 400, 401, 404, 413} <= statuses, statuses
    time.sleep(1.5)  # the gateway's log writer and Redis' everysec append flush
    hits = _hits(stack.cfg.state_dir, secrets)
    assert hits == {name: [] for name in secrets}, json.dumps(hits, indent=1)
