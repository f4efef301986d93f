"""Deterministic toy tokenizer, chat template and text generator (same inputs, same tokens)."""

from __future__ import annotations

import hashlib
import json
import random
import re
import zlib

# Qwen-like special tokens: the tiny models vLLM is usually tested with use this template.
IM_START, IM_END, EOS = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
TOOL_CALL_START, TOOL_CALL_END = "<tool_call>", "</tool_call>"  # Qwen2.5's Hermes tool-call markers
SPECIAL_IDS = {EOS: 151643, IM_START: 151644, IM_END: 151645, TOOL_CALL_START: 151657, TOOL_CALL_END: 151658}
# Qwen2.5's chat template puts the tools into the system turn with these words.
_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
_TOOLS_HEAD = ("\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
               "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
_TOOLS_TAIL = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments "
               "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
               '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')

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


def render_chat(messages: list, add_generation_prompt: bool = True, tools=None) -> str:
    """ChatML rendering (Qwen2.5's, tools included); its token count is the chat prompt length everywhere."""
    for msg in messages:
        if not isinstance(msg, dict):
            raise ValueError("each message must be an object")
        if not isinstance(msg.get("role"), str):
            raise ValueError("each message needs a string 'role'")
    parts, skip = [], 0
    if tools:
        # The tools go into the system turn (the request's first system message, else a default one).
        skip = 1 if messages and messages[0]["role"] == "system" else 0
        system = message_text(messages[0].get("content")) if skip else _DEFAULT_SYSTEM
        listed = "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools)
        parts.append(f"{IM_START}system\n{system}{_TOOLS_HEAD}{listed}{_TOOLS_TAIL}{IM_END}\n")
    for k in range(skip, len(messages)):
        parts.append(_render_message(messages, k))
    if add_generation_prompt:
        parts.append(f"{IM_START}assistant\n")
    return "".join(parts)


def _render_message(messages: list, k: int) -> str:
    msg = messages[k]
    role, text = msg["role"], message_text(msg.get("content"))
    calls = msg.get("tool_calls")
    if role == "assistant" and isinstance(calls, list) and calls:
        head = f"{IM_START}assistant" + ("\n" + text if text else "")
        return head + "".join(map(_render_call, calls)) + f"{IM_END}\n"
    if role == "tool":
        # Consecutive tool results share one user turn, each in <tool_response> tags.
        first = k == 0 or messages[k - 1].get("role") != "tool"
        last = k == len(messages) - 1 or messages[k + 1].get("role") != "tool"
        return (f"{IM_START}user" if first else "") + f"\n<tool_response>\n{text}\n</tool_response>" + \
            (f"{IM_END}\n" if last else "")
    return f"{IM_START}{role}\n{text}{IM_END}\n"


def _render_call(call) -> str:
    fn = call.get("function") if isinstance(call, dict) else None
    fn = fn if isinstance(fn, dict) else {}
    args = fn.get("arguments")
    args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return f'\n{TOOL_CALL_START}\n{{"name": "{fn.get("name")}", "arguments": {args}}}\n{TOOL_CALL_END}'


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
