"""Anthropic's Messages API through the gateway, with the official `anthropic` SDK: answers and
streams as the backend gives them (public model name), the key as `x-api-key` or Bearer, usage
metered from the answers and from a stream cut short, Anthropic-shaped errors with the right
status for every bad input, scopes and model access, and the key in no log."""

from __future__ import annotations

import time

import anthropic
import httpx
import orjson
import pytest

PUBLIC = "Qwen/Qwen2.5-7B-Instruct"
HI = [{"role": "user", "content": "Say hello"}]
TOOLS = [{"name": "get_weather", "description": "Weather of a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}]


def _client(stack, key: str | None = None, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.base_url, api_key=key or stack.api_key,
                               max_retries=0, timeout=120, **kw)


def _post(stack, body: dict, key: str | None = None, path: str = "/v1/messages",
          **headers) -> httpx.Response:
    return httpx.post(stack.base_url + path, json=body, timeout=120,
                      headers={"x-api-key": key or stack.api_key, **headers})


def _direct(stack, body: dict, path: str = "/v1/messages") -> dict:
    """The same call straight to a chat backend, under its served name."""
    auth = {"Authorization": f"Bearer {stack.backend_key}"}
    url = stack.backend_url("chat0")
    served = httpx.get(url + "/v1/models", headers=auth, timeout=10).json()["data"][0]["id"]
    return httpx.post(url + path, json={**body, "model": served}, headers=auth, timeout=120).json()


def _usage(stack, org_id: str) -> dict:
    with stack.admin() as admin:
        rows = admin.get("/admin/usage", params={"window": "1h", "limit": 500}).json()["orgs"]
    return next((r for r in rows if r["org_id"] == org_id), {})


def _until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    return check()


def test_a_message_answers_as_the_backend_does(stack):
    body = {"system": "You are terse.", "messages": HI, "max_tokens": 8, "temperature": 0}
    # this SDK has no sampling arguments any more; vLLM still takes them (extra_body)
    answer = _client(stack).messages.create(model="qwen", system=body["system"], messages=HI,
                                            max_tokens=8, extra_body={"temperature": 0})
    assert answer.type == "message" and answer.model == PUBLIC
    assert answer.usage.input_tokens > 0 and 0 < answer.usage.output_tokens <= 8
    mine, direct = _post(stack, {"model": "qwen", **body}).json(), _direct(stack, body)
    assert mine.pop("model") == PUBLIC and mine.pop("id") and direct.pop("model") and direct.pop("id")
    assert mine == direct  # field by field, in order: content, stop_reason, usage
    assert list(mine) == list(direct)


def test_a_stream_carries_the_same_answer_with_its_usage(stack):
    body = {"system": "You are terse.", "messages": HI, "max_tokens": 6,
            "extra_body": {"temperature": 0}}
    client = _client(stack)
    whole = client.messages.create(model="qwen", **body)
    with client.messages.stream(model="qwen", **body) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "message_delta" in kinds
    assert final.model == PUBLIC and [(b.type, b.text) for b in final.content] == \
        [(b.type, b.text) for b in whole.content]
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.stop_reason == whole.stop_reason


def test_a_lora_adapter_answers_under_its_public_name(stack):
    client = _client(stack)
    answer = client.messages.create(model="sql-assistant", messages=HI, max_tokens=3)
    assert answer.model == "acme/sql-assistant" and 0 < answer.usage.output_tokens <= 3
    assert client.messages.count_tokens(model="acme/poet", messages=HI).input_tokens > 0


def test_count_tokens_is_the_prompt_a_message_sends(stack):
    client = _client(stack)
    counted = client.messages.count_tokens(model="qwen", system="You are terse.", messages=HI)
    sent = client.messages.create(model="qwen", system="You are terse.", messages=HI, max_tokens=2)
    assert counted.input_tokens == sent.usage.input_tokens > 0
    assert _post(stack, {"model": "qwen", "messages": HI}, path="/v1/messages/count_tokens").json() \
        == _direct(stack, {"messages": HI}, "/v1/messages/count_tokens")  # vLLM's answer as it is


def test_usage_is_metered_from_the_answers_and_count_tokens_costs_no_tokens(stack):
    org = stack.open_org()
    client = _client(stack, org["api_key"])
    billed = 0
    for _ in range(2):
        answer = client.messages.create(model="qwen", messages=HI, max_tokens=5)
        billed += answer.usage.input_tokens + answer.usage.output_tokens
        with client.messages.stream(model="qwen", messages=HI, max_tokens=4) as stream:
            final = stream.get_final_message()
        billed += final.usage.input_tokens + final.usage.output_tokens
    client.messages.count_tokens(model="qwen", messages=HI)
    usage = _until(lambda: (u := _usage(stack, org["org"]["id"])).get("requests") == 5 and u)
    assert usage and usage["prompt_tokens"] + usage["completion_tokens"] == billed
    assert usage["by_endpoint"]["messages"]["requests"] == 4 and usage["success"] == 5
    assert usage["by_endpoint"]["count_tokens"] == {"requests": 1, "success": 1}


def test_a_stream_the_client_leaves_is_settled(sim_stack):
    """Billed the prompt and the tokens it saw generated; the lease and the backend freed."""
    org = sim_stack.open_org(max_concurrent=1)
    sim_stack.chat_faults(ttft_ms=0, itl_ms=200)
    try:
        seen = 0
        with httpx.stream("POST", sim_stack.base_url + "/v1/messages", timeout=30,
                          headers={"x-api-key": org["api_key"]},
                          json={"model": "qwen", "messages": HI, "max_tokens": 60, "stream": True}) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    data = orjson.loads(line[6:])
                    if data["type"] == "message_start":
                        prompt = data["message"]["usage"]["input_tokens"]
                    seen += data["type"] == "content_block_delta"
                    if seen == 2:
                        break
    finally:
        sim_stack.chat_faults()
    usage = _until(lambda: (u := _usage(sim_stack, org["org"]["id"])).get("requests") == 1 and u)
    assert usage["errors"] == {"client_closed": 1}
    assert usage["prompt_tokens"] == prompt and 2 <= usage["completion_tokens"] <= 4
    # max_concurrent 1: the slot came back, so the next request passes at once
    assert _post(sim_stack, {"model": "qwen", "messages": HI, "max_tokens": 2}, org["api_key"]).status_code == 200


def test_a_backend_failing_mid_stream_ends_in_an_error_event_the_sdk_raises(sim_stack):
    org = sim_stack.open_org()
    sim_stack.chat_faults(drop_after_tokens=2)
    try:
        with pytest.raises(anthropic.APIStatusError) as err:
            with _client(sim_stack, org["api_key"]).messages.stream(
                    model="qwen", messages=HI, max_tokens=30) as stream:
                for _ in stream:
                    pass
    finally:
        sim_stack.chat_faults()
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "api_error" and err.value.body["error"]["code"] == "bad_gateway"
    usage = _until(lambda: (u := _usage(sim_stack, org["org"]["id"])).get("requests") == 1 and u)
    assert usage["errors"] == {"bad_gateway": 1} and usage["prompt_tokens"] == 0  # refunded


def test_tools_through_the_sdk(sim_stack):
    """The simulator's tool calls follow the schema (a random-weight model's do not)."""
    client = _client(sim_stack)
    called = client.messages.create(model="qwen", messages=HI, max_tokens=100, tools=TOOLS,
                                    tool_choice={"type": "tool", "name": "get_weather"})
    (use,) = called.content
    assert use.type == "tool_use" and called.stop_reason == "tool_use" and "city" in use.input
    turns = [*HI, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in called.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}]
    follow = client.messages.create(model="qwen", messages=turns, max_tokens=5, tools=TOOLS)
    assert follow.content[0].type == "text" and follow.usage.input_tokens > called.usage.input_tokens
    with client.messages.stream(model="qwen", messages=HI, max_tokens=100, tools=TOOLS,
                                tool_choice={"type": "any"}) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use" and "city" in final.content[0].input


def test_the_key_as_x_api_key_or_bearer_and_only_on_these_routes(sim_stack):
    key = sim_stack.api_key
    body = {"model": "qwen", "messages": HI, "max_tokens": 2}
    assert _client(sim_stack, key).messages.create(**body).type == "message"
    bearer = anthropic.Anthropic(base_url=sim_stack.base_url, auth_token=key, max_retries=0)
    assert bearer.messages.create(**body).type == "message"
    for headers in ({"x-api-key": "sk-wrong"}, {"x-api-key": ""}, {}):
        resp = httpx.post(sim_stack.base_url + "/v1/messages", json=body, headers=headers, timeout=30)
        assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError):
        _client(sim_stack, "sk-" + "0" * 16 + "-" + "a" * 43).messages.create(**body)
    # elsewhere x-api-key is no credential, and the error keeps OpenAI's shape
    resp = httpx.post(sim_stack.base_url + "/v1/chat/completions", json=body, headers={"x-api-key": key})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"


