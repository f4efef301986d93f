"""LoRA adapters in routing.yaml (llmgw/adapters.py): models of their own on their base's pool,
and the declarations that must stop the gateway at start-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmgw.errors import ModelNotAllowed, ModelNotSupported
from llmgw.routing import Endpoint, load_routing
from llmgw.tenancy.model_access import allows

POOLS = """
pools:
  chat:
    policy: {name: prefix}
    backends: [{name: c0, url: 'http://h:1'}, {name: c1, url: 'http://h:2'}]
    adapters: ADAPTERS
  embed:
    backends: [{name: e, url: 'http://h:3'}]
models:
  - {name: Qwen/Qwen2.5-7B-Instruct, served_name: qwen-7b, aliases: [qwen], pool: chat, endpoints: [chat, completions], owned_by: Qwen}
  - {name: embedder, pool: embed, endpoints: [embeddings]}
"""
SQL = "{name: acme/sql, aliases: [sql], base: qwen, source: /adapters/sql, served_name: sql-lora, owned_by: acme}"


def table(tmp_path: Path, adapters: str = f"[{SQL}]"):
    path = tmp_path / "routing.yaml"
    path.write_text(POOLS.replace("ADAPTERS", adapters))
    return load_routing(path, env={})


def test_an_adapter_is_a_model_of_its_pool_with_its_base_as_parent(tmp_path):
    routing = table(tmp_path)
    adapter = routing.resolve("sql", Endpoint.CHAT)
    assert (adapter.name, adapter.served_name, adapter.parent, adapter.owned_by) == \
        ("acme/sql", "sql-lora", "Qwen/Qwen2.5-7B-Instruct", "acme")
    assert adapter.pool is routing.pools["chat"] and adapter.endpoints == routing.named("qwen").endpoints
    assert routing.named("qwen").parent is None
    assert [m.name for m in routing.models] == ["Qwen/Qwen2.5-7B-Instruct", "embedder", "acme/sql"]
    with pytest.raises(ModelNotSupported):
        routing.resolve("acme/sql", Endpoint.EMBEDDINGS)


def test_the_pool_loads_each_adapter_under_its_served_name_with_its_base(tmp_path):
    [loaded] = table(tmp_path).pools["chat"].adapters
    assert json.loads(loaded.lora_module()) == {"name": "sql-lora", "path": "/adapters/sql",
                                                "base_model_name": "qwen-7b"}
    assert json.loads(loaded.lora_module("/tiny/sql"))["path"] == "/tiny/sql"
    assert table(tmp_path, "[]").pools["chat"].adapters == ()


def test_defaults_served_name_and_owner_from_the_adapter_and_its_base(tmp_path):
    routing = table(tmp_path, "[{name: plain, base: Qwen/Qwen2.5-7B-Instruct, source: org/hub-adapter}]")
    adapter = routing.named("plain")
    assert (adapter.served_name, adapter.owned_by, adapter.aliases) == ("plain", "Qwen", ())


def test_model_access_treats_an_adapter_as_a_model_of_its_own(tmp_path):
    routing = table(tmp_path)
    only_base = ("qwen",)
    allowed = lambda names: allows(only_base, names)  # noqa: E731
    assert routing.resolve("qwen", Endpoint.CHAT, allowed).name == "Qwen/Qwen2.5-7B-Instruct"
    with pytest.raises(ModelNotAllowed):
        routing.resolve("sql", Endpoint.CHAT, allowed)
    assert routing.resolve("sql", Endpoint.CHAT, lambda names: allows(("acme/*",), names)).name == "acme/sql"


def test_an_adapters_prefix_key_is_its_own(tmp_path):
    """vLLM caches an adapter's KV blocks apart from the base model's: the same document sent
    to the base and to an adapter must not be taken for one prefix."""
    routing = table(tmp_path, f"[{SQL}, {{name: poet, base: qwen, source: /adapters/poet}}]")
    body = {"prompt": "A shared document. " * 20}
    policy = routing.pools["chat"].policy
    base, sql, poet = (routing.named(n) for n in ("qwen", "sql", "poet"))
    keys = [policy.place(body, {}, m.prefix_salt).key for m in (base, sql, poet)]
    assert None not in keys and len(set(keys)) == 3
    assert policy.place(body, {}, sql.prefix_salt).key == keys[1]  # stable
    assert policy.place(body, {}).key == keys[0]  # a base model's keys are unchanged


@pytest.mark.parametrize("adapters,message", [
    ("[{name: qwen, base: qwen, source: /a}]", "'qwen' is defined twice"),
    ("[{name: x, aliases: [embedder], base: qwen, source: /a}]", "'embedder' is defined twice"),
    (f"[{SQL}, {{name: y, aliases: [sql], base: qwen, source: /b}}]", "'sql' is defined twice"),
    ("[{name: x, base: qwen}]", "source"),
    ("[{name: x, base: qwen, source: ''}]", "source"),
    ("[{name: x, base: qwen, source: '  '}]", "source"),
    ("[{name: x, base: gpt-4, source: /a}]", "its base 'gpt-4' names no model"),
    ("[{name: x, base: embedder, source: /a}]", "served by pool 'embed'"),
    ("[{name: x, base: qwen, source: /a, served_name: qwen-7b}]", "served name 'qwen-7b' is already served"),
    (f"[{SQL}, {{name: y, base: qwen, source: /b, served_name: sql-lora}}]", "'sql-lora' is already served"),
    ("[{name: x, base: qwen, source: /a, served_name: 'a=b'}]", "served_name"),
    ("[{name: 'two words', base: qwen, source: /a}]", "give it a served_name"),
    ("[{name: x, base: qwen, source: /a, rank: 8}]", "rank"),
])
def test_a_bad_adapter_declaration_stops_start_up_naming_the_problem(tmp_path, adapters, message):
    with pytest.raises(ValueError, match="invalid routing file") as err:
        table(tmp_path, adapters)
    assert message in str(err.value)


def test_an_adapter_on_a_pool_that_only_embeds_is_refused(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(POOLS.replace("ADAPTERS", "[]").replace(
        "backends: [{name: e, url: 'http://h:3'}]",
        "backends: [{name: e, url: 'http://h:3'}]\n    adapters: [{name: x, base: embedder, source: /a}]"))
    with pytest.raises(ValueError, match="generates no text"):
        load_routing(path, env={})
