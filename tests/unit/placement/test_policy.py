"""Prefix and session placement: the same key ranks the same backend first everywhere, load
bounds it, and a backend leaving moves only its own keys."""

import random
import subprocess
import sys
from collections import Counter

from llmgw.balancer import LeastInFlightBalancer
from llmgw.placement.policy import Placement, PlacementPolicy, choose, rank_score
from llmgw.routing import Backend, Pool

PREFIX = PlacementPolicy(name="prefix")


def _pool(n: int, policy: PlacementPolicy = PREFIX, in_flight=None) -> Pool:
    loads = in_flight or [0] * n
    return Pool("chat", tuple(Backend(f"chat{i}", f"http://h{i}", 64, in_flight=loads[i])
                              for i in range(n)), policy)


def _placed(key: int | None, tokens: int = 100, tail: int = 10) -> Placement:
    return Placement(key, tokens, tail)


def _keys(n: int) -> list[int]:
    rng = random.Random(5)
    return [rng.getrandbits(64) for _ in range(n)]


def test_keys_spread_over_the_backends_and_stay_put():
    pool, balancer = _pool(4), LeastInFlightBalancer()
    first = [balancer.pick(pool, placement=_placed(k)).name for k in _keys(4000)]
    assert first == [balancer.pick(pool, placement=_placed(k)).name for k in _keys(4000)]
    counts = Counter(first)
    assert len(counts) == 4 and min(counts.values()) > 850, counts


def test_a_backend_leaving_moves_only_the_keys_it_held():
    pool = _pool(4)
    before = {k: LeastInFlightBalancer().pick(pool, placement=_placed(k)).name for k in _keys(2000)}
    without = LeastInFlightBalancer(eligible=lambda b: b.name != "chat2")
    after = {k: without.pick(pool, placement=_placed(k)).name for k in before}
    moved = {k for k in before if before[k] != after[k]}
    assert moved == {k for k in before if before[k] == "chat2"}


def test_the_ranking_is_the_same_in_another_process():
    """Python's own hash() differs per process (PYTHONHASHSEED); the ranking must not."""
    here = ",".join(LeastInFlightBalancer().pick(_pool(4), placement=_placed(k)).name for k in _keys(50))
    script = ("import random; from llmgw.placement.policy import PlacementPolicy; "
              "from llmgw.routing import Backend, Pool; "
              "from llmgw.balancer import LeastInFlightBalancer as B; from llmgw.placement.policy import Placement; "
              "p = Pool('chat', tuple(Backend(f'chat{i}', f'http://h{i}', 64) for i in range(4)), "
              "PlacementPolicy(name='prefix')); r = random.Random(5); "
              "print(','.join(B().pick(p, placement=Placement(r.getrandbits(64), 100, 10)).name for _ in range(50)))")
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": "12345",
                                "PYTHONPATH": ":".join(p for p in sys.path if p)},
                           check=True).stdout.strip()
    assert other == here


def test_a_busy_first_choice_spills_to_the_next_ranked_backend():
    policy = PlacementPolicy(name="prefix", balance_abs=2, balance_rel=1.5)
    key = _keys(1)[0]
    idle = _pool(4, policy)
    top = LeastInFlightBalancer().pick(idle, placement=_placed(key)).name
    loads = [10 if f"chat{i}" == top else 0 for i in range(4)]
    busy = _pool(4, policy, loads)
    chosen, reason = choose(list(busy.backends), key, policy, lambda b: b.in_flight)
    assert chosen.name != top and reason == "spilled"
    # the spill goes to the same second choice every time: the hot key's second home
    assert {choose(list(busy.backends), key, policy, lambda b: b.in_flight)[0].name
            for _ in range(5)} == {chosen.name}


def test_within_the_bound_the_key_keeps_its_backend():
    policy = PlacementPolicy(name="prefix", balance_abs=8, balance_rel=1.5)
    key = _keys(1)[0]
    top = LeastInFlightBalancer().pick(_pool(4, policy), placement=_placed(key)).name
    loads = [7 if f"chat{i}" == top else 0 for i in range(4)]
    chosen, reason = choose(list(_pool(4, policy, loads).backends), key, policy,
                            lambda b: b.in_flight)
    assert chosen.name == top and reason == "affinity"


