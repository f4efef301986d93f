"""Where a request's CPU goes: the real app in-process, against a real stack's Redis and
simulator backends, driven request by request through ASGI (no HTTP server in between).

Prints the CPU per request (min, p25 and median of 15 batches, so noise from other processes
on a small machine shows as spread, not as a wrong figure), Python calls per request by
package (a deterministic count, good for before/after comparisons on a noisy machine), and
the functions with the most cumulative CPU (cProfile on the process CPU clock).

Everything is on, access lines included: they go to stdout, the report to stderr.

    .venv/bin/python bench/profile_inprocess.py [--stream] [--hit] [--top 40] [--sort tottime]
        [--chat-policy prefix] > /dev/null
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import orjson
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]
from gateway_bench import OPEN, chat_routing  # noqa: E402
from stack.processes import gateway_env  # noqa: E402
from stacks import TestStack  # noqa: E402


def report(text: str) -> None:
    print(text, file=sys.stderr)


def _scope(app, key: str, body: bytes) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80), "extensions": {}, "app": app,
            "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode()),
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())]}


async def _one(app, key: str, body: bytes) -> None:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:  # the client stays connected until the answer is complete
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    statuses: list[int] = []

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
    await app(_scope(app, key, body), receive, send)
    if statuses != [200]:
        raise SystemExit(f"request failed: {statuses}")


def _calls_by_package(stats: pstats.Stats, requests: int) -> list[tuple[str, float]]:
    by = collections.Counter()
    for (filename, _line, name), (_cc, calls, *_rest) in stats.stats.items():
        if "site-packages/" in filename:
            group = filename.split("site-packages/")[1].split("/")[0]
        elif "/llmgw/" in filename:
            group = "llmgw/" + filename.split("/llmgw/")[1]
        elif filename == "~":
            group = "builtin " + name.split(" of ")[0][:40]
        else:
            group = filename.rsplit("/", 1)[-1]
        by[group] += calls
    return [(group, calls / requests) for group, calls in by.most_common(25)]


async def _measure(app, key: str, body: bytes, top: int, sort: str) -> None:
    async with app.router.lifespan_context(app):
        for _ in range(300):
            await _one(app, key, body)
        batches = []
        for _ in range(15):
            started = time.process_time()
            for _ in range(200):
                await _one(app, key, body)
            batches.append((time.process_time() - started) / 200 * 1000)
        batches.sort()
        report(f"CPU ms per request: min {batches[0]:.3f}  p25 {batches[3]:.3f}  median {batches[7]:.3f}")
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        for _ in range(1000):
            await _one(app, key, body)
        profile.disable()
        stats = pstats.Stats(profile)
        report(f"Python calls per request: {stats.total_calls / 1000:.0f}")
        for group, calls in _calls_by_package(stats, 1000):
            report(f"  {calls:8.1f}  {group}")
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(sort).print_stats(top)
        report(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--hit", action="store_true", help="temperature 0: cache hits after the first")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--chat-policy", choices=["least_load", "prefix", "session", "random"],
                        help="the chat pool's routing policy (default: the e2e file's)")
    parser.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"],
                        help="order of the function table: time within and below, or within")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmgw-profile-"))
    stack = TestStack("sim", tmp, workers=1, sim_args=("--ttft-ms", "0", "--itl-ms", "0"),
                      env={"GLOBAL_MAX_CONCURRENT": "0"},
                      routing=chat_routing(tmp, args.chat_policy)).start()
    try:
        key = stack.create_org(**OPEN)["api_key"]
        os.environ.update({**stack.cfg.env, **gateway_env(stack.specs),
                           "REDIS_URL": f"redis://127.0.0.1:{stack.cfg.redis_port}/0",
                           "PROMETHEUS_MULTIPROC_DIR": str(tmp)})
        from llmgw.app import create_app
        app = create_app()
        body = orjson.dumps({"model": "qwen", "messages": [{"role": "user", "content": "hi"}],
                             "max_tokens": 16, "stream": args.stream,
                             **({"temperature": 0} if args.hit else {})})
        uvloop.run(_measure(app, key, body, args.top, args.sort))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
