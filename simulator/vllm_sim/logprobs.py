"""Deterministic fake log-probabilities in vLLM's chat and completions logprobs shapes."""

from __future__ import annotations

import zlib

from .generate import VOCAB


def _logprob(piece: str, pos: int) -> float:
    frac = zlib.crc32(f"{pos}|{piece}".encode()) / 2**32
    return -(0.05 + 7.5 * frac)


def _alternatives(piece: str, pos: int, k: int) -> list[tuple[str, float]]:
    """k other plausible tokens; vLLM lists the sampled token first, then the top-ranked ones."""
    out, seen = [], {piece}
    h = zlib.crc32(f"alt|{pos}|{piece}".encode())
    while len(out) < k:
        word = " " + VOCAB[h % len(VOCAB)]
        h = zlib.crc32(word.encode(), h)
        if word not in seen:
            seen.add(word)
            out.append((word, _logprob(word, pos)))
    return out


def _top_count(top: int) -> int:
    return 20 if top == -1 else max(top, 0)


def chat_entry(piece: str, pos: int, top: int) -> dict:
    lp = _logprob(piece, pos)
    n = _top_count(top)
    tops = ([(piece, lp)] + _alternatives(piece, pos, n - 1)) if n else []
    return {"token": piece, "logprob": lp, "bytes": list(piece.encode()),
            "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in tops]}


def chat_logprobs(pieces: list[str], top: int, start: int = 0) -> dict:
    return {"content": [chat_entry(p, start + i, top) for i, p in enumerate(pieces)]}


def completion_logprobs(pieces: list[str], num: int, start: int = 0, offset: int = 0) -> dict:
    """CompletionLogProbs; top_logprobs dicts hold the sampled token plus `num` ranked ones."""
    offsets, lps, tops = [], [], []
    for i, piece in enumerate(pieces):
        offsets.append(offset)
        offset += len(piece)
        lp = _logprob(piece, start + i)
        lps.append(lp)
        top = {piece: lp}
        top.update(_alternatives(piece, start + i, _top_count(num)))
        tops.append(top)
    return {"text_offset": offsets, "token_logprobs": lps, "tokens": list(pieces), "top_logprobs": tops}
