"""Two in-process figures of bench/routing_bench.py.

`oracle_hit_rate`: the prefix-cache hit rate of a router that knows every replica's cache.
It replays a run's requests, in the order they were sent, through one model of each
replica's cache (the simulator's own KVCache, chat template, tokenizer and generator, built
from the same flags, so the accounting matches the simulators'), sending each to the replica
holding its longest cached prefix, ties to the one with the fewest requests in flight then
(from the run's measured start and end times). Each request is admitted, finished and freed
at once: the oracle's caches never hold blocks pinned by running requests.

`routing_cpu`: CPU per routing decision for an 8k-token chat prompt, in process: the pool
policy's key (prompt head + hash) and the balancer's pick, next to least_load's pick.
"""

from __future__ import annotations

import heapq
import random
import statistics
import time

from llmgw.balancer import LeastInFlightBalancer
from llmgw.placement.policy import PlacementPolicy
from llmgw.routing import Backend, Pool
from vllm_sim.config import parse_config
from vllm_sim.kv_cache import KVCache
from vllm_sim.plans import chat_plan

from routing_client import MAX_TOKENS, Sample
from routing_workload import words


def oracle_hit_rate(samples: list[Sample], sim_argv: list[str], replicas: int) -> float | None:
    """Hit rate (cached prompt tokens / prompt tokens) of the all-knowing router."""
    cfg = parse_config([*sim_argv, "--served-model-name", "tiny-chat"])
    caches = [KVCache(cfg.num_gpu_blocks, cfg.block_size) for _ in range(replicas)]
    ends: list[list[float]] = [[] for _ in caches]  # end times of requests in flight, as heaps
    for s in sorted((s for s in samples if s.ok), key=lambda s: s.sent):
        plan = chat_plan({"model": "tiny-chat", "messages": s.messages, "max_tokens": MAX_TOKENS},
                         {}, cfg)
        for heap in ends:
            while heap and heap[0] <= s.sent:
                heapq.heappop(heap)
        hits = [sum(len(cache._hits(p)) for p in plan.kv_prompts) for cache in caches]
        best = max(range(replicas), key=lambda i: (hits[i], -len(ends[i])))
        claim = caches[best].claim(plan.kv_prompts)
        if claim.admit():
            claim.finish()
            claim.free()
        heapq.heappush(ends[best], s.sent + s.e2e)
    queries = sum(c.queries for c in caches)
    return sum(c.hits for c in caches) / queries if queries else None


def _per_call_us(fn, calls: int, batch: int = 50) -> dict:
    """CPU time (this thread's) per call, p50 and p99 over batches of `batch` calls."""
    per = []
    for _ in range(calls // batch):
        t = time.thread_time_ns()
        for _ in range(batch):
            fn()
        per.append((time.thread_time_ns() - t) / batch / 1000)
    per.sort()
    return {"p50_us": round(statistics.median(per), 2), "p99_us": round(per[int(len(per) * 0.99)], 2)}


def routing_cpu(calls: int = 20_000) -> dict:
    """Per-request routing CPU (µs) for an 8k-token chat prompt, by policy."""
    rng = random.Random(3)
    body = {"model": "qwen", "max_tokens": 32, "messages": [
        {"role": "system", "content": words(rng, 8000)},
        {"role": "user", "content": words(rng, 40)}]}
    headers = {"x-session-id": "user-1234"}
    backends = tuple(Backend(f"chat{i}", f"http://127.0.0.1:{9000 + i}", 256) for i in range(4))
    for i, b in enumerate(backends):
        b.in_flight = i % 3
    balancer = LeastInFlightBalancer(rng=random.Random(1), reported=lambda name: 3.0)
    out = {}
    for name in ("least_load", "random", "prefix", "session"):
        policy = PlacementPolicy(name=name)
        pool = Pool("chat", backends, policy)

        def decide(pool=pool, policy=policy) -> None:
            balancer.pick(pool, placement=policy.place(body, headers))
        decide()
        out[name] = _per_call_us(decide, calls)
    prefix = PlacementPolicy(name="prefix")
    out["prefix_key_only"] = _per_call_us(lambda: prefix.key(body, headers), calls)
    return out
