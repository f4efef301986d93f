"""Reading vLLM's figures out of /metrics bodies: real captures, several engines, older names,
and everything a broken backend may send instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgw.backend_state import Figures, NotVLLMMetrics, parse

CAPTURES = Path(__file__).resolve().parents[2] / "simulator" / "vllm_captures"


def capture(name: str) -> bytes:
    """A captured vLLM 0.32 answer, its HTTP status line and headers dropped."""
    return (CAPTURES / name).read_bytes().split(b"\r\n\r\n", 1)[1]


def test_real_vllm_capture_before_and_after_traffic():
    assert parse(capture("metrics_chat.txt")) == Figures(0.0, 0.0, 0.0, 0.0, 0.0)
    after = parse(capture("metrics_chat_after_traffic.txt"))
    assert (after.prefix_queries, after.prefix_hits) == (198.0, 0.0)  # the capture's counters
    assert parse(capture("metrics_embed.txt")).running == 0.0


def test_the_simulators_own_body_reads_the_same_figures():
    from vllm_sim.metrics import Metrics
    sim = Metrics("tiny-chat", 512)
    sim.counters["prefix_cache_hits"][""] = 30
    sim.counters["prefix_cache_queries"][""] = 120
    assert parse(sim.render(3, 7, 0.25)) == Figures(3.0, 7.0, 0.25, 30.0, 120.0)


def _body(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def test_several_engines_are_summed_but_kv_usage_is_the_fullest():
    body = _body(
        '# TYPE vllm:num_requests_running gauge',
        'vllm:num_requests_running{engine="0",model_name="m"} 2.0',
        'vllm:num_requests_running{engine="1",model_name="m"} 3.0',
        'vllm:num_requests_waiting{engine="0",model_name="m"} 1.0',
        'vllm:num_requests_waiting{engine="1",model_name="m"} 4.0',
        'vllm:num_requests_waiting_by_reason{engine="0",model_name="m",reason="capacity"} 100.0',
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5',
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75',
        'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 10.0',
        'vllm:prefix_cache_hits_total{engine="1",model_name="m"} 5.0',
        'vllm:prefix_cache_hits_created{engine="0",model_name="m"} 1.7e+09')
    assert parse(body) == Figures(5.0, 5.0, 0.75, 15.0, None)


def test_older_names_and_current_ones_are_not_added_together():
    old = _body('vllm:num_requests_running{model_name="m"} 1', 'vllm:num_requests_waiting{model_name="m"} 2',
                'vllm:gpu_cache_usage_perc{model_name="m"} 0.4',
                'vllm:gpu_prefix_cache_hits_total{model_name="m"} 7',
                'vllm:gpu_prefix_cache_queries_total{model_name="m"} 9')
    assert parse(old) == Figures(1.0, 2.0, 0.4, 7.0, 9.0)
    both = old + _body('vllm:kv_cache_usage_perc{model_name="m"} 0.4')
    assert parse(both).kv_usage == 0.4


def test_unlabelled_samples_timestamps_crlf_and_a_brace_in_a_label_value():
    body = (b'vllm:num_requests_running 4 1700000000000\r\n'
            b'vllm:num_requests_waiting{model_name="odd} name"} 6\r\n')
    assert (parse(body).running, parse(body).waiting) == (4.0, 6.0)


@pytest.mark.parametrize("body", [
    b"",
    b"<html><body>502 Bad Gateway</body></html>",
    b"\x00\xff" * 5000,
    _body('vllm:num_requests_running{model_name="m"} 1'),  # no waiting
    _body("# HELP vllm:num_requests_running x", "# TYPE vllm:num_requests_waiting gauge"),
    _body('vllm:num_requests_running{model_name="m"} NaN', 'vllm:num_requests_waiting{model_name="m"} 1'),
    _body('vllm:num_requests_running{model_name="m"} +Inf', 'vllm:num_requests_waiting 1'),
    _body('vllm:num_requests_running{model_name="m"} -1', 'vllm:num_requests_waiting 1'),
    _body('vllm:num_requests_running{model_name="m"} many', 'vllm:num_requests_waiting 1'),
    _body('vllm:num_requests_running{model_name="m" 1', 'vllm:num_requests_waiting 1'),
    _body('vllm:num_requests_running', 'vllm:num_requests_waiting 1'),
    _body('vllm:num_requests_running 1 2 3', 'vllm:num_requests_waiting 1'),
])
def test_garbage_is_refused_whole(body):
    with pytest.raises(NotVLLMMetrics):
        parse(body)


def test_a_bad_sample_is_skipped_and_its_good_neighbours_kept():
    body = _body('vllm:num_requests_running{engine="0"} NaN', 'vllm:num_requests_running{engine="1"} 2',
                 'vllm:num_requests_waiting 0', 'vllm:kv_cache_usage_perc{engine="0"} nope')
    assert parse(body) == Figures(2.0, 0.0, None, None, None)
