"""The console in a real browser: Debian's Chromium, headless, driven by Playwright, against
the real gateway. Every request the page makes to any other host is blocked and recorded:
the page must load and work with none. Screenshots of each page (1280x800) go to
.stack/console-screenshots/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

pytest.importorskip("playwright")
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / ".stack" / "console-screenshots"
# As the machine's notes advise: no background traffic to hosts this machine cannot reach.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS_NAME = "<img src=x onerror=alert(1)>"
CHAT = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium not found: make debs installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


class Visit:
    """A browser context on the gateway only: other hosts' requests are aborted and kept,
    dialogs (an alert() from injected markup) are dismissed and kept."""

    def __init__(self, browser, base_url: str) -> None:
        self.base, self.blocked, self.dialogs = base_url, [], []
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
        own = urlsplit(base_url).netloc
        self.context.route("**/*", lambda route: route.continue_()
                           if urlsplit(route.request.url).netloc == own
                           else (self.blocked.append(route.request.url), route.abort()))
        self.page: Page = self.context.new_page()
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def sign_in(self, token: str) -> None:
        self.page.goto(self.base + "/dashboard")
        self.page.fill("input[name=token]", token)
        self.page.click("#sign-in-form button[type=submit]")
        expect(self.page.locator("#nav")).to_be_visible()

    def open(self, name: str, shot: str | None = None) -> None:
        self.page.goto(f"{self.base}/dashboard#{name}")
        expect(self.page.locator(f"#page[data-page={name}] h2")).to_be_visible()
        self.page.wait_for_load_state("networkidle")
        if shot:
            SHOTS.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(SHOTS / f"{shot}.png"))

    def fetch_status(self, method: str, path: str, headers: dict | None = None) -> int:
        return self.page.evaluate(
            """async ([method, path, headers]) => (await fetch(path, {method, headers,
                 body: method === "GET" ? undefined : JSON.stringify({name: "from-script"})})).status""",
            [method, path, {"Content-Type": "application/json", **(headers or {})}])


def test_an_operator_signs_in_creates_an_org_and_a_key_and_watches_it_used_then_revokes_it(
        sim_stack, browser):
    v = Visit(browser, sim_stack.base_url)
    v.page.goto(sim_stack.base_url + "/dashboard")
    expect(v.page.locator("#sign-in")).to_be_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    v.page.screenshot(path=str(SHOTS / "sign-in.png"))
    v.sign_in(sim_stack.admin_token)
    v.open("orgs")
    v.page.fill("input[name=org-name]", XSS_NAME)
    v.page.click("#org-create button")
    expect(v.page.locator("#secret")).to_be_visible()
    row = v.page.locator("tbody tr", has_text=XSS_NAME)
    expect(row).to_have_count(1)                         # the name shown as text ...
    assert v.page.locator("#page img").count() == 0      # ... never as an element
    v.page.screenshot(path=str(SHOTS / "orgs.png"))
    org_id = row.locator("td").nth(1).inner_text()

    v.open("keys")
    v.page.select_option("select[name=org]", org_id)
    v.page.fill("input[name=key-name]", "team <b>key</b>")
    v.page.click("#key-create button[type=submit]")
    secret = v.page.locator("#secret").inner_text()
    v.page.click("#copy-secret")
    assert v.page.evaluate("navigator.clipboard.readText()") == secret
    v.page.screenshot(path=str(SHOTS / "keys.png"))
    expect(v.page.locator("tbody tr", has_text="team <b>key</b>")).to_have_count(1)

    for _ in range(3):
        httpx.post(sim_stack.base_url + "/v1/chat/completions", json=CHAT, timeout=30,
                   headers={"Authorization": f"Bearer {secret}"}).raise_for_status()
    key_id = v.page.locator("tbody tr", has_text="team <b>key</b>").locator("td").nth(1).inner_text()
    v.open("usage")
    usage_row = v.page.locator("tbody tr", has_text=key_id)
    expect(usage_row.locator("td").nth(2)).to_have_text("3")
    v.page.select_option("select[name=usage-org]", org_id)
    expect(v.page.locator("svg.chart")).to_have_count(2)
    v.page.select_option("select[name=granularity]", "hour")
    expect(v.page.locator("svg.chart").first.locator("rect")).to_have_count(48)
    v.page.screenshot(path=str(SHOTS / "usage.png"))
    csv_href = v.page.get_attribute("#usage-csv", "href")
    csv_text = v.page.evaluate("(href) => fetch(href).then((r) => r.text())", csv_href)
    assert csv_text.startswith("start,requests,") and sum(
        int(line.split(",")[1]) for line in csv_text.strip().splitlines()[1:]) == 3
    v.page.fill("input[name=usage-key]", "0" * 16)  # another key: none of those calls
    v.page.press("input[name=usage-key]", "Enter")
    expect(v.page.locator("#usage-csv")).to_have_attribute("href", re.compile("key_id=0{16}"))
    v.page.fill("input[name=usage-key]", key_id)
    v.page.press("input[name=usage-key]", "Tab")
    expect(v.page.locator("#usage-csv")).to_have_attribute("href", re.compile(f"key_id={key_id}"))
    per_key = v.page.evaluate("(h) => fetch(h).then((r) => r.text())",
                              v.page.get_attribute("#usage-csv", "href"))
    assert sum(int(line.split(",")[1]) for line in per_key.strip().splitlines()[1:]) == 3
    v.open("quotas", shot="quotas")
    v.page.locator("tbody tr", has_text=XSS_NAME).get_by_role("button", name="Why refused?").click()
    expect(v.page.locator("#rejections h3")).to_contain_text(XSS_NAME)
    columns = v.page.locator("#page > table thead th").all_inner_texts()
    quota = v.page.locator("#page > table tbody tr", has_text=XSS_NAME)
    daily = quota.locator("td").nth(columns.index("daily_request_limit"))
    expect(daily).to_have_text(re.compile(r"^3 / "))  # used / configured
    expect(daily.locator("span")).to_have_attribute("title", re.compile(r"left; resets \d{4}-"))

    v.open("orgs")
    v.page.locator("tbody tr", has_text=XSS_NAME).get_by_role("button", name="Limits").click()
    v.page.fill("#org-edit input[name=rpm_limit]", "777")
    v.page.click("#org-edit button[type=submit]")
    expect(v.page.locator("#org-edit")).to_have_count(0)  # saved: the page is drawn again
    with sim_stack.admin() as admin:
        assert admin.get(f"/admin/orgs/{org_id}").json()["org"]["limits"]["rpm_limit"] == 777

    v.open("keys")
    v.page.select_option("select[name=org]", org_id)
    v.page.locator("tbody tr", has_text="team <b>key</b>").get_by_role("button", name="Revoke").click()
    expect(v.page.locator("tbody tr", has_text="team <b>key</b>").locator("td").nth(3)).to_have_text("revoked")
    refused = httpx.post(sim_stack.base_url + "/v1/chat/completions", json=CHAT, timeout=30,
                         headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401

    v.open("audit")
    v.page.fill("input[name=audit-org]", org_id)
    v.page.click("#audit-filter button")
    revoked = v.page.locator("tbody tr", has_text="key.revoke")
    expect(revoked).to_have_count(1)
    expect(revoked).to_contain_text("console")  # the page's changes are audited as its own
    rows = v.page.locator("#page tbody tr")
    assert all(org_id in rows.nth(i).inner_text() for i in range(rows.count()))
    v.page.screenshot(path=str(SHOTS / "audit.png"))
    for name in ("overview", "backends", "batches"):
        v.open(name, shot=name)
        if name == "overview":  # the last hour per model, with the calls made above in it
            expect(v.page.locator("tbody tr", has_text="Qwen/Qwen2.5-7B-Instruct").first).to_be_visible()
    # A change without the CSRF token, from the signed-in page itself: refused.
    assert v.fetch_status("POST", "/admin/orgs") == 403
    assert v.dialogs == [] and v.blocked == []
    v.context.close()


def test_a_monitor_key_sees_its_own_organisation_and_changes_nothing(sim_stack, browser):
    org = sim_stack.open_org()
    other = sim_stack.open_org()
    with sim_stack.admin() as admin:
        monitor = admin.post(f"/admin/orgs/{org['org']['id']}/keys",
                             json={"name": "ops", "scopes": ["monitor"]}).json()["api_key"]
    for made in (org, other):
        httpx.post(sim_stack.base_url + "/v1/chat/completions", json=CHAT, timeout=30,
                   headers={"Authorization": f"Bearer {made['api_key']}"}).raise_for_status()
    v = Visit(browser, sim_stack.base_url)
    v.sign_in(monitor)
    assert v.page.locator("nav a[href='#orgs']").is_hidden()
    v.open("usage", shot="usage-monitor")
    expect(v.page.locator("tbody tr", has_text=org["key"]["key_id"])).to_have_count(1)
    assert v.page.locator("tbody tr", has_text=other["org"]["id"]).count() == 0
    csrf = v.page.evaluate("fetch('/dashboard/session').then(r => r.json()).then(s => s.csrf_token)")
    assert v.fetch_status("GET", "/admin/orgs") == 401
    assert v.fetch_status("POST", "/admin/orgs", {"X-CSRF-Token": csrf}) == 401
    assert v.fetch_status("GET", f"/monitor/key_usage?org_id={other['org']['id']}") == 404
    v.page.click("#sign-out")
    expect(v.page.locator("#sign-in")).to_be_visible()
    assert v.fetch_status("GET", "/monitor/key_usage") == 401
    assert v.dialogs == [] and v.blocked == []
    v.context.close()