def test_the_key_sent_as_x_api_key_is_in_no_log(sim_stack):
    key = sim_stack.create_org()["api_key"]
    for headers in ({"x-api-key": key}, {"x-api-key": key, "X-Request-ID": key}):
        _post(sim_stack, {"model": "qwen", "messages": HI, "max_tokens": 2}, **headers)
        _post(sim_stack, {"model": "nope", "messages": HI}, path="/v1/messages/count_tokens", **headers)
    time.sleep(1.5)  # the log writer flushes
    logs = [p for p in sim_stack.logs.iterdir() if p.is_file()]
    assert logs and not [p.name for p in logs if key.encode() in p.read_bytes() or
                         key[20:].encode() in p.read_bytes()]


def test_scope_and_model_access_are_403(sim_stack):
    body = {"model": "qwen", "messages": HI, "max_tokens": 2}
    embed_only = sim_stack.create_org(key={"scopes": ["embeddings"]})["api_key"]
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        resp = _post(sim_stack, body, embed_only, path)
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"] | {"message": None} == {
            "type": "permission_error", "code": "insufficient_scope", "message": None, "param": None}
    restricted = sim_stack.create_org(models=["*-embed*"])["api_key"]
    for model in ("qwen", "no-such-model"):  # alike, whether the model exists or not
        with pytest.raises(anthropic.PermissionDeniedError) as err:
            _client(sim_stack, restricted).messages.create(**{**body, "model": model})
        assert err.value.body["error"]["code"] == "model_not_allowed"


