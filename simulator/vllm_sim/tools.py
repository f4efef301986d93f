"""The simulated model's tool calls: when it calls, which tool, with what arguments, as which tokens.

A choice calls a tool for tool_choice "required" (a tool drawn from the request's), a named
choice (that tool) and "auto" when the conversation ends with a user message (so an agent loop
that sends the tool's result back then gets a text answer); "none" always gets text. The call
is written as Qwen2.5 / Hermes models write it, and as vLLM 0.32's hermes structural tag forces
it:  <tool_call>\\n{"name": "NAME", "arguments": {...}}\\n</tool_call>  then the end-of-turn
token. Everything is drawn from a PRNG seeded by (prompt, seed, choice index), like text.
"""

from __future__ import annotations

import hashlib
import json
import random

from . import generate as gen
from .json_args import arguments
from .tool_request import ToolRequest


class ToolGeneration(gen.Generation):
    """A choice that calls a tool.

    When the call is complete, the last piece is the end-of-turn token: vLLM counts it (usage,
    token_ids, logprobs) but leaves it out of the text, so its streamed text is "".
    """

    __slots__ = ("eos",)

    def __init__(self, pieces: list[str], finish_reason: str, eos: bool):
        super().__init__(pieces, finish_reason)
        self.eos = eos

    @property
    def text(self) -> str:
        return "".join(self.pieces[:-1] if self.eos else self.pieces)

    def ids(self) -> list[int]:
        return gen.token_ids(self.pieces)

    def delta_text(self, step: int) -> str:
        return "" if self.eos and step == len(self.pieces) - 1 else self.pieces[step]


def call_text(name: str, args: dict) -> str:
    """One Hermes tool call; json.dumps spacing is what vLLM's parser re-serialises arguments with."""
    body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    return f"{gen.TOOL_CALL_START}\n{body}\n{gen.TOOL_CALL_END}"


def answer(req: ToolRequest, prompt: str, seed: int | None, index: int, limit: int,
           last_role: str | None) -> ToolGeneration | None:
    """This choice's tool call, cut at `limit` tokens (finish "length"); None: answer with text."""
    if req.choice == "none" or (req.choice == "auto" and last_role != "user"):
        return None
    digest = hashlib.blake2b(b"tool|%d|%d|" % (seed or 0, index) + prompt.encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "little"))
    if req.choice == "named":
        fn = next(f for f in req.tools if f["name"] == req.name)
    else:
        fn = rng.choice(req.tools)
    pieces = gen.tokenize(call_text(fn["name"], arguments(fn.get("parameters"), rng)), specials=True)
    if len(pieces) < limit:  # room for the end-of-turn token too
        return ToolGeneration(pieces + [gen.IM_END], "stop", True)
    return ToolGeneration(pieces[:limit], "length", False)
