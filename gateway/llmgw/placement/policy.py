"""Routing policies of a pool: what binds a request to a replica, and how far load may bend it.

`least_load` (the default) sends each request to the backend with the least load, `random`
to any that can serve. `prefix` binds requests that share the head of their prompt (a
conversation's start, prompt_head.py) to one replica, so its prefix cache holds what they
share; `session` binds them by a client-given key (a header, else the
body's `user`). A bound request goes to the first backend of its key's ranking whose load is
within `balance_abs` of the least loaded, or within `balance_rel` times the mean; past that,
to the least loaded. The ranking is rendezvous hashing (highest random weight) of the key
with each backend's name: the same key ranks the same backends first in every worker and
gateway replica, with no state shared, and a backend leaving moves only the keys it held.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .prompt_head import head_and_sharing

MASK = (1 << 64) - 1
PolicyName = Literal["least_load", "random", "prefix", "session"]


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

    def key(self, body: dict, headers: Mapping[str, str]) -> int | None:
        """The 64-bit key binding this request, or None: placed by load alone."""
        if self.name == "prefix":
            head, shared = head_and_sharing(body, self.prefix_bytes)
            if not shared and not self.bind_first_turns:
                return None  # a conversation's own first turn: placed by load
            return _hash64(head) if len(head) >= self.min_prefix_bytes else None
        if self.name == "session":
            session = headers.get(self.session_header) or body.get("user")
            return _hash64(session.encode()) if isinstance(session, str) and session else None
        return None


def backend_seed(name: str) -> int:
    """A backend's fixed place in every key's rendezvous ranking: its name's hash."""
    return _hash64(name.encode())


def choose(candidates: Sequence, key: int, policy: PlacementPolicy,
           load: Callable[[object], float]) -> tuple[object, bool]:
    """The backend for a bound request among `candidates` (eligible, with a free slot, each
    with a `seed`), and whether it spilled: its key's first choice was too busy."""
    loads = [load(b) for b in candidates]
    bound = max(min(loads) + policy.balance_abs, policy.balance_rel * sum(loads) / len(loads))
    best, best_score, top_score = candidates[0], -1, -1
    for backend, backend_load in zip(candidates, loads):
        score = _mix(key ^ backend.seed)
        top_score = max(top_score, score)
        if backend_load <= bound and score > best_score:
            best, best_score = backend, score
    return best, best_score != top_score


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _mix(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit score from the key and a backend's seed."""
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & MASK
    return x ^ (x >> 31)
