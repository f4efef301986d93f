"""The console's sign-in, over HTTP against the real gateway: the admin token or a monitor key
in a body (never the URL) buys an HttpOnly, Secure, SameSite=Strict cookie; the cookie works
on the admin and monitoring APIs as the credential it was opened with; every change needs
the session's CSRF token; sign-out, a new admin token or a revoked key ends it."""

from __future__ import annotations

import httpx
import pytest

from llmgw.console.sessions import COOKIE


def _client(stack) -> httpx.Client:
    return httpx.Client(base_url=stack.base_url, timeout=30)


def _sign_in(client: httpx.Client, token: str, **kwargs) -> httpx.Response:
    """POST the token; on success the client sends the cookie from then on (by hand: a
    Secure cookie is a browser's to send over plain HTTP to loopback, not Python's jar's)."""
    resp = client.post("/dashboard/session", json={"token": token}, **kwargs)
    if COOKIE in resp.cookies:
        client.headers["Cookie"] = f"{COOKIE}={resp.cookies[COOKIE]}"
    return resp


def test_the_page_loads_with_a_strict_policy_and_no_inline_script(sim_stack):
    with _client(sim_stack) as c:
        page = c.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
        assert "frame-ancestors 'none'" in csp and page.headers["x-frame-options"] == "DENY"
        assert "<script>" not in page.text and "onclick" not in page.text
        assert c.get("/dashboard/assets/console.js").headers["content-type"].startswith("text/javascript")
        assert c.get("/dashboard/assets/../app.py").status_code == 404
        assert c.get("/dashboard/assets/index.html").status_code == 404


def test_an_admin_session_reads_freely_and_changes_only_with_its_csrf_token(sim_stack):
    with _client(sim_stack) as c:
        signed = _sign_in(c, sim_stack.admin_token)
        assert signed.status_code == 200, signed.text
        cookie = signed.headers["set-cookie"].lower()
        for flag in ("httponly", "secure", "samesite=strict", "path=/", "max-age="):
            assert flag in cookie, cookie
        assert sim_stack.admin_token not in signed.text and sim_stack.admin_token not in cookie
        csrf = signed.json()["csrf_token"]
        assert signed.json()["role"] == "admin" and c.get("/dashboard/session").json()["csrf_token"] == csrf
        assert c.get("/admin/orgs").status_code == 200
        refused = c.post("/admin/orgs", json={"name": "console-no-csrf"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
        wrong = c.post("/admin/orgs", json={"name": "console-bad-csrf"}, headers={"X-CSRF-Token": "x"})
        assert wrong.status_code == 403
        made = c.post("/admin/orgs", json={"name": "console-made"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        with sim_stack.admin() as admin:  # audited as the console's; the token's stay "admin"
            admin.patch(f"/admin/orgs/{made.json()['org']['id']}", json={"rpm_limit": 5})
            trail = admin.get("/admin/audit", params={"limit": 3}).json()["data"]
        assert [(e["action"], e["actor"]) for e in trail] == [
            ("org.update", "admin"), ("key.create", "console"), ("org.create", "console")]
        assert c.get("/monitor/key_usage").status_code == 200
        assert c.get("/metrics").status_code == 200
        # A token in the headers is judged alone: a wrong one is not rescued by the cookie.
        assert c.get("/admin/orgs", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.delete("/dashboard/session").status_code == 403  # sign-out is a change too
        assert c.delete("/dashboard/session", headers={"X-CSRF-Token": csrf}).status_code == 200
        # the old cookie, replayed (the client still sends it)
        assert c.get("/admin/orgs").status_code == 401
        assert c.get("/dashboard/session").status_code == 401


def test_a_monitor_session_sees_its_organisation_read_only_until_its_key_is_revoked(sim_stack):
    org = sim_stack.open_org()
    with sim_stack.admin() as admin:
        monitor = admin.post(f"/admin/orgs/{org['org']['id']}/keys",
                             json={"name": "ops", "scopes": ["monitor"]}).json()
    with _client(sim_stack) as c:
        assert _sign_in(c, org["api_key"]).status_code == 403  # a chat key: no monitor scope
        signed = _sign_in(c, monitor["api_key"])
        assert signed.status_code == 200 and signed.json()["org_id"] == org["org"]["id"]
        csrf = signed.json()["csrf_token"]
        assert c.get("/admin/orgs").status_code == 401
        assert c.post("/admin/orgs", json={"name": "nope"}, headers={"X-CSRF-Token": csrf}).status_code == 401
        usage = c.get("/monitor/key_usage")
        assert usage.status_code == 200 and {r["org_id"] for r in usage.json()["data"]} <= {org["org"]["id"]}
        assert c.get("/health/detailed").status_code == 200
        with sim_stack.admin() as admin:
            admin.delete(f"/admin/keys/{monitor['key']['key_id']}").raise_for_status()
        assert c.get("/monitor/key_usage").status_code == 401


@pytest.mark.parametrize("how", ["query", "wrong", "empty", "origin", "text", "huge"])
def test_refused_sign_ins(sim_stack, how):
    with _client(sim_stack) as c:
        resp = {
            "query": lambda: c.post("/dashboard/session", params={"token": sim_stack.admin_token}),
            "wrong": lambda: _sign_in(c, "not-the-token"),
            "empty": lambda: _sign_in(c, ""),
            "origin": lambda: _sign_in(c, sim_stack.admin_token,
                                       headers={"Origin": "https://evil.example"}),
            "text": lambda: c.post("/dashboard/session", content=sim_stack.admin_token,
                                   headers={"Content-Type": "text/plain"}),
            "huge": lambda: c.post("/dashboard/session", json={"token": "x" * 10_000}),
        }[how]()
        assert resp.status_code in {"query": (400,), "wrong": (401,), "empty": (400,),
                                    "origin": (403,), "text": (400,), "huge": (413,)}[how], resp.text
        assert "set-cookie" not in resp.headers
        assert resp.json()["error"]["type"]


def test_a_form_sign_in_works_without_script(sim_stack):
    with _client(sim_stack) as c:
        signed = c.post("/dashboard/session", data={"token": sim_stack.admin_token})
        assert signed.status_code == 200 and COOKIE in signed.cookies
