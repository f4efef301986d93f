"""Least-in-flight balancing with random tie-breaks."""

import random
from collections import Counter

from llmgw.balancer import LeastInFlightBalancer
from llmgw.placement.policy import Placement, PlacementPolicy
from llmgw.routing import Backend, Pool


def _pool(*loads):
    return Pool("p", tuple(Backend(f"b{i}", f"http://h{i}", 8, in_flight=n) for i, n in enumerate(loads)))


def test_picks_the_backend_with_fewest_in_flight():
    assert LeastInFlightBalancer().pick(_pool(3, 1, 2)).name == "b1"


def test_ties_are_broken_at_random_and_both_get_traffic():
    balancer = LeastInFlightBalancer(rng=random.Random(7))
    pool = _pool(0, 0)
    counts = Counter(balancer.pick(pool).name for _ in range(1000))
    assert set(counts) == {"b0", "b1"} and min(counts.values()) > 400


def test_seeded_rng_makes_choices_repeatable():
    picks = [[LeastInFlightBalancer(rng=random.Random(1)).pick(_pool(0, 0, 0)).name for _ in range(5)]
             for _ in range(2)]
    assert picks[0] == picks[1]


def test_take_counts_until_release_and_release_tells_the_queue():
    pool = _pool(0, 0)
    b = pool.backends[0]
    freed = []
    balancer = LeastInFlightBalancer(on_release=freed.append)
    balancer.take(b)
    assert b.in_flight == 1 and balancer.pick(pool).name == "b1"
    balancer.release(b)
    assert b.in_flight == 0 and freed == [b]


def test_ineligible_and_excluded_backends_are_skipped():
    pool = _pool(0, 5, 9)
    balancer = LeastInFlightBalancer(eligible=lambda b: b.name != "b0")
    assert balancer.pick(pool).name == "b1"
    assert balancer.pick(pool, exclude=frozenset({"b1"})).name == "b2"
    assert balancer.pick(pool, exclude=frozenset({"b1", "b2"})) is None


def _decisions(reported: dict[str, float | None], rng_seed: int = 3):
    seen: list[tuple[str, str]] = []
    balancer = LeastInFlightBalancer(rng=random.Random(rng_seed), reported=reported.get,
                                     on_decision=lambda pool, reason: seen.append((pool.name, reason)))
    return balancer, seen


def test_a_tie_goes_to_the_backend_reporting_the_least_load():
    balancer, seen = _decisions({"b0": 9, "b1": 2, "b2": 4})
    assert {balancer.pick(_pool(1, 1, 1)).name for _ in range(50)} == {"b1"}
    assert seen[-1] == ("p", "backend_load")


def test_own_in_flight_comes_before_the_reported_load():
    balancer, seen = _decisions({"b0": 0, "b1": 50})
    assert balancer.pick(_pool(2, 1)).name == "b1"
    assert seen == [("p", "least_in_flight")]


def test_without_fresh_figures_for_every_tied_backend_the_tie_is_random_as_before():
    picks = {}
    for reported in ({}, {"b0": 0}, {"b0": 0, "b1": None}):
        balancer, seen = _decisions(reported, rng_seed=1)
        picks[str(reported)] = [balancer.pick(_pool(0, 0, 0)).name for _ in range(5)]
        assert set(seen) == {("p", "fallback_own_counts")}
    plain_balancer = LeastInFlightBalancer(rng=random.Random(1))
    plain = [plain_balancer.pick(_pool(0, 0, 0)).name for _ in range(5)]
    assert len(set(plain)) > 1
    assert all(p == plain for p in picks.values())  # the very choices of a balancer without a view


def test_equal_reported_loads_are_still_shared_at_random():
    balancer, _ = _decisions({"b0": 3, "b1": 3, "b2": 8})
    counts = Counter(balancer.pick(_pool(0, 0, 0)).name for _ in range(400))
    assert set(counts) == {"b0", "b1"} and min(counts.values()) > 150


def _prefix_pool(n: int) -> Pool:
    return Pool("chat", tuple(Backend(f"c{i}", f"http://c{i}", 64) for i in range(n)),
                PlacementPolicy(name="prefix", slot_tokens=64))


def test_unbound_requests_of_a_prefix_pool_go_to_the_least_prefill_work():
    pool, balancer = _prefix_pool(3), LeastInFlightBalancer()
    c0, c1, c2 = pool.backends
    c0.in_flight, c0.prefill_pending = 1, 4000   # one long prompt still prefilling
    c1.in_flight, c1.prefill_pending = 3, 30     # three cheap ones
    c2.in_flight, c2.prefill_pending = 2, 2000
    assert balancer.pick(pool, placement=Placement(None, 3000, 50)) is c1
    c1.in_flight = 40                             # ...unless it decodes many: 64 tokens a slot
    assert balancer.pick(pool, placement=Placement(None, 3000, 50)) is c2


def test_a_request_weighs_its_whole_prompt_where_its_prefix_is_not_held():
    pool, balancer = _prefix_pool(4), LeastInFlightBalancer()
    key = 12345
    first = balancer.pick(pool, placement=Placement(key, 3000, 50))
    assert balancer.take(first, pool, Placement(key, 3000, 50)) == 50  # its first choice holds it
    other = next(b for b in pool.backends if b is not first)
    assert balancer.take(other, pool, Placement(key, 3000, 50)) == 3000  # a spill: all of it
    assert balancer.take(other, pool, Placement(key, 3000, 50)) == 50    # now held there too
    assert balancer.take(other, pool, Placement(None, 3000, 50)) == 3000  # unbound: all of it
    assert other.prefill_pending == 6050 and other.in_flight == 3
    balancer.prefilled(other, 3000)  # a stream's first event
    balancer.release(other, 0)
    balancer.release(other, 50)
    balancer.release(other, 3000)  # a non-streamed answer gives it back at the end
    assert other.prefill_pending == 0 and other.in_flight == 0
    # least_load and random pools place by counts: no estimate taken
    assert balancer.take(first) == 0 and first.prefill_pending == 50
