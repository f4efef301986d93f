"""Through nginx over HTTPS to a real gunicorn gateway: streaming, headers, limits, allow lists."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import time

import httpx
import openai
import pytest

from deploy_support import Edge, raw_get, start_edge, stop_edge
from stack import edge
from stacks import free_port

SECURITY_HEADERS = {
    "strict-transport-security": "max-age=63072000",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
MESSAGES = [{"role": "user", "content": "Say hello."}]


def assert_security_headers(resp: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers.get(name) == value, (resp.status_code, name, resp.headers)
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
    assert len(resp.headers.get_list("x-frame-options")) == 1  # never doubled by the gateway


def assert_openai_error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error
    assert_security_headers(resp)
    return error


@pytest.fixture(scope="module")
def restricted_edge(edges, sim_stack) -> Edge:
    """/admin and /metrics allowed only from 10.0.0.0/8: loopback clients are refused."""
    return edges([f"127.0.0.1:{sim_stack.cfg.gateway_port}"], allow_cidrs=["10.0.0.0/8"])


def test_openai_sdk_streams_chat_over_https(gateway_edge, sim_stack):
    with httpx.Client(verify=ssl.create_default_context(cafile=gateway_edge.ca)) as http:
        client = openai.OpenAI(base_url=gateway_edge.url + "/v1", api_key=sim_stack.api_key,
                               http_client=http, max_retries=0, timeout=60)
        arrivals, text = [], []
        for chunk in client.chat.completions.create(model="qwen", messages=MESSAGES,
                                                    max_tokens=200, stream=True,
                                                    extra_body={"ignore_eos": True}):
            arrivals.append(time.monotonic())
            text.extend(c.delta.content or "" for c in chunk.choices)
        assert chunk.model == "Qwen/Qwen2.5-7B-Instruct"
    assert len(arrivals) >= 50 and "".join(text)
    # Relayed as generated, not in one burst at the end (the simulator spaces tokens 2 ms apart).
    assert arrivals[-1] - arrivals[0] > 0.1


def test_security_headers_on_answers_and_errors(gateway_edge, sim_stack):
    with gateway_edge.client() as client:
        ok = client.get("/v1/models", headers=sim_stack.auth)
        assert ok.status_code == 200
        assert_security_headers(ok)
        assert_openai_error(client.get("/v1/models"), 401, "invalid_api_key")  # the gateway's
        assert_openai_error(client.get("/no/such/path"), 404, "not_found")
        assert_security_headers(client.get("/nginx-health"))
    with gateway_edge.client() as client:
        docs = client.get("/docs")
    csp = docs.headers["content-security-policy"]
    assert docs.status_code == 200 and "script-src 'self'" in csp and "https:" not in csp  # no CDN


def test_http_redirects_to_https(gateway_edge):
    resp = httpx.get(f"http://127.0.0.1:{gateway_edge.http_port}/v1/models?limit=1")
    assert resp.status_code == 301
    assert resp.headers["location"] == f"https://127.0.0.1:{gateway_edge.https_port}/v1/models?limit=1"


def test_plain_http_on_the_https_port_gets_json_400(gateway_edge):
    resp = httpx.get(f"http://127.0.0.1:{gateway_edge.https_port}/v1/models")
    assert_openai_error(resp, 400, "invalid_request")


def test_ten_kilobyte_authorization_header_reaches_the_gateway(gateway_edge):
    with gateway_edge.client() as client:
        resp = client.get("/v1/models", headers={"Authorization": "Bearer sk-" + "x" * 10_240})
    assert_openai_error(resp, 401, "invalid_api_key")
    assert "x-request-id" in resp.headers  # answered by the gateway, not by nginx


def test_headers_too_large_for_nginx_get_json_431(gateway_edge):
    with gateway_edge.client() as client:
        resp = client.get("/v1/models", headers={"X-Padding": "x" * 40_000})
    assert_openai_error(resp, 431, "headers_too_large")


@pytest.mark.parametrize("size, answered_by", [(1_048_576 + 1024, "gateway"),
                                               (3 * 1_048_576, "nginx")])
def test_body_over_one_mebibyte_gets_413(gateway_edge, sim_stack, size, answered_by):
    body = json.dumps({"model": "qwen", "messages": MESSAGES, "pad": "x" * size})
    with gateway_edge.client() as client:
        resp = client.post("/v1/chat/completions", content=body,
                           headers={**sim_stack.auth, "Content-Type": "application/json"})
    assert_openai_error(resp, 413, "request_too_large")
    assert ("x-request-id" in resp.headers) == (answered_by == "gateway")


def test_file_uploads_pass_nginx_up_to_their_own_limit(gateway_edge, edges, sim_stack):
    """/v1/files takes FILES_MAX_BYTES (200 MiB), not the 1 MiB of other bodies, passed on
    unbuffered; over it, nginx's own 413 in OpenAI's shape."""
    key = sim_stack.create_org(key={"name": "k", "scopes": ["batch"]})["api_key"]
    data = b'{"custom_id": "x"}\n' * 300_000  # 5.7 MB
    with gateway_edge.client() as client:
        up = client.post("/v1/files", headers={"Authorization": f"Bearer {key}"},
                         files={"file": ("big.jsonl", data)}, data={"purpose": "batch"})
        assert up.status_code == 200, up.text
        assert_security_headers(up)
        got = client.get(f"/v1/files/{up.json()['id']}/content",
                         headers={"Authorization": f"Bearer {key}"})
        assert got.content == data
    small = edges([f"127.0.0.1:{sim_stack.cfg.gateway_port}"],
                  settings={"FILES_MAX_BYTES": str(2 * 1_048_576)})
    with small.client() as client:
        resp = client.post("/v1/files", headers={"Authorization": f"Bearer {key}"},
                           files={"file": ("big.jsonl", data)}, data={"purpose": "batch"})
    assert_openai_error(resp, 413, "request_too_large")


def test_admin_reachable_from_an_allowed_network(gateway_edge, sim_stack):
    with gateway_edge.client() as client:
        resp = client.get("/admin/orgs", headers={"Authorization": f"Bearer {sim_stack.admin_token}"})
        assert resp.status_code == 200, resp.text
        assert_security_headers(resp)
        assert client.get("/admin/orgs").status_code == 401  # nginx lets it through; the token gates


@pytest.mark.parametrize("path", ["/admin/orgs", "/%61dmin/orgs", "//admin/orgs", "/v1/../admin/orgs",
                                  "/metrics", "/admin"])
def test_admin_and_metrics_refused_from_other_networks(restricted_edge, sim_stack, path):
    resp = raw_get(restricted_edge, path, {"Authorization": f"Bearer {sim_stack.admin_token}",
                                           "X-Forwarded-For": "10.1.2.3"})  # not trusted: ignored
    assert_openai_error(resp, 403, "forbidden")


def test_health_and_inference_stay_open_everywhere(restricted_edge, sim_stack):
    with restricted_edge.client() as client:
        for path in ("/health", "/healthz"):
            resp = client.get(path)
            assert resp.status_code == 200 and resp.json()["status"] == "ready", path
        assert client.get("/v1/models", headers=sim_stack.auth).status_code == 200


def test_client_address_from_a_trusted_proxy_only(edges, sim_stack):
    """Behind a trusted proxy (here: loopback) the forwarded client counts, for allow lists too."""
    behind_proxy = edges([f"127.0.0.1:{sim_stack.cfg.gateway_port}"], allow_cidrs=["10.0.0.0/8"],
                         settings={"TRUSTED_PROXY_CIDRS": "127.0.0.1/32"})
    admin = {"Authorization": f"Bearer {sim_stack.admin_token}"}
    with behind_proxy.client() as client:
        assert client.get("/admin/orgs", headers={**admin, "X-Forwarded-For": "10.1.2.3"}).status_code == 200
        assert client.get("/admin/orgs", headers=admin).status_code == 403
    deadline = time.monotonic() + 3
    while True:  # nginx writes the access line after the answer: give the last one a moment
        clients = [json.loads(line)["client"] for line in behind_proxy.access_log.read_text().splitlines()]
        if clients[-2:] == ["10.1.2.3", "127.0.0.1"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert clients[-2:] == ["10.1.2.3", "127.0.0.1"]


def test_gateway_down_gives_json_502(edges):
    dead = edges([f"127.0.0.1:{free_port()}"])
    with dead.client() as client:
        assert_openai_error(client.get("/v1/models"), 502, "bad_gateway")


def test_silent_gateway_gives_json_504(edges):
    """A gateway that never answers: nginx gives up after its proxy timeout (here 1 s)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes connections; nobody ever reads or answers
        slow = edges([f"127.0.0.1:{silent.getsockname()[1]}"], settings={"MAX_REQUEST_SECS": "1"})
        with slow.client() as client:
            assert_openai_error(client.get("/v1/models"), 504, "upstream_timeout")


