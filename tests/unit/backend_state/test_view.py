"""The state view: freshness and staleness, the fallback to the worker's own counts, and the
prefix cache hit ratio from counter deltas."""

from __future__ import annotations

from llmgw.backend_state import Figures, StateView
from llmgw.routing import Backend


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _view(clock: Clock, stale_after: float = 3.0) -> StateView:
    return StateView(["a", "b"], stale_after=stale_after, clock=clock)


def test_nothing_is_fresh_before_the_first_scrape_and_age_counts_from_the_start():
    clock = Clock()
    view = _view(clock)
    clock.now += 5
    assert view.fresh("a") is None and view.reported_load("a") is None
    assert view.age("a") == 5.0
    assert view.snapshot("a")["running"] is None and view.snapshot("a")["fresh"] is False


def test_figures_are_fresh_until_stale_after_then_ignored():
    clock = Clock()
    view = _view(clock)
    view.record("a", Figures(2, 3, 0.5, None, None))
    assert view.fresh("a").kv_usage == 0.5 and view.reported_load("a") == 5
    clock.now += 3.0
    assert view.reported_load("a") == 5 and view.age("a") == 3.0
    clock.now += 0.01
    assert view.fresh("a") is None and view.reported_load("a") is None
    assert view.state("a").running == 2  # still there to show, not to act on


def test_a_failed_scrape_only_ages_the_figures():
    clock = Clock()
    view = _view(clock)
    view.record("a", Figures(1, 1, 0.1, 4, 8))
    clock.now += 1
    view.failed("a", "no answer within 1 s")
    view.failed("a", "no answer within 1 s")
    state = view.state("a")
    assert (state.running, state.waiting, state.kv_usage, state.scraped_at) == (1, 1, 0.1, 100.0)
    assert (state.error, state.failures) == ("no answer within 1 s", 2)
    assert view.reported_load("a") == 2  # within stale_after: still acted on
    view.record("a", Figures(0, 0, 0.0, 4, 8))
    assert (view.state("a").error, view.state("a").failures) == (None, 0)


def test_load_falls_back_to_own_counts_and_never_reports_less_than_them():
    clock = Clock()
    view = _view(clock)
    backend = Backend("a", "http://a", 8, in_flight=3)
    assert view.load(backend) == 3  # no figures: the worker's own count
    view.record("a", Figures(5, 4, 0.2, None, None))
    assert view.load(backend) == 9  # the backend's, which counts every worker's requests
    view.record("a", Figures(1, 0, 0.2, None, None))
    assert view.load(backend) == 3  # lagging figures cannot hide this worker's own requests
    clock.now += 10
    assert view.load(backend) == 3


def test_an_off_view_is_never_fresh():
    clock = Clock()
    view = _view(clock, stale_after=0)
    view.record("a", Figures(1, 1, 0.0, None, None))
    clock.now += 0.001
    assert not view.enabled and view.fresh("a") is None


def test_prefix_hit_ratio_from_counter_deltas():
    view = _view(Clock())
    view.record("a", Figures(0, 0, 0, 100, 1000))
    assert view.state("a").prefix_hit_ratio is None  # one reading: no interval yet
    view.record("a", Figures(0, 0, 0, 150, 1100))
    assert view.state("a").prefix_hit_ratio == 0.5
    view.record("a", Figures(0, 0, 0, 150, 1100))
    assert view.state("a").prefix_hit_ratio == 0.5  # no queries since: the recent ratio stands
    view.record("a", Figures(0, 0, 0, 0, 10))  # counters went back: a restarted backend
    assert view.state("a").prefix_hit_ratio == 0.5
    view.record("a", Figures(0, 0, 0, 9, 20))
    assert view.state("a").prefix_hit_ratio == 0.9  # from the new baseline
    view.record("a", Figures(0, 0, 0, None, None))
    assert view.state("a").prefix_hit_ratio is None
    assert view.snapshot("b")["prefix_hit_ratio"] is None  # each backend its own
