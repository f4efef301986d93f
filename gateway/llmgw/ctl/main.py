"""gatewayctl's commands: organisations, keys, the audit trail and the backends' state, over the
admin API.

Base URL and admin token come from --base-url/--admin-token or GATEWAY_URL/ADMIN_TOKEN.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone

from . import parser, render, smoke
from .client import AdminClient, AdminError

ORG_COLUMNS = ["id", "name", "status", "profile", "limits", "created_at"]
KEY_COLUMNS = ["key_id", "name", "scopes", "status", "expires_at", "limits", "created_at"]
AUDIT_COLUMNS = ["id", "ts", "action", "target", "request_id"]


def _limits(pairs: list[str]) -> dict:
    """`--set rpm_limit=240` pairs as a dict of integers."""
    out = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not value.lstrip("-").isdigit():
            raise SystemExit(f"--set expects FIELD=INTEGER, got {pair!r}")
        out[name] = int(value)
    return out


def _key_body(args) -> dict:
    body = {"limits": _limits(args.set)}
    if args.scopes:
        body["scopes"] = args.scopes.split(",")
    if args.expires_in:
        body["expires_in_secs"] = args.expires_in
    if args.name:
        body["name"] = args.name
    if args.models:
        body["models"] = _models(args.models)
    return body


def _models(listed: str) -> list[str]:
    return [m.strip() for m in listed.split(",") if m.strip()]


def _show_key(api: dict, args) -> None:
    if args.json:
        return render.as_json(api)
    render.record({"api_key": api["api_key"], **api["key"]})
    print("\nThe key is shown this once: store it now.", file=sys.stderr)


def org_create(c: AdminClient, args) -> None:
    body = {"name": args.name, **_limits(args.set)}
    if args.profile:
        body["profile"] = args.profile
    if args.timezone:
        body["timezone"] = args.timezone
    if args.models:
        body["models"] = _models(args.models)
    key = {"scopes": args.scopes.split(",")} if args.scopes else {}
    created = c.call("POST", "/admin/orgs", json={**body, "key": key})
    if args.json:
        return render.as_json(created)
    render.record({"org_id": created["org"]["id"], "name": created["org"]["name"],
                   "api_key": created["api_key"], "key_id": created["key"]["key_id"],
                   "scopes": created["key"]["scopes"]})
    print("\nThe key is shown this once: store it now.", file=sys.stderr)


def org_list(c: AdminClient, args) -> None:
    page = c.call("GET", "/admin/orgs", params={"limit": args.limit, "offset": args.offset})
    if args.json:
        return render.as_json(page)
    render.table(page["data"], ORG_COLUMNS)
    print(f"\n{len(page['data'])} of {page['total']} organisations", file=sys.stderr)


def org_show(c: AdminClient, args) -> None:
    org = c.call("GET", f"/admin/orgs/{args.org_id}")["org"]
    render.as_json(org) if args.json else render.record(org)


def org_patch(c: AdminClient, args, body: dict) -> None:
    org = c.call("PATCH", f"/admin/orgs/{args.org_id}", json=body)["org"]
    render.as_json(org) if args.json else render.record(org)


def org_set_limits(c: AdminClient, args) -> None:
    body = {**_limits(args.set), **{name: None for name in args.unset or []}}
    if args.profile:
        body["profile"] = args.profile
    if not body:
        raise SystemExit("nothing to change: give --profile, --set or --unset")
    org_patch(c, args, body)


def org_set_models(c: AdminClient, args) -> None:
    org_patch(c, args, {"models": None if args.all else _models(args.models)})


def org_delete(c: AdminClient, args) -> None:
    render.as_json(c.call("DELETE", f"/admin/orgs/{args.org_id}"))


def key_create(c: AdminClient, args) -> None:
    _show_key(c.call("POST", f"/admin/orgs/{args.org_id}/keys", json=_key_body(args)), args)


def key_list(c: AdminClient, args) -> None:
    keys = c.call("GET", f"/admin/orgs/{args.org_id}/keys")
    render.as_json(keys) if args.json else render.table(keys["data"], KEY_COLUMNS)


def key_rotate(c: AdminClient, args) -> None:
    rotated = c.call("POST", f"/admin/keys/{args.key_id}/rotate", json={"grace_secs": args.grace})
    _show_key(rotated, args)
    if not args.json:
        print(f"old key {args.key_id} stays valid until {render._cell(rotated['old_key']['expires_at'])}",
              file=sys.stderr)


def key_revoke(c: AdminClient, args) -> None:
    key = c.call("DELETE", f"/admin/keys/{args.key_id}")["key"]
    render.as_json(key) if args.json else render.record(key)


def audit(c: AdminClient, args) -> None:
    params = {"limit": args.limit, **{k: v for k, v in (("before", args.before),
              ("org_id", args.org_id), ("action", args.action)) if v}}
    page = c.call("GET", "/admin/audit", params=params)
    if args.json:
        return render.as_json(page)
    render.table(page["data"], AUDIT_COLUMNS)
    if page["next_before"]:
        print(f"\nolder: gatewayctl audit --before {page['next_before']}", file=sys.stderr)


def usage(c: AdminClient, args) -> None:
    report = c.call("GET", "/admin/usage", params={"window": args.window, "limit": args.limit})
    if args.json:
        return render.as_json(report)
    rows = [{**o, "errors": sum(o["errors"].values())} for o in report["orgs"]]
    render.table(rows, ["org_id", "name", "requests", "success", "errors", "prompt_tokens",
                        "completion_tokens"])


def key_usage(c: AdminClient, args) -> None:
    params = {"limit": args.limit, **({"bucket": args.bucket} if args.bucket else {}),
              **({"org_id": args.org_id} if args.org_id else {})}
    report = c.call("GET", "/monitor/key_usage", params=params)
    if args.json:
        return render.as_json(report)
    render.table(report["data"], ["key_id", "org_id", "requests", "success", "errors",
                                  "prompt_tokens", "completion_tokens"])


def usage_series(c: AdminClient, args) -> None:
    params = {"org_id": args.org_id, "granularity": args.granularity, "count": args.count,
              **({"key_id": args.key_id} if args.key_id else {})}
    if args.csv:
        print(c.text("/monitor/usage", params={**params, "format": "csv"}), end="")
        return
    report = c.call("GET", "/monitor/usage", params=params)
    if args.json:
        return render.as_json(report)
    render.table([{**r, "start": _utc(r["start"])} for r in report["data"]],
                 ["start", "requests", "success", "errors", "prompt_tokens", "completion_tokens"])


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M")


def overview(c: AdminClient, args) -> None:
    report = c.call("GET", "/monitor/overview")
    if args.json:
        return render.as_json(report)
    print(f"the last {report['window_secs']:.0f} s on this gateway instance", file=sys.stderr)
    render.table(report["models"], ["model", "requests_per_s", "tokens_per_s", "error_rate",
                                    "refused_rate", "latency_p50_s", "latency_p95_s",
                                    "latency_p99_s"])


def rejections(c: AdminClient, args) -> None:
    page = c.call("GET", f"/admin/orgs/{args.org_id}/rejections", params={"limit": args.limit})
    if args.json:
        return render.as_json(page)
    render.table([{**r, "at": _utc(r["at"])} for r in page["data"]],
                 ["at", "key_id", "code", "retry_after_secs", "refusals"])


def _quota_rows(q: dict) -> list[dict]:
    return [{"org_id": q["org_id"], "limit_name": name, **row} for name, row in q["limits"].items()]


def quota(c: AdminClient, args) -> None:
    if args.org_id:
        data = c.call("GET", f"/admin/quota/{args.org_id}")
        rows = _quota_rows(data)
    else:
        data = c.call("GET", "/admin/quotas", params={"limit": args.limit})
        rows = [r for q in data["data"] for r in _quota_rows(q)]
    if args.json:
        return render.as_json(data)
    render.table(rows, ["org_id", "limit_name", "limit", "used", "remaining", "resets_at"])


BACKEND_COLUMNS = ["pool", "name", "healthy", "breaker", "in_flight", "running", "waiting",
                   "kv_usage", "prefix_hit_ratio", "age_secs", "fresh", "error"]


def backend_rows(detailed: dict) -> list[dict]:
    """/health/detailed's backends, one row each, the state view's figures beside the rest."""
    return [{"pool": pool, **{k: v for k, v in b.items() if k != "state"}, **b.get("state", {})}
            for pool, p in detailed["pools"].items() for b in p["backends"]]


def backends(c: AdminClient, args) -> None:
    detailed = c.call("GET", "/health/detailed")
    if args.json:
        return render.as_json(detailed)
    render.table(backend_rows(detailed), BACKEND_COLUMNS)
    print("\nas one gateway worker sees them; figures from each backend's /metrics, "
          "ignored once not fresh", file=sys.stderr)


BATCH_COLUMNS = ["id", "status", "endpoint", "model", "priority", "total", "completed", "failed",
                 "created_at", "expires_at"]


def _batch_row(batch: dict) -> dict:
    return {**batch, **batch["request_counts"]}


def batch_list(c: AdminClient, args) -> None:
    if args.org_id:
        page = c.call("GET", f"/admin/orgs/{args.org_id}/batches", params={"limit": args.limit})
        if args.json:
            return render.as_json(page)
        return render.table([_batch_row(b) for b in page["data"]], BATCH_COLUMNS)
    found = c.call("GET", "/admin/batches")
    if args.json:
        return render.as_json(found)
    render.table([_batch_row(b) for b in found["data"]], ["org_id", *BATCH_COLUMNS])
    print(f"\n{len(found['data'])} open; runners:", file=sys.stderr)
    render.table(found["runners"], ["id", "host", "slots", "running", "lines_done", "seen_at"])


def batch_show(c: AdminClient, args) -> None:
    batch = c.call("GET", f"/admin/orgs/{args.org_id}/batches/{args.batch_id}")
    render.as_json(batch) if args.json else render.record(_batch_row(batch))


def batch_cancel(c: AdminClient, args) -> None:
    batch = c.call("POST", f"/admin/orgs/{args.org_id}/batches/{args.batch_id}/cancel")
    render.as_json(batch) if args.json else render.record(_batch_row(batch))


def _parser() -> argparse.ArgumentParser:
    return parser.build({"org_create": org_create, "org_list": org_list, "org_show": org_show,
                  "org_set_limits": org_set_limits,
                  "org_set_models": org_set_models, "org_delete": org_delete,
                  "org_suspend": lambda c, a: org_patch(c, a, {"status": "suspended"}),
                  "org_activate": lambda c, a: org_patch(c, a, {"status": "active"}),
                  "key_create": key_create, "key_list": key_list, "key_rotate": key_rotate,
                  "key_revoke": key_revoke, "audit": audit, "usage": usage, "quota": quota,
                  "key_usage": key_usage, "usage_series": usage_series,
                  "rejections": rejections, "overview": overview,
                  "backends": backends, "batch_list": batch_list, "batch_show": batch_show,
                  "batch_cancel": batch_cancel, "smoke": None})


def main(argv: list[str] | None = None) -> int:
    args = parser.options(_parser().parse_args(argv))
    token = args.admin_token or os.environ.get("ADMIN_TOKEN")
    base_url = args.base_url or os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000")
    if args.group == "smoke":
        verify = False if args.insecure else (args.cacert or True)
        return smoke.run(base_url, token, verify=verify, as_json=args.json)
    client = AdminClient(base_url, token)
    try:
        args.func(client, args)
    except AdminError as exc:
        print(f"gatewayctl: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
