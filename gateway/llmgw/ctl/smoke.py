"""`gatewayctl smoke`: an end-to-end check of a running platform, as an operator runs it after a
deployment. It makes a throw-away organisation, uses every endpoint once, and removes it."""

from __future__ import annotations

import json
import secrets
import ssl
import sys
import time
from collections.abc import Callable

import httpx

MSG = [{"role": "user", "content": "Say hello in five words."}]


class SmokeFailure(Exception):
    pass


def _expect(resp: httpx.Response, status: int, what: str) -> dict:
    if resp.status_code != status:
        raise SmokeFailure(f"{what}: expected {status}, got {resp.status_code}: {resp.text[:200]}")
    try:
        return resp.json()
    except ValueError:
        return {}


def _stream(http: httpx.Client, auth: dict) -> str:
    events = []
    with http.stream("POST", "/v1/chat/completions", headers=auth,
                     json={"model": "qwen", "messages": MSG, "max_tokens": 8, "stream": True}) as resp:
        if resp.status_code != 200:
            raise SmokeFailure(f"chat stream: status {resp.status_code}")
        events = [line for line in resp.iter_lines() if line.startswith("data: ")]
    if len(events) < 2 or events[-1] != "data: [DONE]":
        raise SmokeFailure(f"chat stream: {len(events)} events, last {events[-1:]}")
    return f"{len(events)} events, ended with [DONE]"


def _checks(http: httpx.Client, token: str, state: dict) -> list[tuple[str, Callable[[], str]]]:
    admin = {"Authorization": f"Bearer {token}"}

    def create() -> str:
        body = {"name": f"smoke-{secrets.token_hex(4)}", "rpm_limit": 20}
        created = _expect(http.post("/admin/orgs", headers=admin, json=body), 201, "create org")
        state["org"], state["auth"] = created["org"]["id"], {"Authorization": f"Bearer {created['api_key']}"}
        return f"{created['org']['id']} with key {created['key']['key_id']}"

    def call(path: str, body: dict, check: Callable[[dict], bool]) -> Callable[[], str]:
        def run() -> str:
            answer = _expect(http.post(path, headers=state["auth"], json=body), 200, path)
            if not check(answer):
                raise SmokeFailure(f"{path}: unexpected answer {json.dumps(answer)[:200]}")
            return "ok"
        return run

    def limit() -> str:
        _expect(http.patch(f"/admin/orgs/{state['org']}", headers=admin, json={"rpm_limit": 1}), 200, "set limit")
        resp = http.post("/v1/embeddings", headers=state["auth"],
                         json={"model": "snowflake-arctic-embed", "input": "x"})
        err = _expect(resp, 429, "limit refusal").get("error", {})
        return f"429 {err.get('code')}, Retry-After {resp.headers.get('retry-after')}"

    return [
        ("health", lambda: _expect(http.get("/healthz"), 200, "healthz")["status"]),
        ("admin without token", lambda: _expect(http.get("/admin/orgs"), 401, "no token")["error"]["code"]),
        ("admin with a wrong token", lambda: _expect(http.get("/admin/orgs", headers={
            "X-Admin-Token": "wrong-" + secrets.token_hex(8)}), 401, "wrong token")["error"]["code"]),
        ("create organisation and key", create),
        ("models", lambda: f"{len(_expect(http.get('/v1/models', headers=state['auth']), 200, 'models')['data'])} models"),
        ("chat", call("/v1/chat/completions", {"model": "qwen", "messages": MSG, "max_tokens": 8},
                      lambda a: bool(a["choices"][0]["message"]["content"] is not None))),
        ("chat stream", lambda: _stream(http, state["auth"])),
        ("completions", call("/v1/completions", {"model": "qwen", "prompt": "Hello", "max_tokens": 4},
                             lambda a: "text" in a["choices"][0])),
        ("text2sql", call("/v1/text2sql", {"messages": [{"role": "user", "content": "Show all users"}],
                                           "max_tokens": 8}, lambda a: bool(a["choices"]))),
        ("embeddings", call("/v1/embeddings", {"model": "snowflake-arctic-embed", "input": "hello"},
                            lambda a: len(a["data"][0]["embedding"]) > 0)),
        ("rerank", call("/v1/rerank", {"model": "bge-reranker-v2-m3", "query": "capital of France",
                                       "documents": ["Paris is the capital", "London is a city"]},
                        lambda a: len(a["results"]) == 2)),
        ("limit refusal", limit),
    ]


def run(base_url: str, token: str | None, *, verify: bool | str = True, as_json: bool = False) -> int:
    if not token:
        print("gatewayctl smoke: the admin token is needed (ADMIN_TOKEN or --admin-token)", file=sys.stderr)
        return 1
    context = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
    results, state = [], {}
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=60, verify=context) as http:
        try:
            for name, check in _checks(http, token, state):
                started = time.perf_counter()
                try:
                    detail, ok = check(), True
                except (SmokeFailure, httpx.HTTPError, KeyError, IndexError, TypeError) as exc:
                    detail, ok = str(exc), False
                results.append({"check": name, "ok": ok, "detail": detail,
                                "ms": round((time.perf_counter() - started) * 1000, 1)})
                if not ok and name in ("health", "create organisation and key"):
                    break  # nothing after these can work
        finally:
            if "org" in state:
                resp = http.delete(f"/admin/orgs/{state['org']}", headers={"Authorization": f"Bearer {token}"})
                results.append({"check": "clean up", "ok": resp.status_code == 200,
                                "detail": f"deleted {state['org']}", "ms": 0.0})
    _report(results, as_json)
    return 0 if all(r["ok"] for r in results) else 1


def _report(results: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": all(r["ok"] for r in results), "checks": results}, indent=2))
        return
    for r in results:
        print(f"{'ok  ' if r['ok'] else 'FAIL'}  {r['check']:<28} {r['ms']:>8.1f} ms  {r['detail']}")
    failed = sum(not r["ok"] for r in results)
    print(f"\n{len(results) - failed} passed, {failed} failed")
