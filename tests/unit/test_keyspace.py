"""keyspace: every key an organisation owns is in its Redis Cluster slot, and no other module of
the gateway spells a key itself."""

from __future__ import annotations

import re
from pathlib import Path

from redis.crc import key_slot

from llmgw import keyspace
from llmgw.admission.redis_limiter import batch_counter_sets, counter_sets
from llmgw.tenancy.limits import Limits

PACKAGE = Path(keyspace.__file__).resolve().parent
ORG = "org_0123456789abcdef"


def _slot(key: str) -> int:
    return key_slot(key.encode())


def test_every_key_of_an_organisation_shares_its_slot():
    narrowed = Limits(rpm_limit=5, daily_token_limit=10)
    scopes = (counter_sets(ORG, Limits(), "key1", narrowed)
              + batch_counter_sets(ORG, Limits(), "key1", narrowed))
    keys = [keyspace.org(ORG), keyspace.api_key(ORG, "key1"), keyspace.org_keys(ORG),
            keyspace.usage_prefix(ORG) + "h:1", keyspace.rejections(ORG),
            keyspace.cache_entry(ORG, "k"), keyspace.stored_response(ORG, "resp_1"),
            keyspace.file_meta(ORG, "file-1"), keyspace.file_index(ORG),
            keyspace.file_bytes(ORG), keyspace.batch_billed(ORG, "batch_1")]
    for scope in scopes:
        keys += scope.admit_keys() + [scope.quota_prefix + "d:20000", scope.quota_prefix + "m:202612"]
    assert len(scopes) == 4  # organisation and key, realtime and batch
    assert {_slot(k) for k in keys} == {_slot(keyspace.tag(ORG))}, keys
    other = "org_fedcba9876543210"
    assert _slot(keyspace.org(other)) != _slot(keyspace.org(ORG))


def test_the_batch_scheduler_keys_share_one_slot():
    keys = [keyspace.BATCH_OPEN, keyspace.BATCH_VALIDATE, keyspace.BATCH_RUNNABLE,
            keyspace.BATCH_LEASES, keyspace.BATCH_ORGLOAD, keyspace.BATCH_FINALISING,
            keyspace.BATCH_RUNNERS, keyspace.batch_job(ORG, "b"), keyspace.batch_index(ORG),
            keyspace.batch_attempts(ORG, "b"), keyspace.batch_done(ORG, "b"),
            keyspace.batch_winners(ORG, "b"), keyspace.batch_paused(ORG)]
    assert len({_slot(k) for k in keys}) == 1
    assert keyspace.split_batch_ref(keyspace.batch_ref(ORG, "batch_x")) == (ORG, "batch_x")


def test_no_other_module_spells_a_key():
    spelled = re.compile(r"""["']llmgw:[a-z{]""")
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name != "keyspace.py" and spelled.search(p.read_text())]
    assert offenders == [], offenders
