"""The prefix-cache model through a real simulator process: TTFT, /metrics, /sim/stats, KV waits."""

from __future__ import annotations

import threading
import time

import pytest

from test_sim_capacity import wait_for
from test_sim_vs_real_captures import parse_capture

pytestmark = pytest.mark.timeout(30)
SYSTEM = "You answer questions about the gateway. " * 300  # ~2.1k tokens with the toy tokenizer


def chat(question: str, system: str = SYSTEM, **extra) -> dict:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
            "max_tokens": 1, **extra}


def prompt_len(sim, body: dict) -> int:
    return sim.post("/tokenize", {"messages": body["messages"]}).json()["count"]


def timed(sim, body: dict) -> float:
    t0 = time.perf_counter()
    r = sim.post("/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    return time.perf_counter() - t0


@pytest.mark.parametrize("blocks", ["2048", "0"])
def test_shared_prefix_cuts_time_to_first_token_only_with_the_cache(start_sim, blocks):
    sim = start_sim("--num-gpu-blocks", blocks, "--prefill-ms-per-token", "0.25", "--max-model-len", "8192")
    first = timed(sim, chat("What is a route?"))
    second = timed(sim, chat("What is a backend?"))
    assert first >= 0.5  # ~2.1k uncached tokens at 0.25 ms
    if blocks == "0":
        assert second >= 0.5  # no cache: the whole prompt is prefilled again
    else:
        assert second < 0.25  # only the last block or two are prefilled


def test_concurrent_prefills_share_the_engine(start_sim):
    sim = start_sim("--prefill-ms-per-token", "0.25", "--max-model-len", "8192")
    took: list[float] = []
    threads = [threading.Thread(target=lambda q=q: took.append(timed(sim, chat(q, system=q + SYSTEM))))
               for q in ("first?", "second?")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert min(took) >= 0.5 and max(took) >= 1.0  # one prefill after the other, not side by side


def test_metrics_and_stats_count_prefix_hits_in_tokens(start_sim):
    sim = start_sim("--num-gpu-blocks", "1024", "--max-model-len", "8192")
    a, b = chat("What is a route?"), chat("What is a backend?")
    pa, pb = prompt_len(sim, a), prompt_len(sim, b)
    sim.post("/v1/chat/completions", a)
    assert sim.metric("vllm:prefix_cache_queries_total") == pa
    assert sim.metric("vllm:prefix_cache_hits_total") == 0
    sim.post("/v1/chat/completions", b)
    shared = len(SYSTEM.split()) // 16 * 16  # the system prompt's full blocks, at least
    hits = sim.metric("vllm:prefix_cache_hits_total")
    assert shared <= hits < pb and hits % 16 == 0
    assert sim.metric("vllm:prefix_cache_queries_total") == pa + pb
    assert sim.metric("vllm:prompt_tokens_by_source_total", source="local_cache_hit") == hits
    assert sim.metric("vllm:prompt_tokens_by_source_total", source="local_compute") == pa + pb - hits
    assert sim.metric("vllm:prompt_tokens_cached_total") == hits
    assert sim.metric("vllm:request_prefill_kv_computed_tokens_sum") == pa + pb - hits
    kv = sim.stats()["kv_cache"]
    assert (kv["queries"], kv["hits"], kv["used_blocks"], kv["block_size"]) == (pa + pb, hits, 0, 16)
    assert kv["cached_blocks"] >= pa // 16
    assert sim.http.post("/sim/stats", json={"reset": True}).json()["kv_cache"]["hits"] == 0


def test_kv_usage_follows_the_blocks_of_running_requests(start_sim):
    sim = start_sim("--num-gpu-blocks", "1000", "--itl-ms", "100", "--max-model-len", "8192")
    body = chat("Count slowly.", max_tokens=20, ignore_eos=True)
    blocks = -(-(prompt_len(sim, body) + 20) // 16)
    worker = threading.Thread(target=sim.post, args=("/v1/chat/completions", body))
    worker.start()
    assert wait_for(lambda: sim.stats()["running"] == 1)
    assert sim.metric("vllm:kv_cache_usage_perc") == pytest.approx(blocks / 1000)
    worker.join()
    assert sim.metric("vllm:kv_cache_usage_perc") == 0.0  # cached blocks are evictable, not in use


def test_requests_wait_for_kv_blocks_not_just_for_slots(start_sim):
    # 24 blocks of 16 tokens; each request needs ~14 (200 prompt + 20 output tokens): one at a time.
    sim = start_sim("--num-gpu-blocks", "24", "--max-model-len", "256", "--itl-ms", "40")
    bodies = [{"prompt": f"{tag} " + "word " * 199, "max_tokens": 20, "ignore_eos": True} for tag in "ab"]
    done: list[str] = []

    def send(body: dict):
        assert sim.post("/v1/completions", body).status_code == 200
        done.append(body["prompt"][0])

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    threads[0].start()
    assert wait_for(lambda: sim.stats()["running"] == 1)
    threads[1].start()
    assert wait_for(lambda: sim.stats()["waiting"] == 1)
    assert sim.metric("vllm:num_requests_running") == 1 and sim.metric("vllm:num_requests_waiting") == 1
    assert sim.metric("vllm:kv_cache_usage_perc") <= 1.0
    for t in threads:
        t.join()
    assert done == ["a", "b"] and sim.stats()["kv_cache"]["used_blocks"] == 0


def test_prefill_cost_is_a_runtime_setting(start_sim):
    sim = start_sim("--prefill-ms-per-token", "0.5")
    assert sim.faults(prefill_ms_per_token=0)["prefill_ms_per_token"] == 0
    assert timed(sim, chat("quick", system="short")) < 0.2
    assert sim.faults(reset=True)["prefill_ms_per_token"] == 0.5
    assert sim.http.post("/sim/faults", json={"prefill_ms_per_token": -1}).status_code == 400


def test_cache_smaller_than_one_sequence_refuses_to_start(start_sim):
    with pytest.raises(RuntimeError, match="larger than the KV cache"):
        start_sim("--num-gpu-blocks", "10", "--max-model-len", "4096")


def test_metrics_with_the_cache_keep_real_vllms_shape(start_sim):
    sim = start_sim("--num-gpu-blocks", "512", "--served-model-name", "tiny-chat", "--max-model-len", "512")
    sim.post("/v1/chat/completions", chat("hi", system="You are terse. " * 40))
    sim.post("/v1/chat/completions", chat("hello", system="You are terse. " * 40))
    assert sim.metric("vllm:prefix_cache_hits_total") > 0
    _, _, real = parse_capture("metrics_chat_after_traffic")

    def series(text: str) -> set[str]:
        return {line.rsplit(" ", 1)[0].split("le=")[0] for line in text.splitlines() if line.startswith("vllm:")
                and "cache_config_info" not in line}

    assert series(sim.http.get("/metrics").text) == series(real)
