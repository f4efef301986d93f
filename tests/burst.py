"""A burst that really arrives at once: every connection opened first, then every request
written in one loop turn, then the answers read. An HTTP client library (httpx) spends
milliseconds of CPU per request, so its "1,000 concurrent requests" reach the gateway over
seconds; these reach it within a few milliseconds, as a flood from many clients would."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import NamedTuple

import orjson


class Answer(NamedTuple):
    status: int
    code: str   # error.code, "" for a 200
    secs: float  # from the moment the last request was written
    message: str = ""  # error.message
    headers: dict | None = None  # lower-cased names


def counts(answers: list[Answer]) -> Counter:
    """How many answers of each (status, error code)."""
    return Counter((a.status, a.code) for a in answers)


async def burst(urls: list[str], path: str, body: dict, headers: dict[str, str], n: int,
                *, timeout: float = 60) -> list[Answer]:
    """n POSTs at once, spread over `urls` (http://host:port): each one's answer."""
    payload = orjson.dumps(body)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    conns = await asyncio.gather(*(_open(urls[i % len(urls)]) for i in range(n)))
    for (host, _, writer) in conns:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                     f"{head}\r\n".encode() + payload)
    sent = time.perf_counter()
    return await asyncio.wait_for(asyncio.gather(*(_answer(r, w, sent) for _, r, w in conns)),
                                  timeout)


async def _open(url: str) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
    host_port = url.split("://", 1)[1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
    return host_port, reader, writer


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  sent: float) -> Answer:
    """The one answer on a Connection: close exchange."""
    try:
        raw = await reader.read()
        secs = time.perf_counter() - sent
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    fields = (line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
    headers = {k.strip().lower().decode(): v.strip().decode() for k, v in fields}
    if status == 200:
        return Answer(status, "", secs, headers=headers)
    if b"transfer-encoding: chunked" in head.lower():
        body = b"".join(body.split(b"\r\n")[1::2])
    error = orjson.loads(body)["error"]
    return Answer(status, error["code"], secs, error["message"], headers)
