"""`gatewayctl smoke`: an end-to-end check of a running platform, as an operator runs it after a
deployment. It makes a throw-away organisation, calls every endpoint of the endpoint table once
(its example body, on a model that serves it), and removes the organisation."""

from __future__ import annotations

import json
import secrets
import ssl
import sys
import time
from collections.abc import Callable

import httpx
from pydantic import ValidationError

from ..endpoints import ENDPOINTS, EndpointSpec

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


def _stream(http: httpx.Client, auth: dict, models: list[dict]) -> str:
    model = next((m["id"] for m in models if "chat" in m["endpoints"]), None)
    if model is None:
        return "no model here serves chat"
    with http.stream("POST", "/v1/chat/completions", headers=auth,
                     json={"model": model, "messages": MSG, "max_tokens": 8, "stream": True}) as resp:
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

    def models() -> str:
        state["models"] = _expect(http.get("/v1/models", headers=state["auth"]), 200, "models")["data"]
        return f"{len(state['models'])} models"

    def endpoint_call(endpoint: EndpointSpec) -> Callable[[], str]:
        """The endpoint's example body (endpoints.py) on a model that serves it; the answer
        must match the endpoint's answer schema."""
        def run() -> str:
            model = next((m["id"] for m in state.get("models", ())
                          if endpoint.serves.value in m["endpoints"]), None)
            if model is None:
                return "no model here serves it"
            path = endpoint.paths[0]
            answer = _expect(http.post(path, headers=state["auth"],
                                       json={"model": model, **endpoint.example}), 200, path)
            try:
                endpoint.answer.model_validate(answer)
            except ValidationError as exc:
                raise SmokeFailure(f"{path}: unexpected answer {json.dumps(answer)[:200]}: "
                                   f"{exc.errors()[:1]}") from None
            return f"ok ({model})"
        return run

    def limit() -> str:
        _expect(http.patch(f"/admin/orgs/{state['org']}", headers=admin, json={"rpm_limit": 1}), 200, "set limit")
        # Any model this platform serves, through the first endpoint serving it: the refusal
        # comes before the backend is asked, and no model name is assumed to exist.
        served = next(((e, m["id"]) for e in ENDPOINTS for m in state.get("models", ())
                       if e.serves.value in m["endpoints"]), None)
        if served is None:
            raise SmokeFailure("limit refusal: no model to ask")
        endpoint, model = served
        resp = http.post(endpoint.paths[0], headers=state["auth"],
                         json={"model": model, **endpoint.example})
        err = _expect(resp, 429, "limit refusal").get("error", {})
        return f"429 {err.get('code')}, Retry-After {resp.headers.get('retry-after')}"

    return [
        ("health", lambda: _expect(http.get("/healthz"), 200, "healthz")["status"]),
        ("admin without token", lambda: _expect(http.get("/admin/orgs"), 401, "no token")["error"]["code"]),
        ("admin with a wrong token", lambda: _expect(http.get("/admin/orgs", headers={
            "X-Admin-Token": "wrong-" + secrets.token_hex(8)}), 401, "wrong token")["error"]["code"]),
        ("create organisation and key", create),
        ("models", models),
        ("chat stream", lambda: _stream(http, state["auth"], state.get("models", []))),
        *((f"{e.name} ({e.paths[0]})", endpoint_call(e)) for e in ENDPOINTS),
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