@pytest.mark.parametrize("body,param,says", [
    ({"messages": HI}, "max_tokens", "Field required"),
    ({"messages": HI, "max_tokens": 0}, "max_tokens", "greater than 0"),
    ({"messages": HI, "max_tokens": "8"}, "max_tokens", "valid integer"),
    ({"messages": "hi", "max_tokens": 4}, "messages", "valid list"),
    ({"messages": [], "max_tokens": 4}, "messages", "at least 1"),
    ({"messages": [{"role": "tool", "content": "x"}], "max_tokens": 4}, "messages[0].role", "'user'"),
    ({"messages": [{"role": "user"}], "max_tokens": 4}, "messages[0].content", "Field required"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "nope"}]}], "max_tokens": 4},
     "messages[0].content[1].type", "'text'"),
    ({"messages": HI, "max_tokens": 4, "system": 5}, "system", "valid list"),
    ({"messages": HI, "max_tokens": 4, "temperature": "hot"}, "temperature", "valid number"),
    ({"messages": HI, "max_tokens": 4, "stream": "yes"}, "stream", "valid boolean"),
    ({"messages": HI, "max_tokens": 4, "tool_choice": {"type": "tool"}}, "tool_choice", "name is required"),
    ({"messages": HI, "max_tokens": 4, "tools": [{"name": "f"}]}, "tools[0].input_schema", "Field required"),
    ({"messages": HI, "max_tokens": 4, "stop_sequences": "END"}, "stop_sequences", "valid list"),
])
def test_bad_bodies_are_400_naming_the_field(sim_stack, body, param, says):
    resp = _post(sim_stack, {"model": "qwen", **body})
    assert resp.status_code == 400, resp.text
    err = resp.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert err["error"]["param"] == param and says in err["error"]["message"], err


