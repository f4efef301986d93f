"""Fault injection, set by flags at start and through /sim/faults at run time."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.timeout(20)
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def chat_status(sim, n: int = 1) -> list[int]:
    return [sim.post("/v1/chat/completions", CHAT).status_code for _ in range(n)]


def test_faults_state_get_post_merge_and_reset(start_sim):
    sim = start_sim("--ttft-ms", "1")
    state = sim.http.get("/sim/faults").json()
    assert state["error_rate"] == 0 and state["ttft_ms"] == 1 and state["hang"] is False
    sim.faults(error_rate=0.25)
    state = sim.faults(error_status=503, itl_ms=3)
    assert (state["error_rate"], state["error_status"], state["itl_ms"]) == (0.25, 503, 3)  # merged
    state = sim.faults(reset=True)
    assert (state["error_rate"], state["error_status"], state["itl_ms"], state["ttft_ms"]) == (0, 500, 0, 1)
    bad = sim.http.post("/sim/faults", json={"error_rate": 2})
    assert bad.status_code == 400 and "error_rate" in bad.json()["error"]["message"]
    assert sim.http.post("/sim/faults", json={"nonsense": 1}).status_code == 400
    current = sim.http.get("/sim/faults").json()
    assert sim.faults(**current) == current  # GET output can be posted back unchanged


def test_error_rate_runtime_full_and_partial_is_seeded(start_sim):
    sim = start_sim("--seed", "42")
    sim.faults(error_rate=1.0, error_status=503)
    r = sim.post("/v1/chat/completions", CHAT)
    assert r.status_code == 503
    err = r.json()["error"]
    assert (err["type"], err["code"]) == ("ServiceUnavailableError", 503) and err["message"]
    sim.faults(reset=True, error_rate=0.5)
    pattern = chat_status(sim, 40)
    assert {200, 500} == set(pattern)
    twin = start_sim("--seed", "42", "--error-rate", "0.5")
    assert chat_status(twin, 40) == pattern  # same seed, same sequence
    assert sim.stats()["injected_errors"] == pattern.count(500) + 1
    sim.faults(reset=True)
    assert chat_status(sim, 5) == [200] * 5


def test_error_flags(start_sim):
    sim = start_sim("--error-rate", "1", "--error-status", "502")
    assert chat_status(sim) == [502]
    assert sim.http.get("/health").status_code == 200  # only inference fails


def test_loading_runtime_and_flag(start_sim):
    sim = start_sim("--loading-secs", "0.6")
    assert sim.http.get("/health").status_code == 503
    r = sim.post("/v1/chat/completions", CHAT)
    assert r.status_code == 503 and r.json()["error"]["type"] == "ServiceUnavailableError"
    assert sim.http.get("/sim/faults").json()["loading_remaining_secs"] > 0
    time.sleep(0.7)
    assert sim.http.get("/health").status_code == 200 and chat_status(sim) == [200]
    sim.faults(loading_secs=0.3)  # counts from the moment it is set
    assert sim.http.get("/health").status_code == 503
    time.sleep(0.4)
    assert sim.http.get("/health").status_code == 200


def test_health_fail_keeps_inference_working(start_sim):
    sim = start_sim("--health-fail")
    assert sim.http.get("/health").status_code == 503 and chat_status(sim) == [200]
    sim.faults(health_fail=False)
    assert sim.http.get("/health").status_code == 200


def test_hang_until_client_gives_up(start_sim):
    sim = start_sim("--hang")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(sim.url + "/v1/chat/completions", json=CHAT, timeout=0.3)
    stats = sim.stats()
    assert stats["hung"] == 1
    for _ in range(50):  # the server notices the disconnect and lets go of the request
        if sim.stats()["in_flight"] == 0:
            break
        time.sleep(0.02)
    assert sim.stats()["in_flight"] == 0 and sim.stats()["aborted"] == 1
    sim.faults(hang=False)
    assert chat_status(sim) == [200]


def test_drop_after_tokens_streaming_and_not(start_sim):
    sim = start_sim("--drop-after-tokens", "3")
    got = []
    with pytest.raises(httpx.RemoteProtocolError):
        with sim.http.stream("POST", "/v1/chat/completions", json={**CHAT, "max_tokens": 10, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    got.append(line)
    assert len(got) == 4  # role chunk + 3 tokens, then the connection is cut
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(sim.url + "/v1/chat/completions", json=CHAT, timeout=5)
    assert sim.stats()["dropped"] == 2
    sim.faults(drop_after_tokens=None)
    assert chat_status(sim) == [200]


def test_trickle_sends_the_head_at_once_and_the_body_slowly(start_sim):
    sim = start_sim("--trickle-ms", "20")
    with sim.http.stream("POST", "/v1/chat/completions", json=CHAT) as r:
        started, pieces = time.perf_counter(), []
        assert r.status_code == 200 and int(r.headers["content-length"]) > 200
        for piece in r.iter_raw():
            pieces.append(piece)
        took = time.perf_counter() - started
    body = b"".join(pieces)
    assert len(body) == int(r.headers["content-length"]) and b'"chat.completion"' in body
    assert len(pieces) >= 10 and took >= (len(body) // 16) * 0.02 * 0.9, (len(pieces), took)
    sim.faults(trickle_ms=0)
    assert timed_chat(sim) < 0.5


def timed_chat(sim, **extra) -> float:
    t0 = time.perf_counter()
    assert sim.post("/v1/chat/completions", {**CHAT, **extra}).status_code == 200
    return time.perf_counter() - t0


def test_latency_and_slow_factor_at_run_time(start_sim):
    sim = start_sim()
    assert timed_chat(sim) < 0.15
    sim.faults(ttft_ms=150, itl_ms=30)
    assert 0.235 <= timed_chat(sim) < 0.6  # 150 ms TTFT + 3 gaps of 30 ms
    sim.faults(slow_factor=3)
    assert 0.71 <= timed_chat(sim) < 1.5
    sim.faults(reset=True)
    assert timed_chat(sim) < 0.15


def test_metrics_fault_breaks_only_metrics(start_sim):
    sim = start_sim("--metrics-fault", "garbage")
    r = sim.http.get("/metrics")
    assert r.status_code == 200 and "vllm:num_requests_waiting{model_name" not in r.text
    assert chat_status(sim) == [200] and sim.http.get("/health").status_code == 200
    assert sim.faults(metrics_fault="error")["metrics_fault"] == "error"
    assert sim.http.get("/metrics").status_code == 500
    sim.faults(metrics_fault="hang")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(sim.url + "/metrics", timeout=0.3)
    assert chat_status(sim) == [200]
    assert sim.http.post("/sim/faults", json={"metrics_fault": "slow"}).status_code == 400
    sim.faults(reset=True)
    r = sim.http.get("/metrics")
    assert r.status_code == 200 and "vllm:num_requests_waiting{" in r.text
