"""The admission gate: its answer when Redis fails (a long queue, RedisBusy, is refused with
503 and never admitted locally; only an unreachable Redis opens the local limiter), the room
its verdicts leave for early starts, its quota gauges, and the renewal of its leases."""

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from llmgw.admission.gate import (QUOTA_GAUGE_STEP, ROOM_FRESH_SECS, ROOM_MIN, ROOM_SHARE,
                                  AdmissionGate, admission_ids)
from llmgw.admission.local_limiter import LocalLimiter
from llmgw.admission.redis_channel import RedisBusy
from llmgw.admission.redis_limiter import Verdict
from llmgw.errors import LimiterBusy, RateLimited
from llmgw.observability.metrics import Metrics
from llmgw.tenancy.auth import Principal
from llmgw.tenancy.limits import Limits


class FailingLimiter:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def admit(self, admission_id, scopes, reserve, tz, final=None, lane=None):
        raise self.error


class CountingLocal(LocalLimiter):
    def __init__(self) -> None:
        super().__init__(share=4, clock=lambda: 0.0)
        self.asked = 0

    def admit(self, org_id, limits, reserve):
        self.asked += 1
        return super().admit(org_id, limits, reserve)


def _gate(error: Exception) -> tuple[AdmissionGate, CountingLocal]:
    local = CountingLocal()
    gate = AdmissionGate(FailingLimiter(error), local, fail_open=True, lease_secs=30,
                         clock=lambda: 0.0, metrics=Metrics(tenant_labels=False),
                         new_id=admission_ids("t"))
    return gate, local


def _admit(gate: AdmissionGate):
    who = Principal("org1", "Org", "k1", frozenset(), Limits(rpm_limit=100),
                    Limits(rpm_limit=100), Limits())
    return asyncio.run(gate.admit(who, 10, "rid"))


def test_a_queue_too_long_is_refused_not_admitted_locally():
    gate, local = _gate(RedisBusy("queued too long"))
    with pytest.raises(LimiterBusy) as refused:
        _admit(gate)
    assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
    assert local.asked == 0 and not gate.degraded


@pytest.mark.parametrize("error", [RedisTimeoutError("silent"), RedisConnectionError("refused")])
def test_an_unreachable_redis_opens_the_local_share(error):
    gate, local = _gate(error)
    ticket = _admit(gate)
    assert ticket.reservation is None and local.asked == 1 and gate.degraded


# ---- room for early starts (admission/overlap.py), quota gauges, lease renewal ----

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Limiter:
    """Answers each admission with the next verdict queued by the test."""

    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []

    async def admit(self, request_id, scopes, reserve, tz, final=None, lane=None):
        return self.verdicts.pop(0)


def _verdict(admitted: bool, room: int) -> Verdict:
    return Verdict(admitted, "" if admitted else "limit_rpm", 0 if admitted else 1000,
                   (0, -1, 0), (0, -1, 0), 0, 0, (0, 0, 0), room)


def _principal(key_id: str = "k1") -> Principal:
    return Principal("org1", "Org", key_id, frozenset(), Limits(), Limits(), Limits())


def _room_gate(clock: Clock, metrics: Metrics | None = None) -> tuple[AdmissionGate, Limiter]:
    limiter = Limiter()
    gate = AdmissionGate(limiter, LocalLimiter(1, clock), fail_open=False, lease_secs=30,
                         clock=clock, metrics=metrics or Metrics(tenant_labels=False),
                         new_id=admission_ids("t"))
    return gate, limiter


def _admit_verdict(gate: AdmissionGate, limiter: Limiter, verdict: Verdict, principal: Principal,
           final_usage: dict | None = None):
    limiter.verdicts.append(verdict)
    return asyncio.run(gate.admit(principal, 10, "rid", final_usage))


def test_no_early_start_without_a_verdict_or_with_little_room():
    clock = Clock()
    gate, limiter = _room_gate(clock)
    who = _principal()
    assert not gate.may_start_early(who)  # nothing known about this key yet
    _admit_verdict(gate, limiter, _verdict(True, ROOM_MIN - 1), who)
    assert not gate.may_start_early(who)