def test_requests_that_cannot_be_served_get_clear_errors(sim_stack):
    key = sim_stack.create_org(max_output_tokens=64, max_context_tokens=1000)["api_key"]
    cases = [  # (body, headers, status, error type, code)
        ({"model": "nope", "messages": HI, "max_tokens": 4}, {}, 404, "not_found_error", "model_not_found"),
        ({"messages": HI, "max_tokens": 4}, {}, 400, "invalid_request_error", "missing_model"),
        ({"model": "qwen", "messages": HI, "max_tokens": 65}, {}, 400, "invalid_request_error", "bad_input"),
        ({"model": "qwen", "messages": [{"role": "user", "content": "word " * 2000}], "max_tokens": 4}, {},
         400, "invalid_request_error", "bad_input"),  # over the key's max_context_tokens
        ({"model": "snowflake-arctic-embed", "messages": HI, "max_tokens": 4}, {}, 400,
         "invalid_request_error", "model_not_supported"),
    ]
    for body, headers, status, kind, code in cases:
        resp = _post(sim_stack, body, key, **headers)
        assert resp.status_code == status, resp.text
        assert (resp.json()["error"]["type"], resp.json()["error"]["code"]) == (kind, code), resp.text
    raw = httpx.post(sim_stack.base_url + "/v1/messages", content=b'{"model": "qwen", "messages": [',
                     headers={"x-api-key": key, "Content-Type": "application/json"})
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
    text = httpx.post(sim_stack.base_url + "/v1/messages", content=b"hi",
                      headers={"x-api-key": key, "Content-Type": "text/plain"})
    assert text.status_code == 415 and text.json()["type"] == "error"
    huge = _post(sim_stack, {"model": "qwen", "messages": [{"role": "user", "content": "x" * 1_100_000}],
                             "max_tokens": 4}, key)
    assert huge.status_code == 413 and huge.json()["error"]["type"] == "request_too_large"


def test_a_prompt_over_the_models_context_is_the_backends_400(stack):
    key = stack.open_org(max_context_tokens=10**6)["api_key"]
    with pytest.raises(anthropic.BadRequestError) as err:
        _client(stack, key).messages.create(
            model="qwen", messages=[{"role": "user", "content": "word " * 5000}], max_tokens=4)
    assert err.value.body["error"]["type"] == "invalid_request_error"
    assert "context length" in err.value.body["error"]["message"]


def test_the_estimate_is_checked_with_the_backends_exact_count(stack):
    """A prompt the byte estimate would put over max_context_tokens is counted exactly on the
    backend's /v1/messages/count_tokens (system prompt and blocks as vLLM renders them)."""
    body = {"system": "You are terse.", "messages": HI, "max_tokens": 2}
    exact = _client(stack).messages.count_tokens(model="qwen", system=body["system"],
                                                 messages=HI).input_tokens
    fits = stack.open_org(max_context_tokens=exact)["api_key"]  # the estimate is ~100 tokens
    assert _client(stack, fits).messages.create(model="qwen", **body).usage.input_tokens == exact
    short = stack.open_org(max_context_tokens=exact - 1)["api_key"]
    with pytest.raises(anthropic.BadRequestError) as err:
        _client(stack, short).messages.create(model="qwen", **body)
    assert err.value.body["error"]["code"] == "bad_input"


def test_a_limit_refusal_is_a_rate_limit_error_with_retry_after(sim_stack):
    key = sim_stack.open_org(rpm_limit=1)["api_key"]
    client = _client(sim_stack, key)
    client.messages.create(model="qwen", messages=HI, max_tokens=2)
    with pytest.raises(anthropic.RateLimitError) as err:
        client.messages.create(model="qwen", messages=HI, max_tokens=2)
    assert err.value.body["error"] | {"message": None} == {
        "type": "rate_limit_error", "code": "limit_rpm", "param": None, "message": None}
    assert int(err.value.response.headers["retry-after"]) > 0
