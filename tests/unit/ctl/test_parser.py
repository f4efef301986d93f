"""gatewayctl's grammar: each command reaches its function with its arguments, common options
before or after the command, and their defaults filled in afterwards."""

from __future__ import annotations

import argparse

import pytest

from llmgw.ctl import parser

COMMANDS = ["org_create", "org_list", "org_show", "org_delete", "org_suspend", "org_activate",
            "org_set_limits", "org_set_models", "key_create", "key_list", "key_rotate",
            "key_revoke", "usage", "key_usage", "usage_series", "overview", "rejections", "quota",
            "backends", "batch_list", "batch_show", "batch_cancel", "smoke", "audit"]


def _named(name: str):
    def command(client, args):  # a stand-in that only says which one was chosen
        return name
    command.__name__ = name
    return command


@pytest.fixture(scope="module")
def cli() -> argparse.ArgumentParser:
    return parser.build({name: _named(name) for name in COMMANDS})


def _parse(cli, argv: str) -> argparse.Namespace:
    return parser.options(cli.parse_args(argv.split()))


@pytest.mark.parametrize("argv,command", [
    ("org create acme", "org_create"), ("org list", "org_list"), ("org show o1", "org_show"),
    ("org delete o1", "org_delete"), ("org suspend o1", "org_suspend"),
    ("org activate o1", "org_activate"), ("org set-limits o1", "org_set_limits"),
    ("org set-models o1 --all", "org_set_models"), ("key create o1", "key_create"),
    ("key list o1", "key_list"), ("key rotate k1", "key_rotate"), ("key revoke k1", "key_revoke"),
    ("usage", "usage"), ("key-usage", "key_usage"), ("usage-series o1", "usage_series"),
    ("overview", "overview"), ("rejections o1", "rejections"), ("quota", "quota"),
    ("backends", "backends"), ("batch list", "batch_list"), ("batch show o1 b1", "batch_show"),
    ("batch cancel o1 b1", "batch_cancel"), ("smoke", "smoke"), ("audit", "audit"),
])
def test_every_command_reaches_its_function(cli, argv, command):
    assert _parse(cli, argv).func.__name__ == command


def test_common_options_go_before_or_after_the_command_and_default_afterwards(cli):
    before = _parse(cli, "--base-url http://gw:1 --json org list")
    after = _parse(cli, "org list --admin-token t --base-url http://gw:2")
    plain = _parse(cli, "org list")
    assert (before.base_url, before.json, before.admin_token) == ("http://gw:1", True, None)
    assert (after.base_url, after.json, after.admin_token) == ("http://gw:2", False, "t")
    assert (plain.base_url, plain.json, plain.admin_token) == (None, False, None)
    assert (plain.limit, plain.offset) == (50, 0)


def test_arguments_and_their_defaults(cli):
    created = _parse(cli, "org create acme --profile pro --set rpm_limit=240 --set tpm_limit=9 "
                          "--models qwen,emb*")
    assert (created.name, created.profile, created.set, created.models) == (
        "acme", "pro", ["rpm_limit=240", "tpm_limit=9"], "qwen,emb*")
    key = _parse(cli, "key create o1 --scopes chat,batch --expires-in 60 --name ci")
    assert (key.org_id, key.scopes, key.expires_in, key.name, key.set) == ("o1", "chat,batch", 60, "ci", None)
    assert _parse(cli, "key rotate k1").grace == 3600
    series = _parse(cli, "usage-series o1 --granularity hour --csv")
    assert (series.granularity, series.count, series.csv, series.key_id) == ("hour", 30, True, None)
    assert _parse(cli, "usage").window == "24h"
    assert _parse(cli, "quota").org_id is None and _parse(cli, "quota o1").org_id == "o1"
    assert _parse(cli, "batch list").org_id is None and _parse(cli, "batch list").limit == 20


@pytest.mark.parametrize("argv", [
    "", "org", "org create", "org create acme --profile huge", "usage --window 2h",
    "org set-models o1", "org set-models o1 --all --models qwen", "key rotate k1 --grace soon",
    "nonsense",
])
def test_bad_command_lines_are_refused(cli, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(argv.split())
    assert exc.value.code == 2
    assert "usage: gatewayctl" in capsys.readouterr().err
