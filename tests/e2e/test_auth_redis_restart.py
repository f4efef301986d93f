"""Known API keys keep working through Redis restarts under the fail-open policy."""

from __future__ import annotations

import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import redis

from stacks import TestStack

OPEN = {"rps": 10_000, "burst": 10_000, "rpm_limit": 1_000_000, "tpm_limit": 10**9,
        "max_concurrent": 10_000, "max_output_tokens": 64}
BODY = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def _outcome(stack: TestStack, key: str) -> str:
    """One request on its own connection (so a burst spreads over the workers)."""
    try:
        resp = httpx.post(stack.base_url + "/v1/chat/completions", json=BODY, timeout=10,
                          headers={"Authorization": f"Bearer {key}"})
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return "200" if resp.status_code == 200 else f"{resp.status_code} {resp.json()['error']['code']}"


def _burst(stack: TestStack, key: str, n: int = 40) -> Counter:
    with ThreadPoolExecutor(8) as pool:
        return Counter(pool.map(lambda _: _outcome(stack, key), range(n)))


def _stop_redis(stack: TestStack) -> None:
    stack.redis.popen.send_signal(signal.SIGTERM)
    stack.redis.popen.wait()


def _fail_open_stack(tmp_path) -> TestStack:
    return TestStack("sim", tmp_path, workers=2, sim_args=("--ttft-ms", "0", "--itl-ms", "0"),
                     env={"LIMITER_FAILURE_POLICY": "open", "REDIS_TIMEOUT_SECS": "0.2"}).start()


def test_known_keys_survive_a_resubscribe_then_an_outage(tmp_path):
    """Redis restarts (every worker resubscribes to the invalidation channel), the key is not
    used meanwhile, then Redis goes down again: each worker still knows the key."""
    stack = _fail_open_stack(tmp_path)
    try:
        key = stack.create_org(**OPEN)["api_key"]
        assert _burst(stack, key) == Counter({"200": 40})  # every worker has seen the key
        stack.restart_redis()
        time.sleep(1.5)  # the listeners retry every 0.5 s: all have resubscribed by now
        _stop_redis(stack)
        during = _burst(stack, key)
        stack.restart_redis()
        time.sleep(1)
        after = _burst(stack, key)
        assert during["200"] > 0 and not [o for o in during if "state_unavailable" in o], during
        assert after == Counter({"200": 40}), after
    finally:
        stack.stop()


def test_an_invalidation_forgets_only_its_organisation(tmp_path):
    """One organisation's change (a revocation, an update of another) leaves every other
    known key usable in the next outage, and the revoked key stays refused through it."""
    stack = _fail_open_stack(tmp_path)
    try:
        kept, revoked, other = (stack.create_org(**OPEN) for _ in range(3))
        for org in (kept, revoked):
            assert _burst(stack, org["api_key"]) == Counter({"200": 40})
        with stack.admin() as admin:
            admin.delete(f"/admin/keys/{revoked['key']['key_id']}").raise_for_status()
            admin.patch(f"/admin/orgs/{other['org']['id']}", json={"rps": 500}).raise_for_status()
        time.sleep(0.5)  # the messages and the revoked org's refetch reach every worker
        _stop_redis(stack)
        assert _burst(stack, kept["api_key"]) == Counter({"200": 40})
        assert _burst(stack, revoked["api_key"]) == Counter({"401 invalid_api_key": 40})
    finally:
        stack.stop()


def test_a_revocation_missed_while_unsubscribed_is_learnt_on_resubscribing(tmp_path):
    """The revocation is written without its message (as if published while the workers'
    subscriptions were down); the workers resubscribe, ask Redis about the keys they know,
    and refuse the key in the next outage instead of serving it from their last answer."""
    stack = _fail_open_stack(tmp_path)
    try:
        org = stack.create_org(**OPEN)
        assert _burst(stack, org["api_key"]) == Counter({"200": 40})
        r = redis.Redis.from_url(stack.redis_url)
        name = f"llmgw:key:{{{org['org']['id']}}}:{org['key']['key_id']}"
        r.set(name, orjson.dumps({**orjson.loads(r.get(name)), "status": "revoked"}))
        r.client_kill_filter(_type="pubsub")
        time.sleep(1.5)  # resubscribed (retry every 0.5 s) and revalidated
        _stop_redis(stack)
        assert _burst(stack, org["api_key"]) == Counter({"401 invalid_api_key": 40})
    finally:
        stack.stop()
