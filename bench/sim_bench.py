"""Throughput of the vLLM simulator itself: non-streaming and streaming chat requests per second.

Starts `python -m vllm_sim` with zero delays pinned to one core (taskset), then drives it over
loopback at a fixed concurrency for a bounded time with `wrk` (if installed) or, failing that,
a multi-process asyncio raw-socket load generator pinned to the remaining cores.

    .venv/bin/python bench/sim_bench.py [--duration 10] [--concurrency 64] [--tokens 16]
        [--sim-arg=--num-gpu-blocks=65536 ...]   (extra simulator flags, e.g. the prefix-cache model)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

MODEL = "bench-model"


def chat_body(tokens: int, stream: bool) -> bytes:
    return json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Tell me a short story."}],
                       "max_tokens": tokens, "ignore_eos": True, "stream": stream}).encode()


def start_sim(core: int | None, extra: list[str]) -> tuple[subprocess.Popen, int]:
    argv = [sys.executable, "-m", "vllm_sim", "--host", "127.0.0.1", "--port", "0",
            "--served-model-name", MODEL, "--kind", "chat", "--max-num-seqs", "1024", *extra]
    if core is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(core)] + argv
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    line = proc.stdout.readline().decode()
    m = re.search(r"ready on http://[\d.]+:(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"simulator failed to start: {line}{proc.stdout.read().decode()}")
    return proc, int(m.group(1))


def other_cores(sim_core: int | None) -> list[int]:
    cores = sorted(os.sched_getaffinity(0))
    rest = [c for c in cores if c != sim_core]
    return rest or cores


# ---- wrk -------------------------------------------------------------------
def run_wrk(port: int, body: bytes, conns: int, duration: float, cores: list[int]) -> tuple[float, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = {json.dumps(body.decode())}\n")
        script = f.name
    try:
        argv = ["wrk", f"-t{len(cores)}", f"-c{conns}", f"-d{int(duration)}s", "--timeout", "5s", "-s", script,
                f"http://127.0.0.1:{port}/v1/chat/completions"]
        if shutil.which("taskset"):
            argv = ["taskset", "-c", ",".join(map(str, cores))] + argv
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30).stdout
    finally:
        os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    nbad = int(bad.group(1)) if bad else 0
    nbad += sum(map(int, errors.groups())) if errors else 0
    return rps, nbad


# ---- python fallback load generator ----------------------------------------
_CONTENT_LENGTH = re.compile(rb"content-length: (\d+)", re.I)


class _LoadConnection(asyncio.Protocol):
    """Closed-loop keep-alive client: sends the next request as soon as a response is complete."""

    def __init__(self, request: bytes, until: float, counts: list[int], done: asyncio.Future):
        self.request, self.until, self.counts, self.done = request, until, counts, done
        self.buf = bytearray()
        self.end = None  # ("len", absolute end) or ("chunked", body start)
        self.ok = False

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes):
        self.buf += data
        while self._take_response():
            self.counts[0 if self.ok else 1] += 1
            if time.monotonic() >= self.until:
                self.transport.close()
                return
            self.transport.write(self.request)

    def _take_response(self) -> bool:
        if self.end is None:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return False
            head = bytes(self.buf[:i])
            self.ok = head.startswith(b"HTTP/1.1 200")
            m = _CONTENT_LENGTH.search(head)
            self.end = ("len", i + 4 + int(m.group(1))) if m else ("chunked", i + 4)
        kind, pos = self.end
        if kind == "len":
            if len(self.buf) < pos:
                return False
            del self.buf[:pos]
        else:
            j = self.buf.find(b"\r\n0\r\n\r\n", pos - 2)
            if j < 0:
                return False
            del self.buf[:j + 7]
        self.end = None
        return True

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(None)


async def _client(port: int, request: bytes, until: float, counts: list[int]) -> None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    await loop.create_connection(lambda: _LoadConnection(request, until, counts, done), "127.0.0.1", port)
    await done


def _worker(port: int, body: bytes, conns: int, duration: float, core: int, out) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    counts = [0, 0]

    async def main():
        until = time.monotonic() + duration
        await asyncio.gather(*(_client(port, request, until, counts) for _ in range(conns)))

    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    out.put(tuple(counts))


def run_python(port: int, body: bytes, conns: int, duration: float, cores: list[int]) -> tuple[float, int]:
    procs_n = max(1, len(cores)) * 2  # two generator processes per spare core keeps the client side ahead
    out = mp.Queue()
    share = [conns // procs_n + (1 if i < conns % procs_n else 0) for i in range(procs_n)]
    procs = [mp.Process(target=_worker, args=(port, body, n, duration, cores[i % len(cores)], out))
             for i, n in enumerate(share) if n]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    results = [out.get(timeout=duration + 30) for _ in procs]
    elapsed = time.monotonic() - t0
    for p in procs:
        p.join(10)
    return sum(r[0] for r in results) / elapsed, sum(r[1] for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per case")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=16, help="output tokens per response")
    ap.add_argument("--core", type=int, default=0, help="CPU core the simulator is pinned to")
    ap.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--sim-arg", action="append", default=[], help="extra simulator flag (repeatable)")
    args = ap.parse_args()
    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    run = run_wrk if loadgen == "wrk" else run_python
    proc, port = start_sim(args.core, args.sim_arg)
    cores = other_cores(args.core)
    try:
        run(port, chat_body(args.tokens, False), args.concurrency, 1.0, cores)  # warm-up
        print(f"simulator pinned to core {args.core}; load generator: {loadgen} on cores {cores}; "
              f"concurrency {args.concurrency}; {args.duration:g}s per case; {args.tokens} tokens/response"
              + (f"; simulator flags {' '.join(args.sim_arg)}" if args.sim_arg else ""))
        for name, stream in (("non-streaming chat", False), (f"streaming chat ({args.tokens} tokens)", True)):
            rps, bad = run(port, chat_body(args.tokens, stream), args.concurrency, args.duration, cores)
            print(f"{name:32s} {rps:10.0f} req/s   errors: {bad}")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
