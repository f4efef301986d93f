"""OpenAI's x-ratelimit-* response headers, from what admission saw."""

from __future__ import annotations


def duration(ms: int) -> str:
    """OpenAI's reset format: "20ms", "1s", "6m0s"."""
    if ms < 1000:
        return f"{max(0, ms)}ms"
    secs = -(-ms // 1000)
    return f"{secs // 60}m{secs % 60}s" if secs >= 60 else f"{secs}s"


def ratelimit_headers(rpm: tuple[int, int, int], tpm: tuple[int, int, int]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind, (limit, remaining, reset_ms) in (("requests", rpm), ("tokens", tpm)):
        if limit > 0:
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, remaining))
            headers[f"x-ratelimit-reset-{kind}"] = duration(reset_ms)
    return headers
