"""The load bench/peers_bench.py puts on each proxy: wrk with a body that differs on every
request (so the gateway's response cache, on, misses every time), the time to a stream's first
event on a raw socket, and streams held open."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import time
from pathlib import Path

# Every request a new prompt: "<tag> <round nonce>-<wrk thread>-<count>". Greedy (temperature
# 0), so the gateway's cache takes part (cache/key.py) and misses, and fills, each time.
WRK_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
n = 0
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format([==[{body}]==], tid, n))
end
"""
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def chat_body(model: str, text: str, stream: bool = False, max_tokens: int = 16) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens, "temperature": 0, "stream": stream}


def wrk(url: str, key: str, model: str, nonce: str, conns: int, secs: int, tmp: Path) -> dict:
    """One wrk run (one thread: it has one core), non-streaming; p50/p99 in ms."""
    body = json.dumps(chat_body(model, f"hi {nonce}-@T-@N")).replace("%", "%%")
    body = body.replace("@T", "%d").replace("@N", "%d")
    script = tmp / f"peers-{nonce}.lua"
    script.write_text(WRK_LUA.format(key=key, body=body))
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", "-s", str(script),
                          url], capture_output=True, text=True).stdout

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * UNIT[m.group(2)] if m else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": pct("50"), "p99_ms": pct("99"),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock_errors.group(1) if sock_errors else ""}


def _request(host: str, path: str, key: str, payload: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            ).encode() + payload


class StreamClient:
    """Streams on one keep-alive socket, timed from the request's last byte sent to the first
    event's bytes in: a lean client that adds little of its own."""

    def __init__(self, url: str, key: str, model: str, tag: str) -> None:
        host, rest = url.split("//")[1].split("/", 1)
        self.host, self.path, self.key, self.model, self.tag = host, "/" + rest, key, model, tag
        self.count = 0
        name, port = host.split(":")
        self.sock = socket.create_connection((name, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def first_event_ms(self) -> float:
        self.count += 1
        body = chat_body(self.model, f"hi {self.tag}-{self.count}", stream=True)
        request = _request(self.host, self.path, self.key, json.dumps(body).encode())
        started = time.perf_counter()
        self.sock.sendall(request)
        seen, first = b"", None
        while not seen.endswith(b"0\r\n\r\n"):  # the end of a chunked body
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"{self.host} closed the stream: {seen[:200]!r}")
            seen += data
            if first is None and b"data: " in seen:
                first = time.perf_counter()
        if not seen.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{self.host} answered {seen[:200]!r}")
        return (first - started) * 1000

    def close(self) -> None:
        self.sock.close()


def first_event_pairs(direct: StreamClient, through: StreamClient, n: int) -> tuple[list, list]:
    """n streams each, direct and through the proxy in turns, so both see the same machine."""
    out: tuple[list, list] = ([], [])
    for _ in range(n):
        out[0].append(direct.first_event_ms())
        out[1].append(through.first_event_ms())
    return out


async def hold_streams(url: str, key: str, model: str, n: int, on_all_open) -> None:
    """Open n streams on raw sockets, wait for each one's first event, call on_all_open, close.
    The simulators must emit slowly meanwhile (a long inter-token time) for them to stay open."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    sem = asyncio.Semaphore(200)  # open them steadily, not as one SYN flood

    async def one(i: int):
        body = chat_body(model, f"hold {time.time_ns()}-{i}", stream=True, max_tokens=50)
        async with sem:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(_request(f"{host}:{port}", "/v1/chat/completions", key,
                                  json.dumps(body).encode()))
            seen = b""
            while b"data: " not in seen:
                data = await reader.read(4096)
                if not data:
                    raise ConnectionError(f"stream {i} closed early: {seen[:200]!r}")
                seen += data
        return writer
    writers = await asyncio.gather(*[one(i) for i in range(n)])
    on_all_open()
    for w in writers:
        w.close()
