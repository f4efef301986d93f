"""The Redis key layout of batch jobs, in one place.

The scheduler's keys share one hash tag, `{batch}`: the claim and done scripts touch several
jobs' keys at once (fairness across organisations needs every runnable job in view), so they
must live in one Redis Cluster slot. Batch scheduling is far off the hot path: one slot is
enough. Only the bill-once bitmap lives in its organisation's slot, because settle.lua, which
runs on the organisation's keys, reads it.

- `job:<org>:<id>`   hash: the job's fields and counters (jobs.py)
- `idx:<org>`        sorted set, all score 0: an organisation's batch ids in creation order
- `open`             sorted set `<org>:<id>` by expiry (ms): every job not yet terminal
- `validate`         sorted set `<org>:<id>` by lease deadline: jobs waiting for validation
- `runnable`         sorted set `<org>:<id>` by priority: jobs with lines not yet handed out
- `leases`           sorted set `<org>:<id>:<line>` by deadline: lines being run, or given
                     back to be run again after their deadline
- `att:<org>:<id>`   hash line -> attempt: the attempt that holds each leased line
- `done:<org>:<id>`  bitmap: lines whose result is durably spooled
- `win:<org>:<id>`   hash line -> attempt, for lines whose result came from a retry
- `orgload`          hash org -> lines leased (fairness across organisations)
- `pause:<org>`      set while an organisation's quota is spent (expires at its reset)
- `fin`              sorted set `<org>:<id>` by deadline: a finaliser's lease
- `runners`          hash runner id -> JSON heartbeat (/health/detailed)
- `llmgw:batchbilled:{<org>}:<id>` bitmap: lines already billed (settle.lua)
"""

from __future__ import annotations

PREFIX = "llmgw:{batch}:"
OPEN = PREFIX + "open"
VALIDATE = PREFIX + "validate"
RUNNABLE = PREFIX + "runnable"
LEASES = PREFIX + "leases"
ORGLOAD = PREFIX + "orgload"
FINALISING = PREFIX + "fin"
RUNNERS = PREFIX + "runners"


def ref(org_id: str, batch_id: str) -> str:
    """A job's name in the shared sets."""
    return f"{org_id}:{batch_id}"


def split_ref(member: str) -> tuple[str, str]:
    org_id, batch_id = member.split(":", 1)
    return org_id, batch_id


def job(org_id: str, batch_id: str) -> str:
    return f"{PREFIX}job:{org_id}:{batch_id}"


def index(org_id: str) -> str:
    return f"{PREFIX}idx:{org_id}"


def attempts(org_id: str, batch_id: str) -> str:
    return f"{PREFIX}att:{org_id}:{batch_id}"


def done(org_id: str, batch_id: str) -> str:
    return f"{PREFIX}done:{org_id}:{batch_id}"


def winners(org_id: str, batch_id: str) -> str:
    return f"{PREFIX}win:{org_id}:{batch_id}"


def paused(org_id: str) -> str:
    return f"{PREFIX}pause:{org_id}"


def billed(org_id: str, batch_id: str) -> str:
    return "llmgw:batchbilled:{" + org_id + "}:" + batch_id
