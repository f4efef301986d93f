"""nginx's access log masks credentials in the URI: real nginx, the template's own maps."""

from __future__ import annotations

import json
import secrets
import time

import httpx
import pytest

from deploy_support import Edge
from stacks import free_port
from llmgw.tenancy.apikeys import new_key

KEY = new_key()[1]
ADMIN = secrets.token_urlsafe(24)
HEX = secrets.token_hex(32)
MINIMAL = "0123456789abcdef"  # the shortest admin token or backend key the settings accept


@pytest.fixture(scope="module")
def edge_only(edges) -> Edge:
    """An nginx whose gateway is never reached: plain HTTP answers 301 itself, and logs it."""
    return edges([f"127.0.0.1:{free_port()}"])


def _lines(running: Edge) -> list[str]:
    return running.access_log.read_text().splitlines() if running.access_log.exists() else []


def logged_uri(running: Edge, target: str) -> str:
    """The uri field nginx logs for a request whose target is sent exactly as written (this
    module's nginx serves nobody else, so its next line is this request's)."""
    before = len(_lines(running))
    with httpx.Client(base_url=f"http://127.0.0.1:{running.http_port}") as client:
        assert client.get(target).status_code == 301
    deadline = time.monotonic() + 3
    while len(lines := _lines(running)) == before:  # nginx writes the line after the answer
        assert time.monotonic() < deadline, f"no access line for {target}"
        time.sleep(0.02)
    return json.loads(lines[before])["uri"]


@pytest.mark.parametrize("target, expected", [
    (f"/v1/{ADMIN}", "/v1/[REDACTED]"),
    (f"/admin/keys/{KEY}/rotate", "/admin/keys/[REDACTED]/rotate"),
    (f"/v1/models?key={KEY[20:]}&limit=5", "/v1/models?key=[REDACTED]&limit=5"),
    (f"/v1/x{HEX}y.json", "/v1/[REDACTED]"),
    (f"/v1/{MINIMAL}", "/v1/[REDACTED]"),
    (f"/v1/a/{MINIMAL[:15]}", f"/v1/a/{MINIMAL[:15]}"),  # 15 is below the rule: kept
    (f"/{ADMIN}?t={HEX}&k={KEY}&b={MINIMAL}", "/[REDACTED]?t=[REDACTED]&k=[REDACTED]&b=[REDACTED]"),
    (f"/v1/chat/completions?stream=true", "/v1/chat/completions?stream=true"),
    ("/admin/orgs/org_0123456789abcdef/keys", "/admin/orgs/[REDACTED]/keys"),
    (f"/v1/q?a=%2B{HEX}%2F", "/v1/q?a=[REDACTED]"),  # percent-encoded: one run
])
def test_secrets_in_the_uri_are_masked_and_the_route_kept(edge_only, target, expected):
    assert logged_uri(edge_only, target) == expected


def test_more_runs_than_the_maps_mask_drop_the_whole_uri(edge_only):
    """Four maps mask four runs; a fifth left over makes the last map drop the whole URI."""
    target = "/v1/" + "/".join(secrets.token_urlsafe(12) for _ in range(5))
    assert logged_uri(edge_only, target) == "[REDACTED]"
    four = "/v1/" + "/".join(secrets.token_urlsafe(12) for _ in range(4))
    assert logged_uri(edge_only, four) == "/v1/" + "/".join(["[REDACTED]"] * 4)


def test_headers_are_not_logged(edge_only):
    headers = {"User-Agent": ADMIN, "Referer": KEY, "X-Request-ID": HEX, "Cookie": f"k={KEY}"}
    before = len(_lines(edge_only))
    with httpx.Client(base_url=f"http://127.0.0.1:{edge_only.http_port}") as client:
        client.get("/v1/models", headers=headers)
    deadline = time.monotonic() + 3
    while len(_lines(edge_only)) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    new = _lines(edge_only)[before:]
    # A guard: adding $http_user_agent or $http_referer to the format would fail here.
    assert len(new) == 1 and not any(s in new[0] for s in (ADMIN, KEY, HEX)), new
