"""The gateway side by side with other proxies for the same job, in one run on one machine.

Peers, each alone on core 0 (taskset), all in front of the same two zero-delay chat simulators:
  ours         the gateway, one gunicorn worker, everything on: a Bearer key of an org with open
               limits, limits, quotas, usage, metrics, access logs, the response cache (greedy
               requests, a new prompt every time: a miss and a fill each); Redis's CPU added;
  vllm-router  vllm-router --worker-urls A B --policy round_robin
  smg          smg launch --worker-urls A B --policy round_robin --api-key K
               --disable-tokenizer-autoload
  nginx        nginx, one worker, an upstream keep-alive pool, an access log.
Everything else (wrk, the simulators, Redis, this script) runs on core 1: on two cores that is
the only way to leave a proxy a core of its own; it also makes the fastest peers bound by the
generator's core, which the table marks. The two Rust routers come from PyPI at the versions in
bench/requirements-peers.txt, installed into .bench-peers/ on first run.

Figures, each the median of --rounds rounds in rotating order, with [min-max]: added p50/p99 at
concurrency 1 (wrk through the proxy minus wrk straight to a simulator in the same round);
requests/s at 64; CPU per request at 64 and at 1 (utime+stime of the proxy's process tree over
the run, divided by the requests); the time to a stream's first event, added (raw sockets,
direct and through the proxy in turns); RSS of the proxy's process tree idle (after the load)
and with 2,000 streams held open. Written to bench/results/peers.json and peers.md.

    .venv/bin/python bench/peers_bench.py [--rounds 3] [--duration 5] [--streams 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]
from gateway_bench import OPEN  # noqa: E402
from peers_report import markdown  # noqa: E402
from peers_load import StreamClient, first_event_pairs, hold_streams, wrk  # noqa: E402
from peers_procs import (cpu_secs, nginx_argv, peers_venv, pin_tree, pinned, rss_mb,  # noqa: E402
                         smg_argv, spawn, tree, versions, vllm_router_argv)
from stack.processes import stop, wait_healthy  # noqa: E402
from stacks import E2E_ROUTING, TestStack, free_port  # noqa: E402

PROXY_CORE, LOAD_CORE = 0, 1
PEERS = ("ours", "vllm-router", "smg", "nginx")
CHAT = "/v1/chat/completions"


class Target:
    """Where to send requests, as whom, and which processes' CPU and memory count."""

    def __init__(self, name: str, base: str, key: str, model: str, root: int | None,
                 extra: int | None = None, log: Path | None = None) -> None:
        self.name, self.url, self.key, self.model = name, base + CHAT, key, model
        self.base, self.root, self.extra, self.log = base, root, extra, log

    def pids(self) -> list[int]:
        return tree(self.root) if self.root else []

    def run(self, conns: int, secs: int, tmp: Path, nonce: str) -> dict:
        pids, extra = self.pids(), [self.extra] if self.extra else []
        lines0 = _lines(self.log)
        cpu0, extra0 = cpu_secs(pids), cpu_secs(extra)
        out = wrk(self.url, self.key, self.model, nonce, conns, secs, tmp)
        served = max(1, out["requests"])
        out["log_lines_per_request"] = round((_lines(self.log) - lines0) / served, 2)
        out["cpu_ms"] = (cpu_secs(pids) - cpu0) / served * 1000
        out["redis_cpu_ms"] = (cpu_secs(extra) - extra0) / served * 1000
        if out["non_2xx"]:
            raise SystemExit(f"{self.name}: {out['non_2xx']} answers were not 2xx")
        return out


def _lines(path: Path | None) -> int:
    """Lines the proxy has logged so far (its access lines and anything else it writes)."""
    return path.read_bytes().count(b"\n") if path and path.exists() else 0


def idle_cores(targets: dict, secs: float = 5) -> dict:
    """Cores each proxy uses with no traffic (health checks, metric scrapes): what the others
    take from core 0 while one is measured."""
    before = {n: cpu_secs(targets[n].pids()) for n in PEERS}
    time.sleep(secs)
    return {n: round((cpu_secs(targets[n].pids()) - before[n]) / secs, 4) for n in PEERS}


