"""gatewayctl's command-line grammar (kept apart from what the commands do)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

PROFILES = ["conservative", "standard", "pro"]


def _key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scopes", help="comma-separated: chat,text2sql,embeddings,rerank,batch,monitor")
    p.add_argument("--expires-in", type=int, metavar="SECS", help="the key expires after SECS")
    p.add_argument("--name", help="a label for the key")
    p.add_argument("--set", action="append", metavar="FIELD=N", help="a limit lower than the org's")
    p.add_argument("--models", help="comma-separated names, aliases or * patterns it may use "
                                    "(within its organisation's; default: all of those)")


def build(commands: dict[str, Callable]) -> argparse.ArgumentParser:
    # Accepted before or after the command; SUPPRESS keeps a later parser's default from
    # overwriting a value given earlier (see `options` for the defaults).
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--base-url", help="gateway URL (env GATEWAY_URL, default http://127.0.0.1:8000)")
    common.add_argument("--admin-token", help="admin token (env ADMIN_TOKEN)")
    common.add_argument("--json", action="store_true", help="print JSON instead of tables")

    parser = argparse.ArgumentParser(prog="gatewayctl", parents=[common],
                                     description="Manage organisations, API keys and audit via the admin API.")
    groups = parser.add_subparsers(dest="group", required=True)

    org = groups.add_parser("org", help="organisations").add_subparsers(dest="action", required=True)
    p = org.add_parser("create", parents=[common], help="create an organisation and its first key")
    p.add_argument("name")
    p.add_argument("--profile", choices=PROFILES)
    p.add_argument("--set", action="append", metavar="FIELD=N", help="a limit, e.g. rpm_limit=240")
    p.add_argument("--scopes", help="scopes of the first key (default: all inference scopes)")
    p.add_argument("--timezone", help="IANA zone for daily/monthly quotas (default UTC)")
    p.add_argument("--models", help="comma-separated names, aliases or * patterns its keys may "
                                    "use (default: every model)")
    p.set_defaults(func=commands["org_create"])
    p = org.add_parser("list", parents=[common], help="list organisations")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(func=commands["org_list"])
    for action, help_ in [("show", "one organisation"), ("delete", "delete it and all its keys"),
                          ("suspend", "refuse its keys (403)"), ("activate", "lift a suspension")]:
        p = org.add_parser(action, parents=[common], help=help_)
        p.add_argument("org_id")
        p.set_defaults(func=commands[f"org_{action}"])
    p = org.add_parser("set-limits", parents=[common], help="apply a profile and/or set limits")
    p.add_argument("org_id")
    p.add_argument("--profile", choices=PROFILES, help="reset limits to this profile first")
    p.add_argument("--set", action="append", metavar="FIELD=N", help="override one limit")
    p.add_argument("--unset", action="append", metavar="FIELD", help="back to the platform default")
    p.set_defaults(func=commands["org_set_limits"])
    p = org.add_parser("set-models", parents=[common], help="the models its keys may use")
    p.add_argument("org_id")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--models", help="comma-separated names, aliases or * patterns")
    which.add_argument("--all", action="store_true", help="every model (no list)")
    p.set_defaults(func=commands["org_set_models"])

    key = groups.add_parser("key", help="API keys").add_subparsers(dest="action", required=True)
    p = key.add_parser("create", parents=[common], help="create a key (shown once)")
    p.add_argument("org_id")
    _key_options(p)
    p.set_defaults(func=commands["key_create"])
    p = key.add_parser("list", parents=[common], help="an organisation's keys")
    p.add_argument("org_id")
    p.set_defaults(func=commands["key_list"])
    p = key.add_parser("rotate", parents=[common], help="new key; the old one lasts --grace seconds")
    p.add_argument("key_id")
    p.add_argument("--grace", type=int, default=3600, metavar="SECS")
    p.set_defaults(func=commands["key_rotate"])
    p = key.add_parser("revoke", parents=[common], help="revoke a key now")
    p.add_argument("key_id")
    p.set_defaults(func=commands["key_revoke"])

    p = groups.add_parser("usage", parents=[common], help="usage per organisation over a window")
    p.add_argument("--window", choices=["1h", "24h", "7d", "30d"], default="24h")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=commands["usage"])
    p = groups.add_parser("key-usage", parents=[common],
                          help="each key's requests, errors and tokens on one UTC day, busiest first")
    p.add_argument("--bucket", help="the day, YYYYMMDD (default: today, UTC)")
    p.add_argument("--org-id", help="one organisation (default: all)")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=commands["key_usage"])
    p = groups.add_parser("usage-series", parents=[common],
                          help="one organisation's (or key's) usage per hour, day or month (UTC)")
    p.add_argument("org_id")
    p.add_argument("--granularity", choices=["hour", "day", "month"], default="day")
    p.add_argument("--count", type=int, default=30, help="how many buckets, up to now")
    p.add_argument("--key-id", help="one key of the organisation")
    p.add_argument("--csv", action="store_true", help="CSV, as the console downloads it")
    p.set_defaults(func=commands["usage_series"])
    p = groups.add_parser("overview", parents=[common],
                          help="the last hour per model on the gateway instance answering")
    p.set_defaults(func=commands["overview"])
    p = groups.add_parser("rejections", parents=[common],
                          help="an organisation's latest 429s: when, which key, which limit")
    p.add_argument("org_id")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=commands["rejections"])
    p = groups.add_parser("quota", parents=[common], help="limits: configured, used, remaining, reset")
    p.add_argument("org_id", nargs="?", help="one organisation (default: all)")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=commands["quota"])

    p = groups.add_parser("backends", parents=[common],
                          help="every backend's health, load and state view (/health/detailed)")
    p.set_defaults(func=commands["backends"])

    batch = groups.add_parser("batch", help="batch jobs").add_subparsers(dest="action", required=True)
    p = batch.add_parser("list", parents=[common],
                         help="open jobs and the runners, or one organisation's batches")
    p.add_argument("org_id", nargs="?", help="one organisation's batches, finished ones too")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=commands["batch_list"])
    for action, help_ in [("show", "one batch"), ("cancel", "cancel it: nothing new starts")]:
        p = batch.add_parser(action, parents=[common], help=help_)
        p.add_argument("org_id")
        p.add_argument("batch_id")
        p.set_defaults(func=commands[f"batch_{action}"])

    p = groups.add_parser("smoke", parents=[common], help="check a running platform end to end")
    p.add_argument("--cacert", help="CA bundle to trust (e.g. the local stack's self-signed cert)")
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    p.set_defaults(func=commands["smoke"])

    p = groups.add_parser("audit", parents=[common], help="the audit trail, newest first")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--before", help="cursor printed by the previous page")
    p.add_argument("--org-id", help="only entries about this organisation")
    p.add_argument("--action", help="only this action (key.revoke), or a kind of them (key.)")
    p.set_defaults(func=commands["audit"])
    return parser


def options(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in the common options' defaults once parsing is done."""
    for name, default in (("base_url", None), ("admin_token", None), ("json", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    return args
