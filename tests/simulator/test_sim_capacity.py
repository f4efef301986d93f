"""Capacity model: running/waiting in /metrics and /sim/stats, FIFO order, slots freed on disconnect."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

pytestmark = pytest.mark.timeout(20)
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def fire(sim, count: int, body: dict = CHAT, bodies: list[dict] | None = None
         ) -> tuple[list[threading.Thread], dict]:
    """Send `count` requests (or `bodies`) on separate connections, in a fixed arrival order;
    collect finish times."""
    bodies = bodies or [body] * count
    requests = [b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(p), p)
                for p in (json.dumps(b).encode() for b in bodies)]
    socks = [socket.create_connection(("127.0.0.1", sim.port), timeout=10) for _ in requests]
    done: dict[int, float] = {}

    def wait(i: int, s: socket.socket):
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        done[i] = time.perf_counter()

    threads = []
    for i, (s, request) in enumerate(zip(socks, requests)):
        s.sendall(request)
        time.sleep(0.03)  # the server sees the requests in this order
        threads.append(threading.Thread(target=wait, args=(i, s)))
        threads[-1].start()
    return threads, done


def wait_for(pred, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_waiting_visible_in_metrics_and_stats_and_fifo(start_sim):
    # 1.5 s to the first token: three requests stay waiting long enough to be seen on a busy host.
    sim = start_sim("--max-num-seqs", "2", "--ttft-ms", "1500")
    threads, done = fire(sim, 5)
    assert wait_for(lambda: sim.stats()["waiting"] == 3)
    assert sim.metric("vllm:num_requests_running") == 2
    assert sim.metric("vllm:num_requests_waiting") == 3
    assert sim.metric("vllm:kv_cache_usage_perc") == 1.0
    stats = sim.stats()
    assert (stats["running"], stats["in_flight"], stats["max_num_seqs"]) == (2, 5, 2)
    for t in threads:
        t.join()
    order = sorted(done, key=done.get)
    assert set(order[:2]) == {0, 1} and set(order[2:4]) == {2, 3} and order[4] == 4  # FIFO
    assert sim.metric("vllm:num_requests_running") == 0 and sim.metric("vllm:num_requests_waiting") == 0
    assert sim.metric("vllm:request_success_total", finished_reason="length") == 5
    assert sim.metric("vllm:generation_tokens_total") == 10
    assert sim.metric("vllm:e2e_request_latency_seconds_count") == 5
    assert sim.metric("vllm:time_to_first_token_seconds_bucket", le="1.0") == 0  # all waited >= 1.5 s
    stats = sim.stats()
    assert stats["completed"] == 5 and stats["by_endpoint"]["/v1/chat/completions"] == 5


@pytest.mark.parametrize("policy", ["fcfs", "priority"])
def test_the_wait_is_ordered_by_priority_only_under_the_priority_policy(start_sim, policy):
    sim = start_sim("--max-num-seqs", "1", "--ttft-ms", "400", "--scheduling-policy", policy)
    priorities = [0, 7, 3, 7, 0]
    threads, done = fire(sim, 0, bodies=[{**CHAT, "priority": p} for p in priorities])
    for t in threads:
        t.join()
    order = sorted(done, key=done.get)
    # 0 runs at once; the rest wait: by (priority, arrival), or by arrival alone under fcfs
    assert order == ([0, 4, 2, 1, 3] if policy == "priority" else [0, 1, 2, 3, 4])
    assert sim.stats()["priorities"] == {"0": 2, "3": 1, "7": 2}


def test_n_takes_n_slots(start_sim):
    sim = start_sim("--max-num-seqs", "4", "--ttft-ms", "300")
    threads, _ = fire(sim, 2, {**CHAT, "n": 3})
    assert wait_for(lambda: sim.stats()["waiting"] == 1)
    assert sim.stats()["running"] == 3
    for t in threads:
        t.join()


def test_stream_disconnect_frees_slot_and_counts_abort(start_sim):
    sim = start_sim("--max-num-seqs", "1", "--itl-ms", "50")
    with sim.http.stream("POST", "/v1/chat/completions",
                         json={**CHAT, "max_tokens": 200, "ignore_eos": True, "stream": True}) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        assert sim.stats()["running"] == 1
    # Leaving the block closed the connection mid-stream: the slot must come back at once.
    assert wait_for(lambda: sim.stats()["running"] == 0, 2.0)
    assert sim.stats()["aborted"] == 1
    assert sim.metric("vllm:request_success_total", finished_reason="abort") == 1
    t0 = time.perf_counter()
    assert sim.post("/v1/chat/completions", CHAT).status_code == 200
    assert time.perf_counter() - t0 < 1.0  # not stuck behind the abandoned 10 s stream


def test_disconnect_while_waiting_leaves_queue(start_sim):
    sim = start_sim("--max-num-seqs", "1", "--ttft-ms", "800")
    threads, _ = fire(sim, 1)
    assert wait_for(lambda: sim.stats()["running"] == 1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(sim.url + "/v1/chat/completions", json=CHAT, timeout=0.3)
    assert wait_for(lambda: sim.stats()["waiting"] == 0, 2.0)
    assert sim.stats()["aborted"] == 1
    for t in threads:
        t.join()
    assert sim.stats()["running"] == 0


def test_stats_reset(start_sim):
    sim = start_sim()
    sim.post("/v1/chat/completions", CHAT)
    assert sim.stats()["total_requests"] == 1
    r = sim.http.post("/sim/stats", json={"reset": True}).json()
    assert r["total_requests"] == 0 and r["by_endpoint"] == {} and r["completed"] == 0


def test_n_larger_than_capacity_still_runs(start_sim):
    sim = start_sim("--max-num-seqs", "2")
    r = sim.post("/v1/chat/completions", {**CHAT, "n": 5})
    assert r.status_code == 200 and len(r.json()["choices"]) == 5
    assert sim.stats()["running"] == 0 and sim.metric("vllm:num_requests_running") == 0
