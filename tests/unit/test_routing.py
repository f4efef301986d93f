"""Routing table: loading, validation and model resolution."""

from pathlib import Path

import pytest

from llmgw.errors import InvalidRequest, ModelNotFound, ModelNotSupported
from llmgw.routing import Endpoint, expand_env, load_routing

SHIPPED = Path(__file__).resolve().parents[2] / "gateway" / "routing.yaml"


@pytest.fixture
def table():
    return load_routing(SHIPPED, env={})


def test_shipped_table_matches_compose_topology(table):
    assert {n: [b.name for b in p.backends] for n, p in table.pools.items()} == {
        "chat": ["chat0", "chat1"], "text2sql": ["text2sql"], "embed": ["embed"],
        "rerank": ["rerank"]}
    assert table.pools["chat"].backends[0].url == "http://vllm-chat0:8000"


@pytest.mark.parametrize("alias,name,endpoint", [
    ("qwen", "Qwen/Qwen2.5-7B-Instruct", Endpoint.CHAT),
    ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct", Endpoint.COMPLETIONS),
    ("text2sql", "Snowflake/Arctic-Text2SQL-R1-7B", Endpoint.TEXT2SQL),
    ("snowflake-arctic-embed", "Snowflake/snowflake-arctic-embed-l-v2.0", Endpoint.EMBEDDINGS),
    ("bge-reranker-v2-m3", "BAAI/bge-reranker-v2-m3", Endpoint.RERANK),
    ("bge-reranker-v2-m3", "BAAI/bge-reranker-v2-m3", Endpoint.CLASSIFY),
])
def test_aliases_resolve_to_public_names(table, alias, name, endpoint):
    assert table.resolve(alias, endpoint).name == name


def test_text2sql_without_model_uses_default(table):
    assert table.resolve(None, Endpoint.TEXT2SQL).name == "Snowflake/Arctic-Text2SQL-R1-7B"


def test_missing_model_elsewhere_is_400(table):
    with pytest.raises(InvalidRequest) as err:
        table.resolve(None, Endpoint.CHAT)
    assert err.value.status == 400 and err.value.param == "model"


def test_unknown_model_is_404_naming_the_models(table):
    with pytest.raises(ModelNotFound) as err:
        table.resolve("gpt-4", Endpoint.CHAT)
    assert err.value.status == 404 and err.value.code == "model_not_found"
    assert "Qwen/Qwen2.5-7B-Instruct" in err.value.message and "BAAI/bge-reranker-v2-m3" in err.value.message


def test_model_on_wrong_endpoint_is_400(table):
    with pytest.raises(ModelNotSupported) as err:
        table.resolve("qwen", Endpoint.EMBEDDINGS)
    assert err.value.status == 400 and err.value.code == "model_not_supported"
    with pytest.raises(ModelNotSupported):
        table.resolve("qwen", Endpoint.TEXT2SQL)


def test_env_expansion_with_defaults_and_required():
    assert expand_env("${A:-x}/${B}", {"B": "y"}) == "x/y"
    assert expand_env("${A:-x}", {"A": "z"}) == "z"
    with pytest.raises(ValueError, match=r"\$\{B\}"):
        expand_env("${B}", {})


@pytest.mark.parametrize("yaml_text,message", [
    ("pools: {p: {backends: [{name: a, url: 'http://h:1'}]}}\nmodels: [{name: m, pool: q, endpoints: [chat]}]",
     "unknown pool"),
    ("pools: {p: {backends: [{name: a, url: 'http://h:1'}]}}\nmodels: [{name: m, pool: p, endpoints: [chat]}, {name: n, aliases: [m], pool: p, endpoints: [chat]}]",
     "defined twice"),
    ("pools: {p: {backends: [{name: a, url: 'not a url'}]}}\nmodels: [{name: m, pool: p, endpoints: [chat]}]",
     "url"),
    ("pools: {p: {backends: []}}\nmodels: [{name: m, pool: p, endpoints: [chat]}]", "backends"),
    ("pools: {p: {backends: [{name: a, url: 'http://h:1'}]}}\nmodels: [{name: m, pool: p, endpoints: [fly]}]",
     "endpoints"),
    ("pools: {p: {backends: [{name: a, url: 'http://h:1', colour: red}]}}\nmodels: [{name: m, pool: p, endpoints: [chat]}]",
     "colour"),
    ("pools: {p: {scheduling: lifo, backends: [{name: a, url: 'http://h:1'}]}}\nmodels: [{name: m, pool: p, endpoints: [chat]}]",
     "scheduling"),
])
def test_invalid_tables_are_refused_with_a_reason(tmp_path, yaml_text, message):
    path = tmp_path / "routing.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValueError, match=message):
        load_routing(path, env={})


def test_a_pool_schedules_first_come_first_served_unless_it_says_priority(tmp_path, table):
    assert {n for n, pool in table.pools.items() if pool.priority_scheduling} == {"chat", "text2sql"}
    path = tmp_path / "routing.yaml"
    path.write_text("pools: {p: {backends: [{name: a, url: 'http://h:1'}]},\n"
                    "        q: {scheduling: priority, backends: [{name: b, url: 'http://h:2'}]}}\n"
                    "models: [{name: m, pool: p, endpoints: [chat]}, {name: n, pool: q, endpoints: [chat]}]")
    pools = load_routing(path, env={}).pools
    assert not pools["p"].priority_scheduling and pools["q"].priority_scheduling
