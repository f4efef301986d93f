"""The Redis key layout: every key and channel the gateway and the batch runner use, named here.

Every key an organisation owns carries its hash tag `{<org>}`, so one organisation's keys share
one Redis Cluster slot: each limiter script touches one node, and organisations spread over
the nodes. Keys that span organisations stand apart:
- indexes of every organisation and key (`orgs`, `orgnames`, `keyids`) and key digests
  (`keydigest:*`, one slot each);
- the platform-wide lease sets (`conc:global`, `conc:batch`), which only a single primary can
  keep in the same script as an organisation's keys (redis_limiter._platform_set);
- the batch scheduler's keys, all in one slot `{batch}`: its claim and done scripts see every
  runnable job at once (fairness across organisations); only the bill-once bitmap lives in
  the organisation's slot, because settle.lua reads it;
- the audit stream, the console's sessions, the invalidation channel.

Quota buckets are built inside the limiter's scripts from the quota prefix:
`<quota prefix>d:<day>` and `<quota prefix>m:<yyyymm>`; usage buckets from the usage prefix:
`<usage prefix>h:<hour>` and `<usage prefix>d:<day>`.
"""

from __future__ import annotations

ROOT = "llmgw:"


def tag(org_id: str) -> str:
    """The organisation's hash tag: its keys' Redis Cluster slot."""
    return "{" + org_id + "}"


# --- organisations and keys (tenancy/store.py) ---
ORG_NAMES = ROOT + "orgnames"   # hash name -> org id
ORGS = ROOT + "orgs"            # sorted set of org ids by creation time
KEY_IDS = ROOT + "keyids"       # hash key id -> org id
INVALIDATE_CHANNEL = ROOT + "auth-invalidate"  # pub/sub: an org's records changed


def org(org_id: str) -> str:
    return f"{ROOT}org:{tag(org_id)}"


def api_key(org_id: str, key_id: str) -> str:
    return f"{ROOT}key:{tag(org_id)}:{key_id}"


def org_keys(org_id: str) -> str:
    """Set of the organisation's key ids."""
    return f"{ROOT}orgkeys:{tag(org_id)}"


def key_digest(digest: str) -> str:
    """`<org> <key id>` of the key with this digest (the secret itself is never stored)."""
    return f"{ROOT}keydigest:{digest}"


# --- admission (admission/redis_limiter.py and its scripts) ---
GLOBAL_CONCURRENCY = ROOT + "conc:global"  # leases of every realtime request
BATCH_CONCURRENCY = ROOT + "conc:batch"    # leases of every batch line


def limit_prefixes(org_id: str, key_id: str | None = None,
                   batch: bool = False) -> tuple[str, str, str]:
    """(rate windows prefix, quota prefix, concurrency lease set) of the organisation, or of
    one of its keys whose own limits are narrower; batch lines have windows and leases apart
    and share the quotas."""
    base = f"{ROOT}rl:{tag(org_id)}:" + (f"k:{key_id}:" if key_id else "")
    quota = f"{ROOT}q:{tag(org_id)}:" + (f"k:{key_id}:" if key_id else "")
    leases = f"{ROOT}conc:{tag(org_id)}" + (f":k:{key_id}" if key_id else "")
    if batch:
        return base + "batch:", quota, leases + ":batch"
    return base, quota, leases


def usage_prefix(org_id: str) -> str:
    """Hourly and daily usage buckets of an organisation."""
    return f"{ROOT}usage:{tag(org_id)}:"


def rejections(org_id: str) -> str:
    """The organisation's latest refusals (admission/rejections.py)."""
    return f"{ROOT}rejections:{tag(org_id)}"


# --- stored data of an organisation ---
def cache_entry(org_id: str, key: str) -> str:
    return f"{ROOT}cache:{tag(org_id)}:{key}"


def stored_response(org_id: str, response_id: str) -> str:
    return f"{ROOT}resp:{tag(org_id)}:{response_id}"


def file_meta(org_id: str, file_id: str) -> str:
    return f"{ROOT}file:{tag(org_id)}:{file_id}"


def file_index(org_id: str) -> str:
    """Sorted set of the organisation's file ids in creation order."""
    return f"{ROOT}files:{tag(org_id)}"


def file_bytes(org_id: str) -> str:
    """Bytes the organisation stores in files."""
    return f"{ROOT}filebytes:{tag(org_id)}"


# --- platform-wide records ---
AUDIT_STREAM = ROOT + "audit"
CONSOLE_SESSION = ROOT + "console:session:"  # + SHA-256 of the session id


# --- batch jobs (batches/): the scheduler's slot ---
# job:<org>:<id> hash of the job's fields and counters; idx:<org> its batch ids in creation
# order; open / validate / runnable / fin: sorted sets of `<org>:<id>` by expiry, validation
# lease, priority and finaliser lease; leases: `<org>:<id>:<line>` by deadline; att / done /
# win: per job, the attempt holding each line, the lines durably spooled (bitmap), the lines
# whose result came from a retry; orgload: lines leased per organisation; pause:<org> while
# its quota is spent; runners: runner id -> JSON heartbeat.
BATCH = ROOT + "{batch}:"
BATCH_OPEN = BATCH + "open"
BATCH_VALIDATE = BATCH + "validate"
BATCH_RUNNABLE = BATCH + "runnable"
BATCH_LEASES = BATCH + "leases"
BATCH_ORGLOAD = BATCH + "orgload"
BATCH_FINALISING = BATCH + "fin"
BATCH_RUNNERS = BATCH + "runners"


def batch_ref(org_id: str, batch_id: str) -> str:
    """A job's member name in the scheduler's shared sets."""
    return f"{org_id}:{batch_id}"


def split_batch_ref(member: str) -> tuple[str, str]:
    org_id, batch_id = member.split(":", 1)
    return org_id, batch_id


def batch_job(org_id: str, batch_id: str) -> str:
    return f"{BATCH}job:{org_id}:{batch_id}"


def batch_index(org_id: str) -> str:
    return f"{BATCH}idx:{org_id}"


def batch_attempts(org_id: str, batch_id: str) -> str:
    return f"{BATCH}att:{org_id}:{batch_id}"


def batch_done(org_id: str, batch_id: str) -> str:
    return f"{BATCH}done:{org_id}:{batch_id}"


def batch_winners(org_id: str, batch_id: str) -> str:
    return f"{BATCH}win:{org_id}:{batch_id}"


def batch_paused(org_id: str) -> str:
    return f"{BATCH}pause:{org_id}"


def batch_billed(org_id: str, batch_id: str) -> str:
    """Bitmap of a job's lines already billed: in the organisation's slot (settle.lua)."""
    return f"{ROOT}batchbilled:{tag(org_id)}:{batch_id}"