def test_a_dead_gateway_replica_is_skipped(edges, sim_stack):
    pair = edges([f"127.0.0.1:{free_port()}", f"127.0.0.1:{sim_stack.cfg.gateway_port}"])
    with pair.client() as client:
        for _ in range(6):
            assert client.get("/v1/models", headers=sim_stack.auth).status_code == 200


def test_stub_status_for_the_exporter_on_its_own_listener(gateway_edge):
    socket = re.search(r"listen unix:(\S+);", gateway_edge.conf.read_text())[1]
    with httpx.Client(transport=httpx.HTTPTransport(uds=socket)) as client:
        assert "Active connections:" in client.get("http://nginx/stub_status").text
        assert client.get("http://nginx/other").status_code == 404
    with gateway_edge.client() as client:  # not on the public listener
        assert client.get("/stub_status").status_code != 200


def test_starts_again_after_being_killed(tmp_path):
    """A SIGKILLed nginx leaves its pid file and status socket behind; the next start copes."""
    first = start_edge(tmp_path, [f"127.0.0.1:{free_port()}"])
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait()
    second = start_edge(tmp_path, [f"127.0.0.1:{free_port()}"])
    try:
        assert httpx.get(edge.health_url(second.http_port)).status_code == 200
    finally:
        stop_edge(second)
    assert not re.search(r"\[(emerg|alert)\]", (tmp_path / "nginx.log").read_text())


