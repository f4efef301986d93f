"""The load generator of bench/routing_bench.py: conversations through the gateway, streamed.

Open loop: new conversations arrive by a Poisson process whatever the answers do; each one
sends its next turn (its history resent) once the previous answer is complete, after a
short think time. Closed loop (for capacity): a fixed number of users run conversations back
to back. Each request's time to the first content event (TTFT) and to [DONE] is recorded,
with the messages it sent (the oracle replays them) and how late the client sent it.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import httpx
import orjson

from routing_workload import Conversation, Workload

MAX_TOKENS = 32
THINK_MEAN_S = 0.3


@dataclass
class Sample:
    cid: str
    turn: int
    prefix: str
    sent: float               # seconds since the run's start
    lag: float                # how much later than scheduled the client sent it
    messages: list[dict]
    status: int = 0
    ttft: float | None = None
    e2e: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.e2e is not None


@dataclass
class Driver:
    """Sends conversations to the gateway replicas `urls` (in turns) with one API key."""
    urls: list[str]
    api_key: str
    model: str = "qwen"
    think_mean: float = THINK_MEAN_S
    keepalive: bool = True
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        limits = httpx.Limits(max_connections=2000,
                              max_keepalive_connections=2000 if self.keepalive else 0)
        self.client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(180.0))
        self._next_url = 0
        self.t0 = time.perf_counter()

    async def close(self) -> None:
        await self.client.aclose()

    async def open_loop(self, workload: Workload, conv_rate: float, duration: float,
                        seed: int = 7, drain: float = 60.0) -> None:
        """Poisson arrivals of conversations at `conv_rate` per second for `duration` s."""
        rng = random.Random(seed)
        self.t0 = time.perf_counter()
        tasks, due = [], 0.0
        while True:
            due += rng.expovariate(conv_rate)
            if due > duration:
                break
            await asyncio.sleep(max(0.0, self.t0 + due - time.perf_counter()))
            tasks.append(asyncio.create_task(self.conversation(workload.next(), due)))
        if tasks:
            await asyncio.wait(tasks, timeout=drain)
        for task in tasks:
            task.cancel()

    async def closed_loop(self, workload: Workload, users: int, duration: float) -> None:
        """`users` users, each running conversations back to back. The think time between
        turns stays: without it least-in-flight would send a conversation's next turn to the
        replica that just freed a slot by answering the previous one, a cache affinity that
        open-loop traffic does not give it."""
        self.t0 = time.perf_counter()
        end = self.t0 + duration

        async def user() -> None:
            while time.perf_counter() < end:
                await self.conversation(workload.next(), None)
        await asyncio.gather(*(user() for _ in range(users)))

    async def conversation(self, conv: Conversation, due: float | None, think: bool = True) -> None:
        rng = random.Random(conv.cid)
        for turn, question in enumerate(conv.questions):
            messages = conv.first_messages() + conv.history + [{"role": "user", "content": question}]
            sample, answer = await self.request(conv, turn, messages, due)
            if not sample.ok:
                return
            conv.history += [messages[-1], {"role": "assistant", "content": answer}]
            due = None
            if think and turn + 1 < len(conv.questions):
                await asyncio.sleep(rng.expovariate(1 / self.think_mean))

    async def request(self, conv: Conversation, turn: int, messages: list[dict],
                      due: float | None) -> tuple[Sample, str]:
        url = self.urls[self._next_url % len(self.urls)] + "/v1/chat/completions"
        self._next_url += 1
        body = orjson.dumps({"model": self.model, "messages": messages, "max_tokens": MAX_TOKENS,
                             "stream": True})
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json",
                   "X-Session-ID": conv.cid, "X-Request-ID": f"{conv.cid}-t{turn}"}
        started = time.perf_counter()
        sent = started - self.t0
        sample = Sample(conv.cid, turn, conv.prefix, sent, 0.0 if due is None else sent - due,
                        messages)
        self.samples.append(sample)
        parts: list[str] = []
        try:
            async with self.client.stream("POST", url, content=body, headers=headers) as resp:
                sample.status = resp.status_code
                async for line in resp.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        sample.e2e = time.perf_counter() - started
                        break
                    text = _content(line)
                    if text:
                        sample.ttft = sample.ttft or time.perf_counter() - started
                        parts.append(text)
        except httpx.HTTPError:
            sample.status = sample.status or -1
        return sample, "".join(parts)


def _content(line: str) -> str:
    event = orjson.loads(line[6:])
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


async def sample_backends(urls: dict[str, str], period: float, stop: asyncio.Event,
                          out: dict[str, list[tuple[int, int]]]) -> None:
    """Every `period` s, each simulator's (running, waiting), from its /sim/stats."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        while not stop.is_set():
            for name, url in urls.items():
                try:
                    stats = (await client.get(url + "/sim/stats")).json()
                    out.setdefault(name, []).append((stats["running"], stats["waiting"]))
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
            try:
                await asyncio.wait_for(stop.wait(), period)
            except asyncio.TimeoutError:
                pass
