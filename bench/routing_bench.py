"""Prefix-aware routing, measured in time to first token (issue 18, item 5).

Four simulated chat replicas (vllm_sim with its prefix-cache model, prefill charged per
uncached prompt token) behind the real gateway (gunicorn, 2 workers), one chat pool whose
policy each run sets (bench/routing_bench.yaml, RBENCH_* variables). For each workload
(routing_workload.py: `shared` long documents with multi-turn conversations, `unique`
prompts, one `hot` prefix taking half the traffic):

1. capacity: a closed-loop saturation run under least_load (48 users, the same think time);
2. for each load (50/70/90 % of that capacity) and each policy (random, least_load, prefix,
   session, and any variant given as e.g. `prefix(balance_abs=2)`): cold simulators, then
   streamed conversations arriving by a Poisson process (open loop) for --duration s.
   Figures over the requests sent after the warm-up: TTFT p50/p90/p99 (first content event),
   end-to-end p50 ([DONE]), throughput, the prefix-cache hit rate (simulators' counters,
   in prompt tokens) next to an oracle's on the same requests (routing_oracle.py), the spread
   of load (requests served per replica, time-averaged running+waiting sampled from
   /sim/stats: max / mean) and the client's own CPU and send lag. With --repeats N, each
   load's policies run N times in turns, on N workloads (seeds); tables and checks take the
   medians, with the spread of TTFT and throughput.

Also: routing decision CPU for an 8k-token prompt (in process), and agreement: the same
prefixes sent through 2 gateway replicas x 2 workers, backends read from the access logs.
The caches are sized so the `shared` documents fit in the pool's 4 caches but not in one.
Results: bench/results/routing.json and routing.md. Loopback only; about 15 min (--quick: 4).

    PYTHONPATH=gateway:simulator .venv/bin/python bench/routing_bench.py [--quick]
        [--workloads shared,unique,hot] [--loads 0.5,0.7,0.9] [--duration 20]
        [--policies random,least_load,prefix,session,'prefix(balance_abs=2,balance_rel=1.25)']
        [--gateway-env BACKEND_METRICS_INTERVAL_SECS=0] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]
from routing_client import Driver, sample_backends  # noqa: E402
from routing_oracle import oracle_hit_rate, routing_cpu  # noqa: E402
from routing_report import markdown, summarise  # noqa: E402
from routing_workload import Conversation, Workload, words  # noqa: E402
from stacks import OPEN_LIMITS, TestStack  # noqa: E402

from stack.processes import stop  # noqa: E402

ROUTING = Path(__file__).resolve().parent / "routing_bench.yaml"
REPLICAS = 4
# Prefill dominates TTFT: an uncached 4k-token prompt takes 200 ms, one prefill at a time per
# engine. 3,000 blocks of 16 tokens = 48k tokens per replica: the shared documents (~115k
# tokens) fit in the pool's 192k, not in one replica.
SIM_ARGV = ["--max-model-len", "12288", "--num-gpu-blocks", "3000", "--block-size", "16",
            "--prefill-ms-per-token", "0.05", "--ttft-ms", "2", "--itl-ms", "2",
            "--max-num-seqs", "16", "--output-len-min", "16", "--output-len-max", "48",
            "--keep-alive-timeout", "60"]
GATEWAY_ENV = {"CACHE_ENABLED": "false", "GLOBAL_MAX_CONCURRENT": "0", "LOG_LEVEL": "info"}
POLICY_VARS = {"prefix_bytes": "RBENCH_PREFIX_BYTES", "min_prefix_bytes": "RBENCH_MIN_PREFIX_BYTES",
               "balance_abs": "RBENCH_BALANCE_ABS", "balance_rel": "RBENCH_BALANCE_REL"}
CAPACITY_USERS = 48


def policy_env(spec: str) -> dict[str, str]:
    """`prefix(balance_abs=2,balance_rel=1.25)` -> the RBENCH_* variables of routing_bench.yaml."""
    m = re.fullmatch(r"(\w+)(?:\((.*)\))?", spec)
    env = {"RBENCH_POLICY": m.group(1), **{var: "" for var in POLICY_VARS.values()}}
    for item in filter(None, re.split(r"[,;]", m.group(2) or "")):
        name, value = item.split("=")
        env[POLICY_VARS[name.strip()]] = value.strip()
    return env


class BenchStack:
    """The TestStack of one bench phase, restarted cold (simulators and gateway) for each run."""

    def __init__(self, replicas: int = 1) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="routing-bench-"))
        self.stack = TestStack("sim", tmp, workers=2, replicas=replicas, routing=ROUTING,
                               sim_args=tuple(SIM_ARGV), env=dict(GATEWAY_ENV))
        self.key = ""

    def start(self, policy: str) -> "BenchStack":
        self.stack.cfg.env.update(policy_env(policy))
        self.stack.start()
        org = self.stack.create_org(**{**OPEN_LIMITS, "max_context_tokens": 100_000,
                                       "tpm_limit": 10**10, "max_concurrent": 100_000})
        self.key = org["api_key"]
        return self

    def fresh(self, policy: str) -> None:
        """Cold caches and the given policy: stop the gateway and simulators, start them again."""
        s = self.stack
        stop([p.popen.pid for p in [s.gateway, *s.replicas, *s.backends] if p], grace=10)
        s.cfg.env.update(policy_env(policy))
        s.start_backends()
        s.wait_backends(30)
        s.start_gateway()

    @property
    def sims(self) -> dict[str, str]:
        return {spec.name: spec.url for spec in self.stack.specs}

    def sim_stats(self) -> dict[str, dict]:
        return {name: httpx.get(url + "/sim/stats", timeout=10).json()
                for name, url in self.sims.items()}

    def stop(self) -> None:
        self.stack.stop()


async def _drive(bench: BenchStack, workload: Workload, duration: float, *, conv_rate: float = 0,
                 users: int = 0) -> tuple[Driver, dict, float]:
    """One run: open loop at `conv_rate` conversations/s, or closed loop with `users`. Returns
    the driver (its samples), the simulators' (running, waiting) samples and the client CPU."""
    driver = Driver([bench.stack.base_url], bench.key)
    occupancy: dict[str, list] = {}
    done = asyncio.Event()
    sampler = asyncio.create_task(sample_backends(bench.sims, 0.25, done, occupancy))
    asyncio.get_running_loop().call_later(duration, done.set)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        if users:
            await driver.closed_loop(workload, users, duration)
        else:
            await driver.open_loop(workload, conv_rate, duration)
    finally:
        cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        done.set()
        await sampler
        await driver.close()
    return driver, occupancy, cpu