def test_a_repeated_request_id_through_nginx_does_not_bend_rpm(gateway_edge, sim_stack):
    """nginx passes the client's X-Request-ID on: the gateway must not name what admission
    takes by it (the same id on every request once admitted 1000 of 1000 against rpm 100)."""
    key = sim_stack.create_org(rpm_limit=20, max_output_tokens=8)["api_key"]
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": "same-every-time"}
    body = {"model": "qwen", "messages": MESSAGES, "max_tokens": 1}
    with gateway_edge.client() as client:
        statuses = [client.post("/v1/chat/completions", json=body, headers=headers).status_code
                    for _ in range(40)]
    assert statuses.count(200) == 20 and statuses.count(429) == 20, statuses


def test_batch_lane_headers_from_outside_never_reach_the_gateway(gateway_edge, sim_stack):
    """A client that sends the batch runner's line headers through nginx is an ordinary client:
    nginx drops them. Sent straight to the gateway, they need the runner's token (401)."""
    fake = {"X-LLMGW-Batch-Item": "org_00/batch_" + "0" * 28 + "/0", "X-LLMGW-Batch-Key": "0" * 64}
    body = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with gateway_edge.client() as client:
        resp = client.post("/v1/chat/completions", json=body, headers={**sim_stack.auth, **fake})
    assert resp.status_code == 200, resp.text
    direct = httpx.post(sim_stack.base_url + "/v1/chat/completions", json=body,
                        headers={**sim_stack.auth, **fake})
    assert direct.status_code == 401


def test_the_console_works_through_nginx_over_https(gateway_edge, sim_stack):
    """Through the edge the page gets the console's policy (its own script, no inline one),
    the sign-in's Secure cookie rides HTTPS, and the admin API answers the session (from an
    allowed network) with its CSRF token."""
    with gateway_edge.client() as client:
        page = client.get("/dashboard")
        csp = page.headers["content-security-policy"]
        assert page.status_code == 200 and "script-src 'self'" in csp and "unsafe" not in csp
        assert len(page.headers.get_list("content-security-policy")) == 1
        assert client.get("/dashboard/assets/console.js").status_code == 200
        signed = client.post("/dashboard/session", json={"token": sim_stack.admin_token})
        assert signed.status_code == 200 and "secure" in signed.headers["set-cookie"].lower()
        client.cookies.set("llmgw_console", signed.cookies["llmgw_console"])
        csrf = signed.json()["csrf_token"]
        assert client.get("/admin/orgs").status_code == 200
        assert client.post("/admin/orgs", json={"name": "edge console"}).status_code == 403
        made = client.post("/admin/orgs", json={"name": "edge console"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