def test_keys_from_bodies_and_headers():
    body = {"messages": [{"role": "system", "content": "S" * 100},
                         {"role": "user", "content": "question one"}]}
    later = {"messages": body["messages"] + [{"role": "assistant", "content": "a"},
                                             {"role": "user", "content": "two"}]}
    # a conversation's own first turn (short preamble) is placed by load; its later turns
    # are bound, and to the key its first turn would have had
    assert PREFIX.key(body, {}) is None and PREFIX.key(later, {}) is not None
    eager = PlacementPolicy(name="prefix", bind_first_turns=True)
    assert eager.key(body, {}) == PREFIX.key(later, {})
    # a preamble that fills the head (a shared document) binds the first turn too
    doc = {"messages": [{"role": "system", "content": "D" * 3000},
                        {"role": "user", "content": "question one"}]}
    doc_later = {"messages": doc["messages"] + later["messages"][2:]}
    assert PREFIX.key(doc, {}) == PREFIX.key(doc_later, {}) is not None
    tiny = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"},
                         {"role": "user", "content": "b"}]}
    assert PREFIX.key(tiny, {}) is None  # a head under min_prefix_bytes: by load
    assert PlacementPolicy().key(body, {}) is None  # least_load binds nothing
    session = PlacementPolicy(name="session")
    assert session.key({}, {"x-session-id": "abc"}) == session.key({"user": "abc"}, {})
    assert session.key({"user": 7}, {}) is None and session.key({}, {}) is None


def test_random_policy_spreads_and_keyless_prefix_requests_go_by_load():
    rnd, balancer = _pool(3, PlacementPolicy(name="random")), LeastInFlightBalancer(
        rng=random.Random(2))
    counts = Counter(balancer.pick(rnd).name for _ in range(600))
    assert len(counts) == 3 and min(counts.values()) > 150
    keyless = _pool(3, PREFIX, [4, 0, 2])
    assert LeastInFlightBalancer().pick(keyless, placement=_placed(None)).name == "chat1"


def test_a_hot_key_spreads_over_the_backends_it_spilled_to_and_stays_there():
    """Once spilled, the second backend holds the prefix too: the key goes to the less loaded
    of its holders, and never to a backend that has not seen it while a holder is in bound."""
    policy = PlacementPolicy(name="prefix", balance_abs=2, balance_rel=1.0)
    key = _keys(1)[0]
    pool = _pool(4, policy)
    balancer = LeastInFlightBalancer(clock=lambda: 0.0)
    sent = []
    for _ in range(40):  # a hot key whose requests all stay in flight
        backend = balancer.pick(pool, placement=_placed(key))
        balancer.take(backend, pool, _placed(key))
        sent.append(backend.name)
    loads = sorted(b.in_flight for b in pool.backends)
    assert loads[-1] - loads[0] <= 3, loads  # spread by load, not piled on the first choice
    order = list(dict.fromkeys(sent))  # the order in which backends first got the key
    ranking = sorted(pool.backends, key=lambda b: -rank_score(key, b))
    assert order == [b.name for b in ranking]  # each spill went to the next ranked backend


def test_a_learned_holder_past_the_bound_is_not_used():
    policy = PlacementPolicy(name="prefix", balance_abs=2, balance_rel=1.0)
    key = _keys(1)[0]
    ranking = [b.name for b in sorted(_pool(4).backends, key=lambda b: -rank_score(key, b))]
    loads = {ranking[0]: 9, ranking[3]: 9, ranking[1]: 0, ranking[2]: 0}
    pool = _pool(4, policy, [loads[f"chat{i}"] for i in range(4)])
    chosen, reason = choose(list(pool.backends), key, policy, lambda b: b.in_flight,
                            held={ranking[3]})
    assert (chosen.name, reason) == (ranking[1], "spilled")
    chosen, reason = choose(list(pool.backends), key, policy, lambda b: b.in_flight,
                            held={ranking[2], ranking[3]})
    assert (chosen.name, reason) == (ranking[2], "learned")