def start(tmp: Path, bin_dir: Path) -> tuple[TestStack, dict, list, list]:
    """The simulators, Redis and our gateway (a TestStack), then the other peers."""
    routing = tmp / "routing.yaml"  # the chat backends' slots well above what the bench sends
    routing.write_text(E2E_ROUTING.read_text().replace("max_num_seqs: 64", "max_num_seqs: 5000"))
    stack = TestStack("sim", tmp, workers=1, routing=routing,
                      sim_args=("--ttft-ms", "0", "--itl-ms", "0", "--max-num-seqs", "5000"),
                      env={"GLOBAL_MAX_CONCURRENT": "0", "HEALTH_CHECK_INTERVAL_SECS": "10"})
    stack.start()
    pin_tree(stack.gateway.popen.pid, PROXY_CORE)  # started on core 1 with its stack: moved
    sims = [stack.backend_url("chat0"), stack.backend_url("chat1")]
    ports = {name: free_port() for name in PEERS[1:]}
    core = str(PROXY_CORE)
    procs = [spawn("vllm-router", pinned(core, vllm_router_argv(bin_dir, ports["vllm-router"], sims,
                                                                free_port())), "", stack.logs),
             spawn("smg", pinned(core, smg_argv(bin_dir, ports["smg"], sims, free_port(),
                                                stack.backend_key)), "", stack.logs),
             spawn("nginx", pinned(core, nginx_argv(tmp, ports["nginx"], sims)), "", stack.logs)]
    for proc, name in zip(procs, PEERS[1:]):
        proc.health_url = f"http://127.0.0.1:{ports[name]}/health"
    wait_healthy(procs, 60, stack.logs)
    key = stack.create_org(**OPEN)["api_key"]
    targets = {"direct": Target("direct", sims[0], stack.backend_key, "tiny-chat", None),
               "ours": Target("ours", stack.base_url, key, "qwen", stack.gateway.popen.pid,
                              stack.redis.popen.pid, stack.logs / "gateway.log")}
    logs = {"vllm-router": stack.logs / "vllm-router.log", "smg": stack.logs / "smg.log",
            "nginx": tmp / "nginx-access.log"}
    for proc, name in zip(procs, PEERS[1:]):
        targets[name] = Target(name, f"http://127.0.0.1:{ports[name]}", stack.backend_key,
                               "tiny-chat", proc.popen.pid, log=logs[name])
    return stack, targets, procs, sims


def cache_check(t: Target) -> list[str]:
    """X-Cache of two new prompts and of the second again: MISS, MISS, HIT shows the cache is on
    and that a new prompt misses."""
    seen = []
    with httpx.Client(headers={"Authorization": f"Bearer {t.key}"}, timeout=10) as client:
        for text in ("check one", "check two", "check two"):
            body = {"model": t.model, "messages": [{"role": "user", "content": f"{text} {time.time()}"
                                                    if text == "check one" else text}],
                    "max_tokens": 16, "temperature": 0}
            seen.append(client.post(t.url, json=body).headers.get("x-cache", "absent"))
    return seen


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "runs": [round(v, 3) for v in values]}


