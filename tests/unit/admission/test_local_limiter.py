"""The per-worker stand-in limiter while Redis is unreachable: this worker's share of every
rate limit, driven by an injected clock."""

from llmgw.admission.local_limiter import LocalLimiter
from llmgw.tenancy.limits import Limits


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_local_limiter_enforces_this_workers_share():
    clock = Clock()
    local = LocalLimiter(share=4, clock=clock)  # 2 workers x 2 replicas
    limits = Limits(rpm_limit=40)
    admitted = [local.admit("o", limits, 1) is None for _ in range(15)]
    assert admitted.count(True) == 10  # 40 / 4
    code, wait = local.admit("o", limits, 1)
    assert code == "limit_rpm" and 59 < wait <= 60
    clock.now += 60.1
    assert local.admit("o", limits, 1) is None


def test_local_limiter_concurrency_is_released():
    local = LocalLimiter(share=1, clock=Clock())
    limits = Limits(max_concurrent=1)
    assert local.admit("o", limits, 1) is None
    assert local.admit("o", limits, 1)[0] == "limit_concurrent"
    local.release("o")
    assert local.admit("o", limits, 1) is None


def test_local_limiter_rps_bucket_refills():
    clock = Clock()
    local = LocalLimiter(share=1, clock=clock)
    limits = Limits(rps=2, burst=2)
    assert [local.admit("o", limits, 1) is None for _ in range(3)] == [True, True, False]
    clock.now += 0.5
    assert local.admit("o", limits, 1) is None


def test_local_limiter_tokens_per_minute_count_the_reserve_and_slide():
    clock = Clock()
    local = LocalLimiter(share=2, clock=clock)
    limits = Limits(tpm_limit=1000)  # 500 for this worker
    assert local.admit("o", limits, 300) is None
    clock.now += 30
    assert local.admit("o", limits, 200) is None
    code, wait = local.admit("o", limits, 1)
    assert code == "limit_tpm" and wait == 30  # until the first reserve leaves the window
    clock.now += 30
    assert local.admit("o", limits, 300) is None


def test_local_limiter_a_reserve_over_the_whole_share_waits_a_window():
    local = LocalLimiter(share=1, clock=Clock())
    assert local.admit("o", Limits(tpm_limit=100), 101) == ("limit_tpm", 60.0)


def test_local_limiter_keeps_organisations_apart_and_a_share_never_below_one():
    local = LocalLimiter(share=10, clock=Clock())
    limits = Limits(rpm_limit=3)  # 0.3 per worker: at least one request still goes
    assert local.admit("a", limits, 1) is None
    assert local.admit("a", limits, 1)[0] == "limit_rpm"
    assert local.admit("b", limits, 1) is None


def test_local_limiter_admits_anything_without_limits():
    local = LocalLimiter(share=0, clock=Clock())  # a share of 0 counts as 1
    assert all(local.admit("o", Limits(), 10**9) is None for _ in range(1000))


def test_local_limiter_checks_concurrency_first_and_a_refusal_takes_nothing():
    clock = Clock()
    local = LocalLimiter(share=1, clock=clock)
    limits = Limits(max_concurrent=1, rpm_limit=2)
    assert local.admit("o", limits, 1) is None
    assert local.admit("o", limits, 1) == ("limit_concurrent", 1.0)
    local.release("o")
    assert local.admit("o", limits, 1) is None  # the refused one used no rpm
