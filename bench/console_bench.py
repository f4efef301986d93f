"""The console's weight and speed, measured in a real browser (Debian's Chromium, headless,
driven by Playwright) against the real gateway (2 workers) holding 100 organisations and
1,000 keys (issue 21: first load under 300 KB transferred, each page drawn in under 200 ms).

Per page: the time, in the page, from asking for it (a hash change) to the frame after its
data is drawn (the page marks itself with data-page), --repeats times, median and slowest; and the admin or monitoring
API calls behind it, timed alone over HTTP. The first load: bytes transferred for the page,
its script and style (the browser's own resource timing). Figures are printed as ratios
against the targets. Results: bench/results/console.{json,md}. Loopback only; about 2 min.

    PYTHONPATH=gateway:simulator .venv/bin/python bench/console_bench.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from stacks import OPEN_LIMITS, TestStack  # noqa: E402

ORGS, KEYS_PER_ORG = 100, 10
FIRST_LOAD_KB, PAGE_MS = 300, 200
PAGES = ("overview", "backends", "orgs", "keys", "usage", "quotas", "audit", "batches")
# What each page asks the gateway for (console.js), to time the API alone.
CALLS = {"overview": ["/health/detailed", "/monitor/key_usage?limit=100"],
         "backends": ["/health/detailed"],
         "orgs": ["/admin/orgs?limit=500"],
         "keys": ["/admin/orgs?limit=500", "/admin/orgs/{org}/keys"],
         "usage": ["/monitor/key_usage?limit=100", "/admin/orgs?limit=500",
                   "/monitor/usage?org_id={org}&granularity=day&count=30"],
         "quotas": ["/admin/quotas?limit=500"],
         "audit": ["/admin/audit?limit=100"],
         "batches": ["/admin/batches?limit=100"]}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def populate(stack: TestStack) -> str:
    """100 organisations of 10 keys each, a few calls on some; returns the first org's id."""
    first = None
    with stack.admin() as admin:
        for i in range(ORGS):
            made = admin.post("/admin/orgs", json={"name": f"bench org {i:03d}", **OPEN_LIMITS}).json()
            first = first or made["org"]["id"]
            for k in range(KEYS_PER_ORG - 1):
                admin.post(f"/admin/orgs/{made['org']['id']}/keys", json={"name": f"k{k}"})
            if i % 10 == 0:
                httpx.post(stack.base_url + "/v1/chat/completions", timeout=30,
                           headers={"Authorization": f"Bearer {made['api_key']}"},
                           json={"model": "qwen", "messages": [{"role": "user", "content": "hi"}],
                                 "max_tokens": 4}).raise_for_status()
    return first


def api_times(stack: TestStack, org: str, repeats: int) -> dict[str, dict]:
    out = {}
    with stack.admin() as admin:
        for page, calls in CALLS.items():
            totals = []
            for _ in range(repeats):
                started = time.perf_counter()
                for call in calls:
                    admin.get(call.format(org=org)).raise_for_status()
                totals.append(1000 * (time.perf_counter() - started))
            out[page] = _spread(totals)
    return out


def browser_times(stack: TestStack, org: str, repeats: int) -> tuple[dict, int]:
    from playwright.sync_api import sync_playwright
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.goto(stack.base_url + "/dashboard")
        page.wait_for_load_state("networkidle")
        first_load = page.evaluate("""() => performance.getEntriesByType('navigation')
            .concat(performance.getEntriesByType('resource'))
            .reduce((n, e) => n + (e.transferSize || 0), 0)""")
        page.fill("input[name=token]", stack.admin_token)
        page.click("#sign-in-form button[type=submit]")
        page.wait_for_selector("#page[data-page=overview]")
        def visit(name: str) -> float:
            """ms in the page from asking for `name` to the frame after its data is drawn."""
            return page.evaluate("""(n) => new Promise((resolve) => {
                const target = document.getElementById('page');
                target.dataset.page = '';
                const t0 = performance.now();
                const seen = new MutationObserver(() => {
                    if (target.dataset.page !== n) return;
                    seen.disconnect();
                    requestAnimationFrame(() => resolve(performance.now() - t0));
                });
                seen.observe(target, {attributes: true, attributeFilter: ['data-page']});
                if (location.hash === '#' + n) window.dispatchEvent(new HashChangeEvent('hashchange'));
                else location.hash = n;
            })""", name)
        out = {}
        for name in PAGES:
            took = []
            for i in range(repeats + 1):
                visit("backends" if name == "overview" else "overview")
                ms = visit(name)
                if i:  # the first visit warms caches (the gateway's and the browser's)
                    took.append(ms)
            out[name] = _spread(took)
        browser.close()
    return out, first_load


def _spread(values: list[float]) -> dict:
    return {"median_ms": round(statistics.median(values), 1), "max_ms": round(max(values), 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "console"))
    args = p.parse_args()
    stack = TestStack("sim", Path(tempfile.mkdtemp(prefix="console-bench-")), workers=2,
                      sim_args=("--ttft-ms", "5", "--itl-ms", "1")).start()
    try:
        org = populate(stack)
        pages, first_load = browser_times(stack, org, args.repeats)
        apis = api_times(stack, org, args.repeats)
    finally:
        stack.stop()
    result = {"orgs": ORGS, "keys": ORGS * KEYS_PER_ORG, "repeats": args.repeats,
              "first_load_bytes": first_load, "first_load_ratio": first_load / 1024 / FIRST_LOAD_KB,
              "pages": pages, "apis": apis,
              "checks": {"first_load_under_300kb": first_load < FIRST_LOAD_KB * 1024,
                         "every_page_under_200ms": all(v["median_ms"] < PAGE_MS for v in pages.values())}}
    Path(args.out + ".json").write_text(json.dumps(result, indent=2))
    Path(args.out + ".md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    rows = [f"| {name} | {v['median_ms']} ({v['max_ms']}) | {v['median_ms'] / PAGE_MS:.2f} | "
            f"{r['apis'][name]['median_ms']} ({r['apis'][name]['max_ms']}) |"
            for name, v in r["pages"].items()]
    return "\n".join([
        "# The console's weight and speed (bench/console_bench.py)", "",
        f"Real gateway (2 workers) with {r['orgs']} organisations and {r['keys']} keys; Debian's "
        f"Chromium, headless. Each page {r['repeats']} times after a first visit: median "
        "(slowest), from asking for the page to its data drawn; beside it, the API calls behind "
        "the page timed alone over HTTP.", "",
        f"First load (page, script, style), transferred: {r['first_load_bytes'] / 1024:.1f} KB, "
        f"{r['first_load_ratio']:.3f} of the 300 KB target.", "",
        "| page | drawn in ms | ratio to 200 ms | its API calls, ms |", "|---|---|---|---|", *rows, "",
        "Checks: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in r["checks"].items()), ""])


if __name__ == "__main__":
    main()
