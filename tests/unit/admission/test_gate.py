"""The gate's answer when Redis fails: a long queue (RedisBusy) is refused with 503 and never
admitted locally, whatever the policy; only an unreachable Redis opens the local limiter."""

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from llmgw.admission.gate import AdmissionGate, admission_ids
from llmgw.admission.local_limiter import LocalLimiter
from llmgw.admission.redis_channel import RedisBusy
from llmgw.errors import LimiterBusy
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
