"""Runs planned requests through the capacity and latency model, writing (streamed) answers."""

from __future__ import annotations

import asyncio
import hashlib
import time

import orjson

from . import hermes, logprobs
from . import openai_shapes as shapes
from .tools import ToolGeneration

_DONE = b"data: [DONE]\n\n"
_META, _TOKEN, _STEP = 0, 1, 2  # event kinds: plain event, token event, decode-step boundary


def _sse(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class Engine:
    """Owns the timing of every engine-bound request: queueing, TTFT, inter-token gaps, faults."""

    def __init__(self, cfg, faults, capacity, metrics, stats, kv=None):
        self.cfg, self.faults, self.capacity, self.metrics, self.stats = cfg, faults, capacity, metrics, stats
        self.kv = kv  # KVCache, or None when the prefix cache is not modelled
        self._prefill_until = 0.0  # when the prefills already scheduled on this engine are done
        digest = hashlib.sha256(f"{cfg.model_path}|{cfg.max_model_len}".encode()).hexdigest()[:8]
        self.fingerprint = f"vllm-{cfg.version}-{digest}"

    # ---- generation -------------------------------------------------------
    def run_generation(self, plan, conn, t0: float):
        """Answer synchronously when nothing needs waiting, else return a coroutine to schedule."""
        slots = len(plan.gens)
        claim = self.kv.claim(plan.kv_prompts) if self.kv is not None else None
        self.stats.priorities[plan.priority] += 1
        taken = self.faults.plain and self.capacity.try_acquire(slots, claim, plan.priority)
        if taken:
            try:
                if plan.stream:
                    conn.start_stream()
                    conn.send_raw_chunks([ev for kind, ev in self._events(plan) if kind != _STEP], end=True)
                else:
                    conn.respond(200, orjson.dumps(self._full_body(plan)))
                if claim is not None:
                    claim.finish()
            finally:
                self.capacity.release(taken, claim)
            now = time.perf_counter()
            self._finished(plan, t0, t0, now, now, claim)
            return None
        return self._run_generation_async(plan, conn, t0, slots, claim)

    async def _run_generation_async(self, plan, conn, t0: float, slots: int, claim):
        taken = 0
        if plan.stream:
            # vLLM answers 200 + headers as soon as the request is queued; events follow later.
            conn.start_stream()
            conn.flush_head()
        try:
            taken = await self.capacity.acquire(slots, claim, plan.priority)
            t_run = time.perf_counter()
            delay = self.faults.ttft_s + self._prefill_delay(plan, claim, t_run)
            if delay:
                await asyncio.sleep(delay)
            if plan.stream:
                t_first = await self._stream_async(plan, conn)
            else:
                t_first = await self._full_async(plan, conn)
            if t_first is not None:
                if claim is not None:
                    claim.finish()
                self._finished(plan, t0, t_run, t_first, time.perf_counter(), claim)
        except asyncio.CancelledError:
            self._aborted(len(plan.gens))
            raise
        finally:
            if taken:
                self.capacity.release(taken, claim)

    def _prefill_delay(self, plan, claim, now: float) -> float:
        """Seconds until this request's uncached prompt tokens are prefilled.

        The engine prefills one request at a time (its compute is shared), so a prefill starts when
        the ones scheduled before it are done: concurrent long prompts queue, cached ones do not.
        """
        per_token = self.faults.prefill_s
        if not per_token:
            return 0.0
        tokens = claim.uncached_tokens if claim is not None else plan.prompt_tokens
        self._prefill_until = max(self._prefill_until, now) + tokens * per_token
        return self._prefill_until - now

    async def _full_async(self, plan, conn) -> float | None:
        t_first = time.perf_counter()
        itl, drop = self.faults.itl_s, self.faults.drop_after
        steps = max(len(g.pieces) for g in plan.gens)
        if drop is not None and drop < steps:
            # Non-streaming drop: spend the time of `drop` tokens, then close without any answer.
            await asyncio.sleep(itl * max(drop - 1, 0))
            return self._drop(conn)
        if itl and steps > 1:
            await asyncio.sleep(itl * (steps - 1))
        if self.faults.trickle_s:
            await conn.respond_trickled(orjson.dumps(self._full_body(plan)), self.faults.trickle_s)
        else:
            conn.respond(200, orjson.dumps(self._full_body(plan)))
        return t_first

    async def _stream_async(self, plan, conn) -> float | None:
        t_first = time.perf_counter()
        sent = 0
        for kind, ev in self._events(plan):
            if kind == _STEP:
                itl = self.faults.itl_s  # read each step so run-time changes apply mid-stream
                if itl:
                    await asyncio.sleep(itl)
                await conn.drain()
                if conn.closed:
                    raise asyncio.CancelledError
                continue
            if kind == _TOKEN:
                drop = self.faults.drop_after
                if drop is not None and sent >= drop:
                    return self._drop(conn)
                sent += 1
            conn.send_chunk(ev)
        conn.end_stream()
        return t_first

    def _drop(self, conn) -> None:
        self.stats.dropped += 1
        conn.abort()
        return None

    def _full_body(self, plan) -> dict:
        if plan.logprobs is None:
            lps = [None] * len(plan.gens)
        elif plan.chat:
            lps = [logprobs.chat_logprobs(g.pieces, plan.logprobs) for g in plan.gens]
        else:
            lps = [logprobs.completion_logprobs(g.pieces, plan.logprobs) for g in plan.gens]
        args = (plan.rid, plan.created, plan.model, plan.gens, plan.prompt_tokens, self.fingerprint,
                plan.token_ids, plan.prompt_ids, lps)
        if not plan.chat:
            return shapes.completion_response(*args)
        # Tool-calling choices are read back through vLLM's hermes parser; text choices stay as they are.
        answers = [hermes.message(g.text, g.finish_reason, plan.tools.choice) if isinstance(g, ToolGeneration)
                   else None for g in plan.gens] if plan.tools else None
        return shapes.chat_response(*args, answers=answers)

    # ---- SSE event sequence ----------------------------------------------
    def _events(self, plan):
        """Yield (kind, bytes) in vLLM's order: per decode step, one event per choice."""
        head = {"id": plan.rid, "object": "chat.completion.chunk" if plan.chat else "text_completion",
                "created": plan.created, "model": plan.model}
        if plan.chat:
            use0 = shapes.chat_continuous_usage(plan.prompt_tokens, 0) if plan.continuous else None
            for i in range(len(plan.gens)):
                yield _META, _sse(shapes.chat_role_chunk(head, i, plan.prompt_ids, use0))
        fp = None if plan.include_usage else self.fingerprint
        plain = plan.logprobs is None and not plan.continuous and not plan.token_ids
        template = shapes.PlainTokenEvents(head, plan.chat) if plain else None
        # One hermes stream parser per tool-calling choice, as vLLM keeps one parser per choice.
        streams = [hermes.ToolStream(plan.tools.choice == "named") if isinstance(g, ToolGeneration) else None
                   for g in plan.gens] if plan.tools else None
        steps = max(len(g.pieces) for g in plan.gens)
        for step in range(steps):
            if step:
                yield _STEP, b""
            for i, g in enumerate(plan.gens):
                if streams and streams[i] is not None:
                    chunk = self._tool_chunk(plan, head, i, g, step, fp, streams[i]) if step < len(g.pieces) else None
                    if chunk is not None:
                        yield _TOKEN, _sse(chunk)
                elif template is not None and step < len(g.pieces) - 1:
                    yield _TOKEN, template.event(i, g.pieces[step])
                elif step < len(g.pieces):
                    yield _TOKEN, _sse(self._token_chunk(plan, head, i, g, step, fp))
        if plan.include_usage:
            completion = sum(len(g.pieces) for g in plan.gens)
            yield _META, _sse(shapes.final_usage_chunk(head, plan.prompt_tokens, completion, self.fingerprint))
        yield _META, _DONE

    def _tool_chunk(self, plan, head: dict, i: int, g, step: int, fp: str | None, stream) -> dict | None:
        """A tool-calling choice's chunk for one step; None when vLLM sends none (parser holding back)."""
        last = step == len(g.pieces) - 1
        delta, finish = stream.step(g.delta_text(step), g.finish_reason if last else None)
        if delta is None:
            if plan.logprobs is None and not plan.token_ids:
                return None
            delta = {}  # the step's logprobs or token id still go out, with an empty delta
        return self._token_chunk(plan, head, i, g, step, fp, delta, finish)

    @staticmethod
    def _token_chunk(plan, head: dict, i: int, g, step: int, fp: str | None, delta: dict | None = None,
                     finish: str | None = None) -> dict:
        """delta/finish: given for tool-calling choices; else the piece as content and the engine's finish."""
        last = step == len(g.pieces) - 1
        if delta is None:
            finish = g.finish_reason if last else None
        tid = [g.ids()[step]] if plan.token_ids else None
        prompt_count = plan.prompt_counts[plan.prompt_index(i)]
        piece, fp = g.pieces[step], (fp if last else None)
        if plan.chat:
            use = shapes.chat_continuous_usage(plan.prompt_tokens, step + 1) if plan.continuous else None
            lp = None if plan.logprobs is None else logprobs.chat_logprobs([piece], plan.logprobs, step)
            return shapes.chat_delta_chunk(head, i, {"content": piece} if delta is None else delta, finish, tid,
                                           use, fp, lp)
        use = shapes.usage_set(prompt_count, step + 1) if plan.continuous else None
        pids = plan.prompt_ids[i] if (plan.token_ids and step == 0) else None
        lp = None if plan.logprobs is None else logprobs.completion_logprobs(
            [piece], plan.logprobs, step, sum(len(p) for p in g.pieces[:step]))
        return shapes.completion_chunk(head, i, piece, finish, pids, tid, use, fp, lp)

    # ---- pooling (embeddings, rerank, score) ------------------------------
    def run_pooling(self, body: bytes, prompt_tokens: int, conn, t0: float):
        """Pooling requests take one slot for one forward pass (TTFT), no decode steps."""
        if self.faults.plain and self.capacity.try_acquire(1):
            conn.respond(200, body)
            self.capacity.release(1)
            self._pooled(prompt_tokens, t0, t0)
            return None
        return self._run_pooling_async(body, prompt_tokens, conn, t0)

    async def _run_pooling_async(self, body: bytes, prompt_tokens: int, conn, t0: float):
        taken = 0
        try:
            taken = await self.capacity.acquire(1)
            t_run = time.perf_counter()
            if self.faults.ttft_s:
                await asyncio.sleep(self.faults.ttft_s)
            if self.faults.drop_after is not None:
                self._drop(conn)
                return
            conn.respond(200, body)
            self._pooled(prompt_tokens, t0, t_run)
        except asyncio.CancelledError:
            self._aborted(1)
            raise
        finally:
            if taken:
                self.capacity.release(taken)

    # ---- accounting -------------------------------------------------------
    def _finished(self, plan, t0: float, t_run: float, t_first: float, t_end: float, claim=None):
        gen_tokens = sum(len(g.pieces) for g in plan.gens)
        cached = claim.hit_tokens if claim is not None else 0
        self.metrics.record_finished([g.finish_reason for g in plan.gens], plan.prompt_tokens, gen_tokens,
                                     plan.max_tokens, t0, t_run, t_first, t_end, cached)
        self.stats.completed += 1

    def _pooled(self, prompt_tokens: int, t0: float, t_run: float):
        now = time.perf_counter()
        self.metrics.record_finished(("stop",), prompt_tokens, 0, 0, t0, t_run, now, now)
        self.stats.completed += 1

    def _aborted(self, n: int):
        self.stats.aborted += 1
        self.metrics.success["abort"] += n
