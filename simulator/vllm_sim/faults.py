"""Fault-injection and latency state, settable at start (flags) and at run time (/sim/faults)."""

from __future__ import annotations

import random
import time
from http import HTTPStatus

# name -> (type check, description of the accepted value)
_SPEC = {
    "ttft_ms": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "itl_ms": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "prefill_ms_per_token": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "slow_factor": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "error_rate": (lambda v: _num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "error_status": (lambda v: _int(v) and 100 <= v <= 599, "an HTTP status code"),
    "loading_secs": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "hang": (lambda v: isinstance(v, bool), "a boolean"),
    "drop_after_tokens": (lambda v: v is None or (_int(v) and v >= 0), "null or an integer >= 0"),
    "trickle_ms": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "health_fail": (lambda v: isinstance(v, bool), "a boolean"),
    # /metrics only: never answer, answer 200 with something that is not Prometheus text, or 500
    "metrics_fault": (lambda v: v in (None, "hang", "garbage", "error"),
                      'null, "hang", "garbage" or "error"'),
}
NO_FAULTS = {
    "slow_factor": 1.0, "error_rate": 0.0, "error_status": 500, "loading_secs": 0.0,
    "hang": False, "drop_after_tokens": None, "health_fail": False, "trickle_ms": 0.0,
    "metrics_fault": None,
}
_LATENCY = ("ttft_ms", "itl_ms", "prefill_ms_per_token")  # the latency model a reset restores
_ERROR_TYPES = {500: "InternalServerError", 503: "ServiceUnavailableError", 400: "BadRequestError",
                404: "NotFoundError", 501: "NotImplementedError", 422: "UnprocessableEntityError"}


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def error_type(status: int) -> str:
    """The OpenAI-style error 'type' vLLM would put next to this status."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "InternalServerError"


class Faults:
    """Current fault settings plus the seeded PRNG that makes error_rate reproducible."""

    def __init__(self, startup: dict, seed: int):
        self._startup = dict(startup)
        self._seed = seed
        self._rng = random.Random(seed)
        self.values: dict = {}
        self.loading_until = 0.0
        self._apply(startup)
        self._recompute()

    def update(self, body: dict) -> str | None:
        """Merge a /sim/faults body; returns an error message instead of applying a bad one."""
        if not isinstance(body, dict):
            return "body must be a JSON object"
        for key, val in body.items():
            if key == "reset":
                if not isinstance(val, bool):
                    return "'reset' must be a boolean"
                continue
            if key == "loading_remaining_secs":  # read-only field of GET; accepted so state round-trips
                continue
            if key not in _SPEC:
                return f"unknown fault field '{key}'; known: reset, {', '.join(_SPEC)}"
            check, what = _SPEC[key]
            if not check(val):
                return f"'{key}' must be {what}"
        if body.get("reset"):
            # Reset clears every fault and restores the latency model the process started with.
            self._rng = random.Random(self._seed)
            self._apply({**NO_FAULTS, **{k: self._startup[k] for k in _LATENCY}})
        self._apply({k: v for k, v in body.items() if k in _SPEC})
        self._recompute()
        return None

    def _apply(self, changes: dict):
        self.values.update(changes)
        if "loading_secs" in changes:
            # Loading counts from the moment it is set (process start for the flag).
            secs = changes["loading_secs"] or 0.0
            self.loading_until = time.monotonic() + secs if secs > 0 else 0.0

    def _recompute(self):
        v = self.values
        self.ttft_s = v["ttft_ms"] * v["slow_factor"] / 1000.0
        self.itl_s = v["itl_ms"] * v["slow_factor"] / 1000.0
        self.prefill_s = v["prefill_ms_per_token"] * v["slow_factor"] / 1000.0  # per uncached prompt token
        self.error_rate = v["error_rate"]
        self.error_status = v["error_status"]
        self.hang = v["hang"]
        self.drop_after = v["drop_after_tokens"]
        self.health_fail = v["health_fail"]
        self.trickle_s = v["trickle_ms"] / 1000.0
        self.metrics_fault = v["metrics_fault"]
        # One flag keeps the zero-delay fast path to a single attribute test.
        self.plain = (self.ttft_s == 0 and self.itl_s == 0 and self.prefill_s == 0 and not self.hang and self.drop_after is None
                      and self.trickle_s == 0)

    def loading(self) -> bool:
        if self.loading_until and time.monotonic() >= self.loading_until:
            self.loading_until = 0.0
        return self.loading_until > 0

    def roll_error(self) -> bool:
        """True if this request should get an injected error (deterministic sequence per seed)."""
        return self.error_rate > 0 and self._rng.random() < self.error_rate

    def snapshot(self) -> dict:
        out = dict(self.values)
        remaining = max(0.0, self.loading_until - time.monotonic()) if self.loading() else 0.0
        out["loading_remaining_secs"] = round(remaining, 3)
        return out