def test_early_starts_use_a_share_of_the_room_until_the_next_verdict():
    clock = Clock()
    gate, limiter = _room_gate(clock)
    who = _principal()
    _admit_verdict(gate, limiter, _verdict(True, 800), who)
    starts = 0
    while gate.may_start_early(who):
        starts += 1
    assert starts == 800 // ROOM_SHARE
    assert not gate.may_start_early(_principal("another-key"))  # room is per key
    _admit_verdict(gate, limiter, _verdict(True, 800), who)  # a new verdict: a new share
    assert gate.may_start_early(who)


def test_room_goes_stale_and_a_refusal_ends_it():
    clock = Clock()
    gate, limiter = _room_gate(clock)
    who = _principal()
    _admit_verdict(gate, limiter, _verdict(True, 10_000), who)
    clock.now += ROOM_FRESH_SECS + 0.01
    assert not gate.may_start_early(who)
    _admit_verdict(gate, limiter, _verdict(True, 10_000), who)
    assert gate.may_start_early(who)
    with pytest.raises(RateLimited):
        _admit_verdict(gate, limiter, _verdict(False, 0), who)
    assert not gate.may_start_early(who)


def test_a_cache_hits_room_says_nothing_of_a_backend_call():
    clock = Clock()
    gate, limiter = _room_gate(clock)
    who = _principal()
    _admit_verdict(gate, limiter, _verdict(True, 10_000), who, final_usage={"k|m|chat|requests": 1})
    assert not gate.may_start_early(who)  # a hit skips the concurrency checks: no room known
    _admit_verdict(gate, limiter, _verdict(True, 0), who)
    _admit_verdict(gate, limiter, _verdict(True, 10_000), who, final_usage={"k|m|chat|requests": 1})
    assert not gate.may_start_early(who)  # nor does it replace a call's verdict


def test_quota_gauges_are_rewritten_only_when_a_share_moves():
    clock, metrics = Clock(), Metrics(tenant_labels=True)
    gate, limiter = _room_gate(clock, metrics)
    who = Principal("org1", "Org", "k1", frozenset(), Limits(), Limits(daily_request_limit=10_000), Limits())

    def share_after(requests_used: int) -> float:
        verdict = _verdict(True, 0)
        verdict.quota_used = (0, requests_used, 0)
        _admit_verdict(gate, limiter, verdict, who)
        return metrics.registry.get_sample_value("llmgw_quota_usage_ratio",
                                                 {"org": "org1", "quota": "daily_requests"})
    assert share_after(5000) == 0.5
    assert share_after(5001) == 0.5  # moved less than QUOTA_GAUGE_STEP: not rewritten
    moved = 5000 + int(QUOTA_GAUGE_STEP * 1.5 * 10_000)
    assert share_after(moved) == pytest.approx(moved / 10_000)



def test_a_reservation_that_outlives_the_request_cap_is_no_longer_renewed():
    """A ticket whose settlement never comes (a stream answer built but never sent) must not
    hold its concurrency lease for the worker's lifetime."""
    clock = Clock()
    limiter = Limiter()
    renewed: list[list[str]] = []

    async def renew(reservations, lease_ms=None):
        renewed.append(sorted(r.admission_id for r in reservations))
    limiter.renew = renew
    gate = AdmissionGate(limiter, LocalLimiter(1, clock), fail_open=False, lease_secs=0.03,
                         clock=clock, metrics=Metrics(tenant_labels=False), max_request_secs=60,
                         new_id=iter(["forgotten", "settled"]).__next__)

    async def main():
        for rid in ("forgotten", "settled"):
            limiter.verdicts.append(_verdict(True, 0))
            ticket = await gate.admit(_principal(), 10, rid)
        renewer = asyncio.create_task(gate.renew_forever())
        await asyncio.sleep(0.05)
        gate._limiter.settle = lambda *a: asyncio.sleep(0)
        await gate.settle(ticket, 10)  # "settled" ends normally
        clock.now += 30  # "forgotten" is still within the cap
        await asyncio.sleep(0.05)
        clock.now += 31  # past MAX_REQUEST_SECS and a lease
        await asyncio.sleep(0.05)
        renewer.cancel()
    asyncio.run(main())
    assert renewed[0] == ["forgotten", "settled"]
    assert ["forgotten"] in renewed and renewed[-1] == []
