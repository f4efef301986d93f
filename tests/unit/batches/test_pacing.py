"""The runner's pacing: a window of lines per model learnt from the gateway's answers, one
probe at a time beyond it, held back after refusals for a while that doubles."""

from __future__ import annotations

import random

from llmgw.batches.pacing import BACKOFF_SECS, PROBE_GAP_SECS, Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pacer() -> tuple[Pacer, Clock]:
    clock = Clock()
    return Pacer(clock, random.Random(1)), clock


def test_probes_go_one_at_a_time_and_widen_the_window_when_let_in():
    pacer, clock = _pacer()
    assert pacer.blocked() == []
    assert pacer.start("m") is True          # nothing known: the first line is a probe
    assert pacer.blocked() == ["m"]          # the next waits for the probe's answer
    clock.now += PROBE_GAP_SECS
    assert pacer.blocked() == []
    assert pacer.start("m") is True          # not refused meanwhile: the window is 2 now
    assert pacer.start("other") is True      # each model has its own window
    assert sorted(pacer.blocked()) == ["m", "other"]
    pacer.end("m", probe=True, refused=False, succeeded=True)
    assert pacer.blocked() == ["other"]      # a line back makes room for the next one
    assert pacer.start("m") is False         # ... which is no probe: the window holds 2


def test_a_refusal_shrinks_the_window_to_what_runs_and_holds_probes_back_doubling():
    pacer, clock = _pacer()
    for _ in range(3):
        pacer.start("m")
        clock.now += PROBE_GAP_SECS
    holds = []
    for _ in range(6):
        probe = pacer.start("m")
        assert probe is True
        pacer.end("m", probe=True, refused=True, succeeded=False)
        assert pacer.blocked() == ["m"]       # 3 run, the window is 3: full
        start = clock.now
        while "m" in pacer.blocked():
            clock.now += 0.001
        holds.append(clock.now - start)
    assert BACKOFF_SECS[0] * 0.5 <= holds[0] <= BACKOFF_SECS[0] + 0.002
    assert holds[-1] >= BACKOFF_SECS[1] * 0.5 and max(holds) <= BACKOFF_SECS[1] + 0.002
    assert holds[3] > holds[0] * 2           # doubling, with jitter
    pacer.end("m", probe=False, refused=False, succeeded=True)
    assert pacer.start("m") is False         # a running line's slot is taken again at once


def test_a_probe_that_succeeds_resets_the_hold_and_other_failures_leave_the_window():
    pacer, clock = _pacer()
    pacer.start("m")
    pacer.end("m", probe=True, refused=True, succeeded=False)
    clock.now += 1
    assert pacer.start("m") is True
    pacer.end("m", probe=True, refused=False, succeeded=True)  # forgets: nothing runs, no hold
    assert pacer.blocked() == []
    assert pacer.start("m") is True
    clock.now += PROBE_GAP_SECS
    pacer.start("m")
    # a transient failure (the gateway away, a quota pause) is no verdict on room
    pacer.end("m", probe=False, refused=False, succeeded=False)
    assert pacer.blocked() == [] and pacer.start("m") is False  # the window stays 2
    assert pacer.blocked() == ["m"]
