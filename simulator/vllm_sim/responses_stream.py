"""Runs a ResponsesPlan through the app's Engine and writes vLLM 0.32's Responses answers.

The Engine's queueing, TTFT, inter-token latency, KV cache and faults are reused as they are;
ResponsesEngine only replaces the two things that differ from chat: the non-streamed body
(_full_body) and the SSE events (_events). Streamed events are `event: <type>\\ndata: <json>\\n\\n`
with sequence numbers from 0 and no `data: [DONE]` (vLLM's _convert_stream_to_sse_events).
"""

from __future__ import annotations

import orjson

from . import logprobs as lp
from . import openai_shapes as shapes
from .inference import _META, _STEP, _TOKEN, Engine  # the Engine's event kinds, for _events


def _sse(obj: dict) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (obj["type"].encode(), orjson.dumps(obj))


def _logprobs(pieces: list, top: int, start: int = 0) -> list:
    """Output-text logprobs (token, bytes, logprob, top_logprobs), sampled token first among the top."""
    out = []
    for i, piece in enumerate(pieces):
        e = lp.chat_entry(piece, start + i, top)
        tops = [{"token": t["token"], "bytes": t["bytes"], "logprob": t["logprob"]} for t in e["top_logprobs"]]
        out.append({"token": piece, "bytes": e["bytes"], "logprob": e["logprob"], "top_logprobs": tops})
    return out


def _delta_logprobs(entries: list) -> list:
    """The streamed delta's shorter logprob shape (no bytes)."""
    return [{"token": e["token"], "logprob": e["logprob"],
             "top_logprobs": [{"token": t["token"], "logprob": t["logprob"]} for t in e["top_logprobs"]]}
            for e in entries]


def _message(item_id: str, text: str, logprobs: list | None, status: str = "completed") -> dict:
    content = [{"annotations": [], "text": text, "type": "output_text", "logprobs": logprobs}] if text else []
    return {"id": item_id, "content": content, "role": "assistant", "status": status, "type": "message",
            "phase": None}


def _usage(plan) -> dict:
    """ResponseUsage of a SimpleContext: cached tokens from the prefix cache, per-turn lists empty."""
    out_tokens = len(plan.gens[0].pieces)
    cached = plan.claim.hit_tokens if plan.claim is not None else 0
    return {"input_tokens": plan.prompt_tokens,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": max(plan.full_blocks - cached, 0),
                                     "input_tokens_per_turn": [], "cached_tokens_per_turn": []},
            "output_tokens": out_tokens,
            "output_tokens_details": {"reasoning_tokens": 0, "tool_output_tokens": 0, "output_tokens_per_turn": [],
                                      "tool_output_tokens_per_turn": []},
            "total_tokens": plan.prompt_tokens + out_tokens}


def final_response(plan, output: list) -> dict:
    """The finished ResponsesResponse: incomplete when max_output_tokens cut the text."""
    body = dict(plan.template)
    incomplete = plan.gens[0].finish_reason == "length"
    body.update(incomplete_details={"reason": "max_output_tokens"} if incomplete else None, output=output,
                status="incomplete" if incomplete else "completed", usage=_usage(plan))
    return body


class _ClaimRecorder:
    """The engine's KV cache, noting the claim made for this request (its hits are cached_tokens)."""

    def __init__(self, kv, plan):
        self._kv, self._plan = kv, plan

    def claim(self, prompts):
        self._plan.claim = self._kv.claim(prompts)
        return self._plan.claim


class _OpeningConn:
    """The connection, except that flush_head (called by the Engine when a streamed request has
    to wait: queue, TTFT) also sends response.created and response.in_progress, as vLLM emits them
    before the engine schedules the request. When nothing waits, _events yields them instead."""

    def __init__(self, conn, opening: list):
        self._conn, self._opening = conn, opening

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def flush_head(self):
        self._conn.send_raw_chunks(self._opening)
        self._opening.clear()


class ResponsesEngine(Engine):
    """One Responses request run by the app's Engine code and state.

    Built per request from a copy of the app engine's attributes, so capacity, KV cache, metrics,
    stats and faults are the very same objects (Responses and chat requests queue and cache
    together); the one scalar, the prefill clock, is kept on the app engine via _prefill_delay.
    """

    def __init__(self, engine: Engine, plan):
        self.__dict__.update(engine.__dict__)
        self._engine = engine
        if engine.kv is not None:
            self.kv = _ClaimRecorder(engine.kv, plan)

    def run_generation(self, plan, conn, t0: float):
        if plan.stream:
            plan.opened = [_sse({"response": plan.template, "sequence_number": i, "type": t})
                           for i, t in enumerate(("response.created", "response.in_progress"))]
            conn = _OpeningConn(conn, plan.opened)
        return super().run_generation(plan, conn, t0)

    def _prefill_delay(self, plan, claim, now: float) -> float:
        return self._engine._prefill_delay(plan, claim, now)  # one prefill queue per engine

    def _full_body(self, plan) -> dict:
        g = plan.gens[0]
        lps = None if plan.logprobs is None else _logprobs(g.pieces, plan.logprobs)
        return final_response(plan, [_message("msg_" + shapes.random_id(), g.text, lps)])

    def _events(self, plan):
        """(kind, bytes) in vLLM's order: opening events, item/part added with the first token,
        one delta per token (decode step), then the done events and response.completed."""
        for ev in plan.opened:  # still here when nothing had to wait (no flush_head)
            yield _META, ev
        seq = 2  # after response.created and response.in_progress
        item_id = "msg_" + shapes.random_id()
        g = plan.gens[0]
        part = {"annotations": [], "text": "", "type": "output_text", "logprobs": []}
        yield _META, _sse({"item": _message(item_id, "", None, "in_progress"), "output_index": 0,
                           "sequence_number": seq, "type": "response.output_item.added"})
        yield _META, _sse({"content_index": 0, "item_id": item_id, "output_index": 0, "part": part,
                           "sequence_number": seq + 1, "type": "response.content_part.added"})
        seq += 2
        entries = None if plan.logprobs is None else _logprobs(g.pieces, plan.logprobs)
        for step, piece in enumerate(g.pieces):
            if step:
                yield _STEP, b""
            delta_lps = [] if entries is None else _delta_logprobs(entries[step:step + 1])
            yield _TOKEN, _sse({"content_index": 0, "delta": piece, "item_id": item_id, "logprobs": delta_lps,
                                "output_index": 0, "sequence_number": seq, "type": "response.output_text.delta"})
            seq += 1
        yield from ((_META, _sse(ev)) for ev in self._done_events(plan, item_id, entries, seq))

    @staticmethod
    def _done_events(plan, item_id: str, entries: list | None, seq: int) -> list:
        text = plan.gens[0].text
        part = {"annotations": [], "text": text, "type": "output_text", "logprobs": entries or None}
        item = _message(item_id, text, entries or None)
        return [{"content_index": 0, "item_id": item_id, "logprobs": [], "output_index": 0, "sequence_number": seq,
                 "text": text, "type": "response.output_text.done"},
                {"content_index": 0, "item_id": item_id, "output_index": 0, "part": part,
                 "sequence_number": seq + 1, "type": "response.content_part.done"},
                {"item": item, "output_index": 0, "sequence_number": seq + 2, "type": "response.output_item.done"},
                {"response": final_response(plan, [item]), "sequence_number": seq + 3,
                 "type": "response.completed"}]