def capacity(bench: BenchStack, name: str, duration: float, seed: int) -> float:
    """Requests/s the pool completes under least_load at saturation (closed loop)."""
    bench.fresh("least_load")
    driver, _, _ = asyncio.run(_drive(bench, Workload(name, seed + 1000), duration,
                                      users=CAPACITY_USERS))
    warm = duration / 3
    done = [s for s in driver.samples if s.ok and warm <= s.sent + s.e2e < duration]
    return len(done) / (duration - warm)


def run_one(bench: BenchStack, name: str, policy: str, rate: float, duration: float,
            seed: int) -> dict:
    """One open-loop run at `rate` requests/s, cold caches; its figures."""
    bench.fresh(policy)
    workload = Workload(name, seed)
    driver, occupancy, cpu = asyncio.run(_drive(bench, workload, duration,
                                                conv_rate=rate / workload.mean_turns))
    stats = bench.sim_stats()
    oracle = oracle_hit_rate(driver.samples, SIM_ARGV, REPLICAS)
    return summarise(driver.samples, duration, stats, occupancy, oracle, cpu,
                     policy=policy, rate=rate)


def agreement(prefixes: int, repeats: int, seed: int, loaded_rate: float = 0,
              duration: float = 20.0) -> dict:
    """Through 2 gateway replicas x 2 workers (prefix policy): the share of prefixes whose
    requests all chose one backend, and of requests on their prefix's usual backend; first
    `prefixes` x `repeats` requests 8 at a time, then (with `loaded_rate`) the `shared`
    workload's open loop at that many requests/s, each document a prefix."""
    bench = BenchStack(replicas=2).start("prefix")
    try:
        rng = random.Random(seed)
        docs = Workload("shared", seed).docs
        starts = [Conversation(f"agree{i}", docs[i % len(docs)], [words(rng, 30)])
                  if i < prefixes // 2 else Conversation(f"agree{i}", None, [words(rng, 1500)])
                  for i in range(prefixes)]
        asyncio.run(_agreement_requests(bench, starts, repeats, seed))
        loaded = asyncio.run(_loaded(bench, loaded_rate, duration, seed)) if loaded_rate else {}
    finally:
        bench.stop()  # after which every access line is written
    chosen = _logged_backends(bench.stack.logs, "")
    light = _agreeing({rid: b for rid, b in chosen.items() if rid.startswith("agree")},
                      lambda rid: rid.rsplit("-r", 1)[0])
    light["repeats"] = repeats
    if loaded:
        light["loaded"] = {"rate_rps": round(loaded_rate, 2), **_agreeing(
            {rid: b for rid, b in chosen.items() if rid in loaded}, loaded.get)}
    return light


def _agreeing(chosen: dict[str, str], prefix_of) -> dict:
    by_prefix: dict[str, list[str]] = defaultdict(list)
    for rid, backend in chosen.items():
        by_prefix[prefix_of(rid)].append(backend)
    if not by_prefix:
        return {"prefixes": 0, "requests": 0}
    modal = sum(Counter(b).most_common(1)[0][1] for b in by_prefix.values())
    return {"prefixes": len(by_prefix), "requests": len(chosen),
            "one_backend_share": sum(len(set(b)) == 1 for b in by_prefix.values()) / len(by_prefix),
            "modal_request_share": modal / len(chosen)}


