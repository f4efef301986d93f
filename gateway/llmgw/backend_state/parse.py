"""Reading a vLLM /metrics body: the few figures the state view keeps, nothing else of it."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Figures:
    """What one scrape found. Counters are cumulative; None where the backend exports no series."""
    running: float
    waiting: float
    kv_usage: float | None
    prefix_hits: float | None
    prefix_queries: float | None


class NotVLLMMetrics(ValueError):
    """The body has no usable vllm:num_requests_running and vllm:num_requests_waiting series."""


# Each figure's vLLM names, the current one first. Older versions: gpu_cache_usage_perc (before
# 0.10), gpu_prefix_cache_* (V1 before 0.10). While both were exported they held one value,
# so the first name found wins rather than both being added.
NAMES: dict[str, tuple[bytes, ...]] = {
    "running": (b"vllm:num_requests_running",),
    "waiting": (b"vllm:num_requests_waiting",),
    "kv_usage": (b"vllm:kv_cache_usage_perc", b"vllm:gpu_cache_usage_perc"),
    "prefix_hits": (b"vllm:prefix_cache_hits_total", b"vllm:gpu_prefix_cache_hits_total"),
    "prefix_queries": (b"vllm:prefix_cache_queries_total", b"vllm:gpu_prefix_cache_queries_total"),
}


def parse(body: bytes) -> Figures:
    """The figures in a Prometheus text body; NotVLLMMetrics if running or waiting is missing.

    Only lines that start with a wanted name are looked at (bytes.find, no pass over every
    line): a 57 KB vLLM body costs tens of microseconds. Series of one name are summed (a
    data-parallel server has one per engine), but KV cache usage, a share, is the fullest
    engine's. A sample that is not a finite number >= 0 is skipped.
    """
    text = b"\n" + body
    found: dict[str, float] = {}
    for field, names in NAMES.items():
        for name in names:
            values = _samples(text, b"\n" + name)
            if values:
                found[field] = max(values) if field == "kv_usage" else sum(values)
                break
    if "running" not in found or "waiting" not in found:
        raise NotVLLMMetrics("no vllm:num_requests_running/waiting samples")
    return Figures(found["running"], found["waiting"], found.get("kv_usage"),
                   found.get("prefix_hits"), found.get("prefix_queries"))


def _samples(text: bytes, needle: bytes) -> list[float]:
    """The values of every sample line starting with `needle` (a newline, then the name)."""
    values = []
    start = text.find(needle)
    while start >= 0:
        after = start + len(needle)
        end = text.find(b"\n", after)
        end = len(text) if end < 0 else end
        value = _value(text, after, end)
        if value is not None:
            values.append(value)
        start = text.find(needle, end)
    return values


def _value(text: bytes, after: int, end: int) -> float | None:
    """The sample value of the line text[start:end] whose name ends at `after`."""
    first = text[after:after + 1]
    if first == b"{":
        close = text.rfind(b"}", after, end)  # values and timestamps never hold a brace
        if close < 0:
            return None
        rest = text[close + 1:end]
    elif first in (b" ", b"\t"):
        rest = text[after:end]
    else:
        return None  # a longer name with this one as its prefix (num_requests_waiting_by_reason)
    parts = rest.split()  # the value, then an optional timestamp
    if not 1 <= len(parts) <= 2:
        return None
    try:
        value = float(parts[0])
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
