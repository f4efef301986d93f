"""Routing policies of a pool: what binds a request to a replica, and how far load may bend it.

`least_load` (the default) sends each request to the backend with the least load, `random`
to any that can serve. `prefix` binds requests that share the head of their prompt (a
conversation's start, prompt_head.py) to one replica, so its prefix cache holds what they
share; `session` binds them by a client-given key (a header, else the
body's `user`). A bound request goes to the least loaded backend that holds its key (its
ranking's first, or one this worker spilled the key to lately: holders.py) whose load is within
`balance_abs` of the least loaded, or within `balance_rel` times the mean; past that, to the
first backend of its ranking within that bound, which then holds the key too. The ranking is
rendezvous hashing (highest random weight) of the key with each backend's name: the same key
ranks the same backends first in every worker and gateway replica, with no state shared, and a
backend leaving moves only the keys it held.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from .prefill import prompt_tokens
from .prompt_head import head_and_sharing

MASK = (1 << 64) - 1
PolicyName = Literal["least_load", "random", "prefix", "session"]


class Placement(NamedTuple):
    """What a bound policy's pool needs to place one request (a tuple: made per request, and a
    frozen dataclass's __init__ costs several times as much)."""
    key: int | None    # its rendezvous key; None: placed by load alone
    tokens: int        # its prompt's estimated tokens (prefill.py)
    tail_tokens: int   # its last message's: what a replica holding its key still prefills

    def prefill(self, held: bool) -> int:
        """Its prefill on a backend that holds its key (or not)."""
        return self.tail_tokens if held and self.key is not None else self.tokens


@dataclass(frozen=True)
class PlacementPolicy:
    """A pool's policy and its parameters, as routing.yaml gives them."""
    name: PolicyName = "least_load"
    prefix_bytes: int = 2048        # how much of the prompt's head makes its key
    min_prefix_bytes: int = 32      # a shorter head is placed by load alone
    balance_abs: int = 8            # a bound request may go to a backend this much busier...
    balance_rel: float = 1.5        # ... or this many times the mean load
    session_header: str = "x-session-id"
    bind_first_turns: bool = False  # also bind a first turn whose preamble is short
    slot_tokens: int = 64           # a request past its prefill weighs this many prompt tokens

    def place(self, body: dict, headers: Mapping[str, str], salt: bytes = b"") -> Placement | None:
        """How a prefix or session pool places this request; None under least_load and random,
        which place by request counts alone. `salt` sets apart the prefixes of models whose
        KV blocks a backend caches apart (a LoRA adapter's, routing.Model.prefix_salt)."""
        if self.name not in ("prefix", "session"):
            return None
        return Placement(self.key(body, headers, salt), *prompt_tokens(body))

    def key(self, body: dict, headers: Mapping[str, str], salt: bytes = b"") -> int | None:
        """The 64-bit key binding this request, or None: placed by load alone."""
        if self.name == "prefix":
            head, shared = head_and_sharing(body, self.prefix_bytes,
                                            unshared=self.bind_first_turns)
            if not shared and not self.bind_first_turns:
                return None  # a conversation's own first turn: placed by load
            return _hash64(salt + head) if len(head) >= self.min_prefix_bytes else None
        if self.name == "session":
            session = headers.get(self.session_header) or body.get("user")
            return _hash64(session.encode()) if isinstance(session, str) and session else None
        return None


def backend_seed(name: str) -> int:
    """A backend's fixed place in every key's rendezvous ranking: its name's hash."""
    return _hash64(name.encode())


def choose(candidates: Sequence, key: int, policy: PlacementPolicy,
           load: Callable[[object], float], held: Container[str] = frozenset(),
           work: Callable[[object], float] | None = None) -> tuple[object, str]:
    """The backend for a bound request among `candidates` (eligible, with a free slot, each
    with a `seed`), and why: "affinity" (its key's first choice), "learned" (a backend this
    worker spilled the key to lately, `held`, so it holds the prefix too) or "spilled".

    The key's holders (first choice and `held`) are preferred, the one with the least `work`
    (default: load; a tie to the higher ranked) among those whose load is within the bound;
    past the bound, the highest ranked backend within it: a key spills to the same second
    choice everywhere."""
    work = work or load
    loads = [load(b) for b in candidates]
    bound = max(min(loads) + policy.balance_abs, policy.balance_rel * sum(loads) / len(loads))
    scores = [_mix(key ^ backend.seed) for backend in candidates]
    top_score = max(scores)
    holder, holder_rank = None, None
    spill, spill_score = candidates[0], -1
    for backend, backend_load, score in zip(candidates, loads, scores):
        if backend_load > bound:
            continue
        if (score == top_score or backend.name in held) and \
                (holder_rank is None or (work(backend), -score) < holder_rank):
            holder, holder_rank = backend, (work(backend), -score)
        if score > spill_score:
            spill, spill_score = backend, score
    if holder is not None:
        return holder, "affinity" if -holder_rank[1] == top_score else "learned"
    return spill, "spilled"


def rank_score(key: int, backend) -> int:
    """The backend's place in the key's ranking (highest first)."""
    return _mix(key ^ backend.seed)


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _mix(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit score from the key and a backend's seed."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & MASK
    return x ^ (x >> 31)