def measure(targets: dict, sims: list[str], rounds: int, secs: int, streams: int,
            tmp: Path) -> dict:
    for name in ("direct", *PEERS):  # warm-up: pools, caches, lazy imports
        targets[name].run(64, 1, tmp, f"warm{name}")
    idle = idle_cores(targets)
    runs: dict = {name: {1: [], 64: []} for name in ("direct", *PEERS)}
    for r in range(rounds):
        order = PEERS[r % len(PEERS):] + PEERS[:r % len(PEERS)]
        for conns in (1, 64):
            for name in ("direct", *order):
                runs[name][conns].append(targets[name].run(conns, secs, tmp, f"r{r}c{conns}{name}"))
                print(f"round {r + 1} c{conns:<2} {name:11} {runs[name][conns][-1]}", flush=True)
    figures = {}
    for name in PEERS:
        c1, c64, d1 = runs[name][1], runs[name][64], runs["direct"][1]
        figures[name] = {
            "added_p50_ms": spread([a["p50_ms"] - d["p50_ms"] for a, d in zip(c1, d1)]),
            "added_p99_ms": spread([a["p99_ms"] - d["p99_ms"] for a, d in zip(c1, d1)]),
            "rps_64": spread([a["rps"] for a in c64]),
            "cpu_ms_64": spread([a["cpu_ms"] for a in c64]),
            "cpu_ms_1": spread([a["cpu_ms"] for a in c1]),
            "redis_cpu_ms_64": spread([a["redis_cpu_ms"] for a in c64]),
            "redis_cpu_ms_1": spread([a["redis_cpu_ms"] for a in c1]),
            "log_lines_per_request": statistics.median(a["log_lines_per_request"] for a in c64),
            "idle_cores": idle[name],
            "socket_errors": [a["socket_errors"] for a in c1 + c64 if a["socket_errors"]]}
    direct = targets["direct"]
    for name in PEERS:
        t = targets[name]
        a, b = StreamClient(direct.url, direct.key, direct.model, f"ttfb-{name}-d"), \
            StreamClient(t.url, t.key, t.model, f"ttfb-{name}-{time.time_ns()}")
        first_event_pairs(a, b, 20)  # warm-up
        d, p = first_event_pairs(a, b, 100 * rounds)
        a.close(), b.close()
        figures[name]["first_event_added_ms"] = round(statistics.median(p) - statistics.median(d), 3)
        figures[name]["first_event_ms"] = {"direct_p50": round(statistics.median(d), 3),
                                           "through_p50": round(statistics.median(p), 3),
                                           "samples": len(p)}
    for name in PEERS:
        figures[name].update(memory(targets[name], sims, streams))
    figures["ours"]["cache"] = cache_check(targets["ours"])
    figures["direct_rps_64"] = spread([a["rps"] for a in runs["direct"][64]])
    return {"figures": figures, "runs": {n: {str(c): v for c, v in r.items()} for n, r in runs.items()}}


def memory(t: Target, sims: list[str], n: int) -> dict:
    """RSS of the proxy's tree idle, then with n streams open (the simulators emitting a token
    every 5 s meanwhile, so none ends while they are counted)."""
    idle, held = rss_mb(t.pids()), {}
    for url in sims:
        httpx.post(url + "/sim/faults", json={"itl_ms": 5000}).raise_for_status()
    try:
        asyncio.run(hold_streams(t.base, t.key, t.model, n,
                                 lambda: held.update(mb=rss_mb(t.pids()),
                                                     redis=rss_mb([t.extra] if t.extra else []))))
    finally:
        for url in sims:
            httpx.post(url + "/sim/faults", json={"itl_ms": 0}).raise_for_status()
        time.sleep(6)  # streams cut mid-way finish (their 5 s token wait) before the next peer
    return {"rss_idle_mb": round(idle, 1), "rss_streams_mb": round(held["mb"], 1),
            "redis_rss_streams_mb": round(held["redis"], 1), "streams": n}

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--streams", type=int, default=2000)
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2 or not shutil.which("wrk") or not shutil.which("nginx"):
        raise SystemExit("needs two cores, wrk and nginx")
    bin_dir = peers_venv()
    os.sched_setaffinity(0, {LOAD_CORE})  # this script and all it starts; proxies: PROXY_CORE
    tmp = Path(tempfile.mkdtemp(prefix="llmgw-peers-"))
    load_before = os.getloadavg()[0]  # other work on the machine inflates every figure
    stack, procs = None, []
    try:
        stack, targets, procs, sims = start(tmp, bin_dir)
        result = measure(targets, sims, args.rounds, args.duration, args.streams, tmp)
    finally:
        stop([p.popen.pid for p in procs], grace=5)
        if stack:
            stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    result["meta"] = {"load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                      "rounds": args.rounds, "seconds": args.duration, "streams": args.streams,
                      "versions": versions(bin_dir), "peers": PEERS, "proxy_core": PROXY_CORE,
                      "load_core": LOAD_CORE,
                      "flags": {"vllm-router": "--worker-urls A B --policy round_robin "
                                               "--prometheus-port P",
                                "smg": "launch --worker-urls A B --policy round_robin --api-key K "
                                       "--disable-tokenizer-autoload --prometheus-port P",
                                "nginx": "worker_processes 1; upstream keepalive 64; "
                                         "proxy_buffering off; access_log on",
                                "ours": "GATEWAY_WORKERS=1, GLOBAL_MAX_CONCURRENT=0, the rest "
                                        "defaults (cache on)"}}
    text = markdown(result)
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "peers.json").write_text(json.dumps(result, indent=2))
    (out / "peers.md").write_text(text)


if __name__ == "__main__":
    main()
