"""Which models an organisation, and a key within it, may use: lists of name patterns.

A pattern is a model's public name or one of its aliases, where `*` stands for any run of
characters (`Qwen/*`, `*-embed*`). No list (null) means every model. A key may use a model
when its organisation's list and its own both allow it; a model is allowed by a list when a
pattern matches its name or any alias.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Annotated

from pydantic import Field, StrictStr

ModelPattern = Annotated[StrictStr, Field(
    pattern=r"^[A-Za-z0-9._:/@+*-]{1,200}$",
    description="A model's public name or alias; * matches any run of characters.")]
ModelPatterns = Annotated[list[ModelPattern], Field(max_length=100)]


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile("[^\n]*".join(map(re.escape, pattern.split("*"))) + r"\Z")


def allows(patterns: Sequence[str] | None, names: Iterable[str]) -> bool:
    """Does the list allow a model with these names (its name, then its aliases)?"""
    if patterns is None:
        return True
    names = tuple(names)
    return any(_compiled(p).match(n) for p in patterns for n in names)


def unmatched(patterns: Sequence[str] | None, models: Iterable[Iterable[str]]) -> list[str]:
    """The patterns that match no model of the routing table (a typo would deny silently)."""
    if patterns is None:
        return []
    catalogue = [tuple(names) for names in models]
    return [p for p in patterns if not any(allows((p,), names) for names in catalogue)]
