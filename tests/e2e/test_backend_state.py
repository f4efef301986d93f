"""The backend state view through real processes: fresh figures that follow the load, and a
backend whose /metrics hangs or answers garbage, which changes nothing but the view."""

from __future__ import annotations

import concurrent.futures
import math
import time

import httpx
import pytest

from stacks import TestStack

CHAT = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
INTERVAL = 0.5
STALE = 3 * INTERVAL  # the view ignores figures this old
# Each simulator runs 2 sequences at once: a third request to it waits, and says so on /metrics.
ENV = {"BACKEND_METRICS_INTERVAL_SECS": str(INTERVAL), "DEFAULT_MAX_CONCURRENT": "200",
       "DEFAULT_RPS": "1000", "DEFAULT_BURST": "1000", "DEFAULT_RPM_LIMIT": "100000",
       "GLOBAL_MAX_CONCURRENT": "0"}


@pytest.fixture(scope="module")
def vstack(tmp_path_factory):
    stack = TestStack("sim", tmp_path_factory.mktemp("state-view"), workers=2, env=ENV,
                      sim_args=("--max-num-seqs", "2")).start()
    yield stack
    stack.stop()


@pytest.fixture(autouse=True)
def _reset(vstack):
    vstack.chat_faults()
    yield
    vstack.chat_faults()


def _detailed(stack) -> dict[str, dict]:
    """/health/detailed's chat backends by name (as the worker that answered sees them)."""
    body = httpx.get(stack.base_url + "/health/detailed", timeout=10,
                     headers={"Authorization": f"Bearer {stack.admin_token}"}).json()
    return {b["name"]: b for b in body["pools"]["chat"]["backends"]}


def _poll(check, secs: float, what: str):
    deadline = time.monotonic() + secs
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {secs} s: {what}")
        time.sleep(0.1)


def _metric(stack, name: str, **labels) -> float:
    text = httpx.get(stack.base_url + "/metrics", timeout=10,
                     headers={"Authorization": f"Bearer {stack.admin_token}"}).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    row = next(r for r in text.splitlines() if r.startswith(f"{name}{{{wanted}}} "))
    return float(row.split()[-1])


def _chat(stack, n: int, workers: int = 8) -> list[int]:
    def one(_):
        return httpx.post(stack.base_url + "/v1/chat/completions", json=CHAT,
                          headers=stack.auth, timeout=60).status_code
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(n)))


def test_healthy_backends_show_fresh_figures_that_follow_the_load(vstack):
    idle = _poll(lambda: (lambda d: d if all(b["state"]["fresh"] for b in d.values()) else None)(
        _detailed(vstack)), 10, "fresh figures for both chat backends")
    for b in idle.values():
        state = b["state"]
        assert state["age_secs"] < STALE and state["error"] is None
        assert (state["running"], state["waiting"], state["kv_usage"]) == (0, 0, 0)
    vstack.chat_faults(ttft_ms=3000)  # requests hold their slots for 3 s
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        load = pool.submit(_chat, vstack, 8)  # 4 per backend: 2 running, 2 waiting on each
        busy = _poll(lambda: (lambda d: d if any(b["state"]["waiting"] for b in d.values()) else None)(
            _detailed(vstack)), 6, "a backend reporting waiting requests")
        assert any(b["state"]["running"] == 2 and b["state"]["kv_usage"] == 1 for b in busy.values())
        assert _poll(lambda: _metric(vstack, "llmgw_backend_requests_waiting",
                                     backend="chat0", pool="chat") > 0
                     or _metric(vstack, "llmgw_backend_requests_waiting",
                                backend="chat1", pool="chat") > 0, 3, "the waiting gauge")
        assert load.result() == [200] * 8
    _poll(lambda: all(b["state"]["running"] == 0 and b["state"]["waiting"] == 0
                      for b in _detailed(vstack).values()), 5, "the figures back to idle")
    # Idle ties were broken by the backends' figures, which every worker had fresh (the
    # decisions reach Prometheus after each health round).
    _poll(lambda: _metric(vstack, "llmgw_routing_decisions_total", pool="chat",
                          policy="least_load", reason="backend_load") > 0, 3, "the decisions")



@pytest.mark.parametrize("fault, error", [("hang", "no answer within"),
                                          ("garbage", "NotVLLMMetrics"),
                                          ("error", "status 500")])
def test_a_broken_metrics_endpoint_changes_nothing_but_the_view(vstack, fault, error):
    _poll(lambda: _detailed(vstack)["chat0"]["state"]["fresh"], 10, "chat0 fresh at first")
    httpx.post(vstack.backend_url("chat0") + "/sim/faults", json={"metrics_fault": fault}).raise_for_status()
    before = httpx.get(vstack.backend_url("chat0") + "/sim/stats").json()["by_endpoint"]
    _poll(lambda: not _detailed(vstack)["chat0"]["state"]["fresh"], STALE + 3, "chat0's figures stale")
    # That was one worker's view; the others scraped last up to an interval (with jitter)
    # later, and /health/detailed is answered by any of them.
    time.sleep(1.5 * INTERVAL)
    assert _chat(vstack, 40) == [200] * 40  # no error reaches a client
    after = _detailed(vstack)
    chat0, state = after["chat0"], after["chat0"]["state"]
    assert error in state["error"] and state["failures"] >= 1 and not state["fresh"]
    assert state["age_secs"] > STALE  # the figures only age
    assert (chat0["healthy"], chat0["breaker"], chat0["suspect"]) == (True, "closed", False)
    assert after["chat1"]["state"]["fresh"] and after["chat1"]["state"]["error"] is None
    served = httpx.get(vstack.backend_url("chat0") + "/sim/stats").json()["by_endpoint"]
    # chat0 keeps its share: ties fall back to random, as without the view
    assert served.get("/v1/chat/completions", 0) - before.get("/v1/chat/completions", 0) >= 5
    _poll(lambda: _metric(vstack, "llmgw_routing_decisions_total", pool="chat",
                          policy="least_load", reason="fallback_own_counts") > 0, 3,
          "the fallback decisions")
    # The gauges are written after each scrape: the stalest worker's age, NaN for figures
    _poll(lambda: _metric(vstack, "llmgw_backend_state_age_seconds", backend="chat0",
                          pool="chat") > STALE, 3, "the age gauge past staleness")
    _poll(lambda: math.isnan(_metric(vstack, "llmgw_backend_requests_waiting", backend="chat0",
                                     pool="chat")), 3, "no figure in the waiting gauge")
    httpx.post(vstack.backend_url("chat0") + "/sim/faults", json={"metrics_fault": None}).raise_for_status()
    _poll(lambda: _detailed(vstack)["chat0"]["state"]["fresh"], STALE + 3, "chat0 fresh again")