async def _loaded(bench: BenchStack, rate: float, duration: float, seed: int) -> dict[str, str]:
    """The `shared` open loop through every gateway replica in turns: request id -> document."""
    workload = Workload("shared", seed)
    driver = Driver(bench.stack.base_urls, bench.key)
    try:
        await driver.open_loop(workload, rate / workload.mean_turns, duration)
    finally:
        await driver.close()
    return {f"{s.cid}-t{s.turn}": s.prefix for s in driver.samples if s.ok}


async def _agreement_requests(bench: BenchStack, starts: list[Conversation], repeats: int,
                              seed: int) -> None:
    """Each start `repeats` times, alternately to each gateway replica, on new connections
    (so the kernel spreads them over the workers), 8 at a time, in a shuffled order."""
    driver = Driver(bench.stack.base_urls, bench.key, keepalive=False)
    jobs = [(conv, r) for conv in starts for r in range(repeats)]
    random.Random(seed).shuffle(jobs)
    gate = asyncio.Semaphore(8)

    async def one(conv: Conversation, r: int) -> None:
        async with gate:
            copy = Conversation(f"{conv.cid}-r{r}", conv.system, conv.questions)
            # Without a document, a conversation's second turn: a first turn of its own with a
            # short preamble is placed by load, not bound (placement/prompt_head.py).
            later = [] if conv.system else [{"role": "assistant", "content": "noted"},
                                            {"role": "user", "content": f"and then {r}?"}]
            await driver.request(copy, 0, copy.first_messages() + [
                {"role": "user", "content": conv.questions[0]}] + later, None)
    await asyncio.gather(*(one(c, r) for c, r in jobs))
    await driver.close()


def _logged_backends(logs: Path, prefix: str) -> dict[str, str]:
    """request_id -> backend, from every gateway instance's JSON access log lines."""
    out = {}
    for path in logs.glob("gateway*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if f'"{prefix}' not in line or '"backend"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if str(entry.get("request_id", "")).startswith(prefix) and entry.get("backend"):
                out[entry["request_id"]] = entry["backend"]
    return out


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="70 %% load only, shorter runs")
    p.add_argument("--workloads", default="shared,unique,hot")
    p.add_argument("--loads", default="0.5,0.7,0.9")
    p.add_argument("--policies", default="random,least_load,prefix,session")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals per run")
    p.add_argument("--capacity-secs", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per load and policy (seeds seed..seed+N-1); tables show medians")
    p.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE",
                   help="a gateway setting for every run, e.g. BACKEND_METRICS_INTERVAL_SECS=0")
    p.add_argument("--no-agreement", action="store_true")
    p.add_argument("--agreement-only", metavar="RESULTS_JSON",
                   help="measure agreement again into an earlier run's results")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args()
    GATEWAY_ENV.update(item.split("=", 1) for item in args.gateway_env)
    if args.quick:
        args.loads, args.duration, args.capacity_secs = "0.7", 10.0, 10.0
    return args


def main() -> None:
    args = _args()
    if args.agreement_only:
        result = json.loads(Path(args.agreement_only).read_text())
        shared = result["workloads"].get("shared", {}).get("capacity_rps", 0)
        result["agreement"] = agreement(40, 8, args.seed, 0.7 * shared, args.duration)
        _write(result, Path(args.out))
        return
    started = time.monotonic()
    result = {"sim_argv": SIM_ARGV, "gateway": {"workers": 2, **GATEWAY_ENV},
              "duration_s": args.duration, "routing_cpu": routing_cpu(), "workloads": {}}
    bench = BenchStack().start("least_load")
    try:
        for name in args.workloads.split(","):
            cap = capacity(bench, name, args.capacity_secs, args.seed)
            print(f"{name}: capacity {cap:.1f} req/s under least_load", flush=True)
            rows = []
            for load in map(float, args.loads.split(",")):
                for repeat in range(args.repeats):  # policies in turns: drift hits them alike
                    for policy in re.split(r",(?![^()]*\))", args.policies):
                        rows.append({"load": load, "repeat": repeat,
                                     **run_one(bench, name, policy, load * cap, args.duration,
                                               args.seed + repeat)})
                        print(json.dumps(rows[-1]), flush=True)
            result["workloads"][name] = {"capacity_rps": round(cap, 2), "rows": rows}
    finally:
        bench.stop()
    if not args.no_agreement:
        shared = result["workloads"].get("shared", {}).get("capacity_rps", 0)
        result["agreement"] = agreement(40, 8, args.seed, 0.7 * shared, args.duration)
    result["run_time_s"] = round(time.monotonic() - started)
    _write(result, Path(args.out))


def _write(result: dict, out: Path) -> None:
    text = markdown(result)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "routing.json").write_text(json.dumps(result, indent=2))
    (out / "routing.md").write_text(text)


if __name__ == "__main__":
    main()
