"""Deterministic toy tokenizer, chat template and text generator (same inputs, same tokens)."""

from __future__ import annotations

import hashlib
import random
import re
import zlib

# Qwen-like special tokens: the tiny models vLLM is usually tested with use this template.
IM_START, IM_END, EOS = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_IDS = {EOS: 151643, IM_START: 151644, IM_END: 151645}

VOCAB = tuple(
    """the of and to in is that it for on with as was at by be this from or have an
    are not but had which one were all we when there can been has more if will no out
    so up said what its about into than them only other new some could time these two
    may then first any like now my such make over our even most after also made many
    did before must through back years where much your way well down should because long
    each just those people how too little state good very world still own see men work
    here between both life being under never day same another know while last might us
    great old year off come since against go came right used take three place small
    found part general high every things water light system model token stream river
    cloud signal engine vector matrix kernel tensor router gateway cache latency server
    request answer value number order field result green quiet rapid bright simple
    future open clear point simulate measure gentle silver window garden forest ocean
    mountain letter paper music story travel energy balance pattern""".split()
)
_WORD_BASE = 1000
# Each word has a bare form (start of text) and a space-prefixed form, like BPE vocabularies.
_ID_OF: dict[str, int] = {}
_STR_OF: dict[int, str] = {}
for _i, _w in enumerate(VOCAB):
    for _j, _form in enumerate((_w, " " + _w)):
        _ID_OF[_form] = _WORD_BASE + 2 * _i + _j
for _s, _id in SPECIAL_IDS.items():
    _ID_OF[_s] = _id
_STR_OF.update({v: k for k, v in _ID_OF.items()})
_HASH_BASE = 5000
_HASH_SPAN = 140000
_SEEN_LIMIT = 200_000

_TOKEN_RE = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in SPECIAL_IDS) + ")")


def count_tokens(text: str) -> int:
    """Number of tokens in plain text (special tokens are not recognised here)."""
    return len(_TOKEN_RE.findall(text))


def _token_id(piece: str) -> int:
    tid = _ID_OF.get(piece)
    if tid is None:
        tid = _HASH_BASE + zlib.crc32(piece.encode()) % _HASH_SPAN
        # Remember the piece so /detokenize can round-trip what /tokenize handed out.
        if len(_STR_OF) < _SEEN_LIMIT:
            _STR_OF.setdefault(tid, piece)
    return tid


def tokenize(text: str, specials: bool = False) -> list[str]:
    """Split text into token strings; with specials, chat-template markers are single tokens."""
    if not specials:
        return _TOKEN_RE.findall(text)
    out: list[str] = []
    for part in _SPECIAL_RE.split(text):
        if part in SPECIAL_IDS:
            out.append(part)
        elif part:
            out.extend(_TOKEN_RE.findall(part))
    return out


def token_ids(pieces: list[str]) -> list[int]:
    return [_token_id(p) for p in pieces]


def detokenize(ids: list[int]) -> str:
    return "".join(_STR_OF.get(i, f"<|tok{i}|>") for i in ids)


def token_display(piece: str) -> str:
    """Byte-level BPE spelling (GPT-2 style) that vLLM returns in token_strs."""
    return piece.replace(" ", "\u0120").replace("\n", "\u010a")


def message_text(content) -> str:
    """Text of a chat message content: a string, null, or a list of content parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict):
                raise ValueError("content parts must be objects")
            if part.get("type", "text") == "text":
                texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    raise ValueError("message content must be a string or a list of content parts")


def render_chat(messages: list, add_generation_prompt: bool = True) -> str:
    """ChatML rendering; its token count is the chat prompt length everywhere."""
    parts = []
    for msg in messages:
        if not isinstance(msg, dict):
            raise ValueError("each message must be an object")
        role = msg.get("role")
        if not isinstance(role, str):
            raise ValueError("each message needs a string 'role'")
        parts.append(f"{IM_START}{role}\n{message_text(msg.get('content'))}{IM_END}\n")
    if add_generation_prompt:
        parts.append(f"{IM_START}assistant\n")
    return "".join(parts)


def count_chat(rendered: str) -> int:
    return len(tokenize(rendered, specials=True))


class Generation:
    """One generated choice: its tokens (as text pieces) and why it ended."""

    __slots__ = ("pieces", "finish_reason")

    def __init__(self, pieces: list[str], finish_reason: str):
        self.pieces = pieces
        self.finish_reason = finish_reason

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def ids(self) -> list[int]:
        return [_ID_OF[p] for p in self.pieces]


def generate(prompt: str, seed: int | None, index: int, max_tokens: int,
             natural_len: tuple[int, int], ignore_eos: bool = False, min_tokens: int = 0) -> Generation:
    """Words from VOCAB drawn by a PRNG seeded from (prompt, seed, index).

    The "natural" length stands in for the EOS token: shorter than max_tokens means
    finish_reason "stop", otherwise generation is cut at max_tokens ("length").
    """
    key = b"%d|%d|" % (seed or 0, index) + prompt.encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "little"))
    natural = max(rng.randint(natural_len[0], natural_len[1]), min_tokens, 1)
    if ignore_eos or natural > max_tokens:
        count, reason = max_tokens, "length"
    else:
        count, reason = natural, "stop"
    words = rng.choices(VOCAB, k=count)
    pieces = [" " + w for w in words]
    if pieces:
        pieces[0] = words[0]
    return Generation(pieces, reason)
