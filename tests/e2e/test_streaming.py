"""Streaming is a true pass-through: progressive delivery, upstream closed on disconnect,
and a backend failure mid-stream reaches the client as an error event."""

from __future__ import annotations

import time
from contextlib import contextmanager

import httpx
import openai
import orjson
import pytest

BODY = {"model": "qwen", "messages": [{"role": "user", "content": "tell me a story"}], "stream": True}


@contextmanager
def faults(stack, backends, **values):
    """Set simulator faults for the duration of a test, on the named backends."""
    for name in backends:
        httpx.post(stack.backend_url(name) + "/sim/faults", json=values).raise_for_status()
    try:
        yield
    finally:
        for name in backends:
            httpx.post(stack.backend_url(name) + "/sim/faults", json={"reset": True}).raise_for_status()


def _stats(stack, name) -> dict:
    return httpx.get(stack.backend_url(name) + "/sim/stats").json()


def test_events_reach_the_client_as_the_backend_sends_them(sim_stack):
    with faults(sim_stack, ["chat0", "chat1"], ttft_ms=0, itl_ms=60):
        arrivals = []
        start = time.monotonic()
        with httpx.stream("POST", sim_stack.base_url + "/v1/chat/completions",
                          json={**BODY, "max_tokens": 10}, timeout=30,
                          headers=sim_stack.auth) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    arrivals.append(time.monotonic() - start)
    # 10 tokens 60 ms apart: buffered delivery would bring every event at the very end.
    assert len(arrivals) >= 11
    assert arrivals[-1] >= 0.5
    assert arrivals[1] < arrivals[-1] - 0.4
    gaps = [b - a for a, b in zip(arrivals[1:], arrivals[2:-2])]
    assert sum(g > 0.03 for g in gaps) >= len(gaps) - 2, gaps


def test_client_disconnect_closes_the_upstream_at_once(sim_stack):
    with faults(sim_stack, ["chat0", "chat1"], ttft_ms=0, itl_ms=100):
        before = sum(_stats(sim_stack, n)["aborted"] for n in ("chat0", "chat1"))
        with httpx.stream("POST", sim_stack.base_url + "/v1/chat/completions",
                          json={**BODY, "max_tokens": 300}, timeout=30,
                          headers=sim_stack.auth) as resp:
            lines = resp.iter_lines()
            assert next(lines).startswith("data: ")
        # The client is gone; a 30 s generation must be aborted on the backend within a second.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            stats = [_stats(sim_stack, n) for n in ("chat0", "chat1")]
            if sum(s["in_flight"] for s in stats) == 0:
                break
            time.sleep(0.05)
        assert sum(s["in_flight"] for s in stats) == 0
        assert sum(s["aborted"] for s in stats) == before + 1
        assert time.monotonic() - deadline < 0  # well before the generation would have ended


def test_backend_dropping_mid_stream_gives_an_error_event(sim_stack):
    with faults(sim_stack, ["chat0", "chat1"], drop_after_tokens=3):
        with httpx.stream("POST", sim_stack.base_url + "/v1/chat/completions",
                          json={**BODY, "max_tokens": 20}, timeout=30,
                          headers=sim_stack.auth) as resp:
            assert resp.status_code == 200
            events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
        assert events[-1] != "[DONE]"
        last = orjson.loads(events[-1])
        assert last["error"]["code"] == "bad_gateway" and "127.0.0.1" not in events[-1]
        assert len(events) >= 3  # the tokens sent before the failure were delivered

        client = openai.OpenAI(base_url=sim_stack.base_url + "/v1", api_key=sim_stack.api_key,
                               max_retries=0)
        with pytest.raises(openai.APIError):
            for _ in client.chat.completions.create(model="qwen", messages=BODY["messages"],
                                                    max_tokens=20, stream=True):
                pass


@pytest.mark.parametrize("status,expected", [(500, 502), (503, 503)])
def test_backend_errors_become_gateway_errors(sim_stack, status, expected):
    with faults(sim_stack, ["chat0", "chat1"], error_rate=1.0, error_status=status):
        for stream in (False, True):
            resp = httpx.post(sim_stack.base_url + "/v1/chat/completions",
                              json={**BODY, "stream": stream, "max_tokens": 3}, timeout=30,
                              headers=sim_stack.auth)
            assert resp.status_code == expected, resp.text
            assert resp.json()["error"]["type"] == "server_error"
