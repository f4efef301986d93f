"""LoRA adapters as models of their own (tests/e2e/routing.yaml declares two on the chat pool):
listed with their base as parent, routed to the pool under their served name, limited,
metered and access-controlled under their public name. Through a real gunicorn gateway with
the openai SDK, against the simulators and against real vLLM on CPU serving tiny adapters."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

BASE = "Qwen/Qwen2.5-7B-Instruct"
SQL, POET = "acme/sql-assistant", "acme/poet"
SERVED = {SQL: "tiny-sql-lora", POET: "tiny-poet-lora", BASE: "tiny-chat"}
MESSAGES = [{"role": "user", "content": "Say hello in five words."}]
# Greedy and of fixed length, so a model's answer to one prompt is always the same text; never
# from the response cache, so every answer comes from a backend.
GREEDY = {"temperature": 0, "max_tokens": 6, "extra_body": {"ignore_eos": True},
          "extra_headers": {"Cache-Control": "no-cache"}}


def _client(stack, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key=key or stack.api_key,
                         max_retries=0, timeout=120)


def _chat(client: openai.OpenAI, model: str) -> tuple[str, str]:
    resp = client.chat.completions.create(model=model, messages=MESSAGES, **GREEDY)
    return resp.model, resp.choices[0].message.content


def _direct(stack, served: str) -> str:
    """The same chat straight to a chat backend, naming the served model."""
    resp = httpx.post(stack.backend_url("chat0") + "/v1/chat/completions", timeout=120,
                      headers={"Authorization": f"Bearer {stack.backend_key}"},
                      json={"model": served, "messages": MESSAGES, "temperature": 0,
                            "max_tokens": 6, "ignore_eos": True})
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]["message"]["content"]


def test_adapters_are_listed_with_their_base_model_as_parent(stack):
    client = _client(stack)
    cards = {m.id: m for m in client.models.list()}
    assert {SQL, POET, BASE} <= set(cards)
    sql = cards[SQL]
    assert (sql.owned_by, sql.model_extra["parent"], sql.model_extra["root"]) == ("acme", BASE, SQL)
    assert sql.model_extra["aliases"] == ["sql-assistant"]
    assert sql.model_extra["endpoints"] == ["chat", "completions"]  # its base model's
    assert cards[POET].owned_by == "llmgw" and cards[POET].model_extra["parent"] == BASE
    assert cards[BASE].model_extra["parent"] is None
    assert client.models.retrieve("sql-assistant").id == SQL
    # the backends list them too, under their served names, with the base as parent
    served = httpx.get(stack.backend_url("chat1") + "/v1/models", timeout=10,
                       headers={"Authorization": f"Bearer {stack.backend_key}"}).json()["data"]
    assert [(m["id"], m["parent"]) for m in served] == [
        ("tiny-chat", None), ("tiny-sql-lora", "tiny-chat"), ("tiny-poet-lora", "tiny-chat")]


def test_a_chat_on_an_adapter_is_served_by_that_adapter(stack):
    client = _client(stack)
    base_model, base = _chat(client, "qwen")
    model, sql = _chat(client, "sql-assistant")
    assert (base_model, model) == (BASE, SQL)  # the served name never leaves the gateway
    assert sql != base  # the adapter changed what the model generates...
    assert _chat(client, SQL) == (SQL, sql)  # ...the same way every time, on either replica
    assert sql == _direct(stack, SERVED[SQL])  # the backend's answer under the served name
    assert _chat(client, POET)[1] not in (base, sql)


def test_streams_completions_and_responses_on_an_adapter_name_it(stack):
    client = _client(stack)
    chunks = list(client.completions.create(model=SQL, prompt="Once upon a time", stream=True,
                                            stream_options={"include_usage": True}, **GREEDY))
    assert {c.model for c in chunks} == {SQL}
    assert chunks[-1].usage.completion_tokens == 6
    whole = client.completions.create(model=SQL, prompt="Once upon a time", **GREEDY)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    answer = client.responses.create(model="sql-assistant", input="Say hello", max_output_tokens=4,
                                     temperature=0, store=False)
    assert answer.model == SQL and answer.usage.output_tokens <= 4


def test_usage_and_metrics_are_under_the_adapters_public_name(stack):
    org = stack.open_org()
    client = _client(stack, org["api_key"])
    for model in (SQL, "sql-assistant", "qwen"):
        _chat(client, model)
    time.sleep(1)  # settlement runs after the answer
    with stack.admin() as admin:
        usage = admin.get("/admin/usage", params={"window": "1h", "limit": 500}).json()
        metrics = admin.get("/metrics").text
    mine = next(o for o in usage["orgs"] if o["org_id"] == org["org"]["id"])
    by_model = mine["by_model"]
    assert set(by_model) == {SQL, BASE}
    assert by_model[SQL]["requests"] == by_model[SQL]["success"] == 2
    assert by_model[SQL]["completion_tokens"] == 12 and by_model[SQL]["prompt_tokens"] > 0
    assert by_model[BASE]["requests"] == 1
    assert f'model="{SQL}"' in metrics and "tiny-sql-lora" not in metrics


def test_model_access_lists_and_allows_adapters_by_their_own_names(stack):
    base_only = stack.create_org(models=["qwen"])["api_key"]
    client = _client(stack, base_only)
    assert {m.id for m in client.models.list()} == {BASE}
    with pytest.raises(openai.PermissionDeniedError) as err:
        _chat(client, "sql-assistant")
    assert err.value.status_code == 403 and err.value.body["code"] == "model_not_allowed"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(SQL)
    adapters_only = _client(stack, stack.create_org(models=["acme/*"])["api_key"])
    assert {m.id for m in adapters_only.models.list()} == {SQL, POET}
    assert _chat(adapters_only, "sql-assistant")[0] == SQL
    with pytest.raises(openai.PermissionDeniedError):
        _chat(adapters_only, "qwen")  # an adapter's access opens nothing of its base model
    one = _client(stack, stack.create_org(models=["sql-assistant"])["api_key"])
    assert {m.id for m in one.models.list()} == {SQL}  # by alias


def test_an_unknown_adapter_is_404_like_an_unknown_model(stack):
    client = _client(stack)
    with pytest.raises(openai.NotFoundError) as err:
        _chat(client, "acme/no-such-adapter")
    assert err.value.body["code"] == "model_not_found" and err.value.body["param"] == "model"
    assert SQL in err.value.body["message"]  # the message lists the models, adapters among them
    with pytest.raises(openai.NotFoundError):
        _chat(client, "tiny-sql-lora")  # a served name is no public name
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=SQL, input="x")
    assert err.value.body["code"] == "model_not_supported"
    restricted = _client(stack, stack.create_org(models=["acme/*"])["api_key"])
    with pytest.raises(openai.PermissionDeniedError):
        _chat(restricted, "acme/no-such-adapter")  # a restricted key learns nothing


def test_an_adapter_is_limited_like_any_model(sim_stack):
    org = sim_stack.open_org(rpm_limit=2, max_output_tokens=8)
    client = _client(sim_stack, org["api_key"])
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=SQL, messages=MESSAGES, max_tokens=50)
    assert err.value.body["code"] == "bad_input"
    _chat(client, SQL)
    _chat(client, POET)
    with pytest.raises(openai.RateLimitError) as err:
        _chat(client, SQL)
    assert err.value.body["code"] == "limit_rpm"


def test_tokenize_on_an_adapter_counts_as_its_base_model_does(stack):
    auth = {"Authorization": f"Bearer {stack.api_key}"}
    counts = [httpx.post(stack.base_url + "/tokenize", headers=auth, timeout=60,
                         json={"model": model, "prompt": "Hello world"}).json()["count"]
              for model in ("qwen", "sql-assistant")]
    assert counts[0] == counts[1] > 0
