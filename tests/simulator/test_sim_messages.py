"""POST /v1/messages and /v1/messages/count_tokens as vLLM 0.32 answers them (Anthropic's
Messages API, vllm/entrypoints/anthropic/): a Messages request is the equivalent chat request
(same tokens, text, usage, queue and faults), its answer and stream converted to Anthropic's
shapes; field errors in OpenAI's shape, the chat layer's errors in Anthropic's.

The shapes themselves are compared with real vLLM's in test_sim_vs_real_captures.py.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.timeout(30)
URL = "/v1/messages"
AM = [{"role": "user", "content": "Say hello"}]
TOOLS = [{"name": "get_weather", "description": "Weather of a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture(scope="module")
def sim(request):
    from simproc import Sim
    s = Sim("--kind", "chat", "--served-model-name", "sim-chat", "--max-model-len", "512",
            "--enable-auto-tool-choice", "--tool-call-parser", "hermes")
    request.addfinalizer(s.stop)
    return s


def message(sim, **body) -> dict:
    r = sim.post(URL, {"model": "sim-chat", "messages": AM, **body})
    assert r.status_code == 200, r.text
    return r.json()


def events(sim, **body) -> list[tuple[str, dict]]:
    """(event, data) of every event; asserts vLLM's framing (an `event:` line each, no [DONE])."""
    with sim.http.stream("POST", URL, json={"model": "sim-chat", "messages": AM, **body, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        raw = r.read().decode()
    assert raw.endswith("\n\n") and "[DONE]" not in raw
    out = []
    for block in raw[:-2].split("\n\n"):
        event, data = block.split("\n")
        out.append((event.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    assert all(kind == data["type"] for kind, data in out)
    return out


def test_a_message_is_the_equivalent_chat_request_converted(sim):
    answer = message(sim, system="You are terse.", max_tokens=8)
    chat = sim.post("/v1/chat/completions", {"model": "sim-chat", "max_tokens": 8, "messages": [
        {"role": "system", "content": "You are terse."}, *AM]}).json()
    assert list(answer) == ["id", "type", "role", "content", "model", "stop_reason", "usage"]
    assert answer["id"].startswith("chatcmpl-") and (answer["type"], answer["role"]) == ("message", "assistant")
    assert answer["content"] == [{"type": "text", "text": chat["choices"][0]["message"]["content"]}]
    assert answer["model"] == "sim-chat" and answer["stop_reason"] == "max_tokens"
    assert answer["usage"] == {"input_tokens": chat["usage"]["prompt_tokens"], "output_tokens": 8}


def test_max_tokens_is_honoured_and_a_natural_end_is_end_turn(sim):
    assert message(sim, max_tokens=3)["usage"]["output_tokens"] == 3
    ended = message(sim, max_tokens=400)  # natural lengths are 16..128 tokens
    assert ended["stop_reason"] == "end_turn" and 16 <= ended["usage"]["output_tokens"] <= 128


def test_blocks_and_turns_render_like_their_chat_messages(sim):
    blocks = [{"role": "user", "content": [{"type": "text", "text": "Say"}, {"type": "text", "text": "hello"}]},
              {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Again"}]
    answer = message(sim, system=[{"type": "text", "text": "Be brief."}], messages=blocks, max_tokens=4)
    chat = sim.post("/v1/chat/completions", {"model": "sim-chat", "max_tokens": 4, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Say"}, {"type": "text", "text": "hello"}]},
        {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Again"}]}).json()
    assert answer["usage"]["input_tokens"] == chat["usage"]["prompt_tokens"]
    assert answer["content"][0]["text"] == chat["choices"][0]["message"]["content"]


def test_the_stream_carries_the_same_answer_and_its_usage(sim):
    full = message(sim, max_tokens=6)
    stream = events(sim, max_tokens=6)
    kinds = [kind for kind, _ in stream]
    assert kinds == ["message_start", "content_block_start", *["content_block_delta"] * 6,
                     "content_block_stop", "message_delta", "message_stop"]
    start = stream[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["model"] == "sim-chat"
    assert start["usage"] == {"input_tokens": full["usage"]["input_tokens"], "output_tokens": 0}
    assert "".join(d["delta"]["text"] for k, d in stream if k == "content_block_delta") == full["content"][0]["text"]
    assert stream[-2][1] == {"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                             "usage": full["usage"]}


def test_count_tokens_is_the_prompt_a_message_sends(sim):
    body = {"model": "sim-chat", "system": "You are terse.", "messages": AM, "tools": TOOLS}
    counted = sim.post(URL + "/count_tokens", body).json()
    sent = message(sim, system="You are terse.", tools=TOOLS, tool_choice={"type": "none"}, max_tokens=2)
    assert counted == {"input_tokens": sent["usage"]["input_tokens"],
                       "context_management": {"original_input_tokens": sent["usage"]["input_tokens"]}}


def test_a_named_tool_is_a_tool_use_block_streamed_as_json_deltas(sim):
    answer = message(sim, tools=TOOLS, tool_choice={"type": "tool", "name": "get_weather"}, max_tokens=100)
    (block,) = answer["content"]
    assert block["type"] == "tool_use" and block["name"] == "get_weather" and isinstance(block["input"]["city"], str)
    assert answer["stop_reason"] == "tool_use"
    stream = events(sim, tools=TOOLS, tool_choice={"type": "any"}, max_tokens=100)
    start = stream[1][1]["content_block"]
    assert start["type"] == "tool_use" and start["input"] == {} and start["id"].startswith("chatcmpl-tool-")
    args = "".join(d["delta"]["partial_json"] for k, d in stream if k == "content_block_delta")
    assert isinstance(json.loads(args)["city"], str)
    assert stream[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_a_tool_result_turn_is_answered(sim):
    turns = [*AM, {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather",
                                                     "input": {"city": "Paris"}}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]}]
    answer = message(sim, messages=turns, tools=TOOLS, max_tokens=4)
    assert answer["content"][0]["type"] == "text" and answer["usage"]["output_tokens"] == 4


@pytest.mark.parametrize("body,param", [
    ({"messages": AM}, "body.max_tokens"),
    ({"messages": AM, "max_tokens": 0}, "body.max_tokens"),
    ({"messages": "hi", "max_tokens": 4}, "body.messages"),
    ({"messages": [{"role": "tool", "content": "x"}], "max_tokens": 4}, "body.messages.0.role"),
    ({"messages": [{"role": "user"}], "max_tokens": 4}, "body.messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"type": "nope"}]}], "max_tokens": 4}, "body.messages.0.content"),
    ({"messages": AM, "max_tokens": 4, "tool_choice": {"type": "tool"}}, "body.tool_choice"),
    ({"messages": AM, "max_tokens": 4, "tools": [{"name": "f"}]}, "body.tools.0.input_schema"),
    ({"messages": AM, "max_tokens": 4, "temperature": "hot"}, "body.temperature"),
])
def test_field_errors_are_pydantic_400s(sim, body, param):
    r = sim.post(URL, {"model": "sim-chat", **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["type"], err["param"], err["code"]) == ("Bad Request", param, 400)


@pytest.mark.parametrize("body,status,kind,text", [
    ({"model": "nope", "messages": AM, "max_tokens": 4}, 404, "NotFoundError", "does not exist"),
    ({"model": "nope", "messages": AM, "max_tokens": 4, "stream": True}, 404, "NotFoundError", "does not exist"),
    ({"model": "sim-chat", "messages": AM, "max_tokens": 9999}, 400, "BadRequestError", "max_completion_tokens=9999"),
    ({"model": "sim-chat", "messages": [{"role": "user", "content": "hello " * 600}], "max_tokens": 4},
     400, "BadRequestError", "maximum context length is 512"),
    ({"model": "sim-chat", "messages": [], "max_tokens": 4}, 400, "BadRequestError", "empty conversation"),
])
def test_serving_errors_have_anthropics_shape(sim, body, status, kind, text):
    r = sim.post(URL, body)
    assert r.status_code == status, r.text
    assert r.json()["type"] == "error" and list(r.json()["error"]) == ["type", "message"]
    assert r.json()["error"]["type"] == kind and text in r.json()["error"]["message"]


def test_count_tokens_errors(sim):
    r = sim.post(URL + "/count_tokens", {"model": "sim-chat"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "body.messages"
    r = sim.post(URL + "/count_tokens", {"model": "nope", "messages": AM})
    assert r.status_code == 404 and r.json()["error"]["type"] == "NotFoundError"


def test_messages_share_the_engine_with_chat(start_sim):
    """Queue, metrics and a mid-stream drop: the Messages request is a chat request to the engine."""
    sim = start_sim("--kind", "chat", "--served-model-name", "m", "--max-num-seqs", "1")
    r = sim.post(URL, {"model": "m", "messages": AM, "max_tokens": 5})
    assert r.status_code == 200
    assert sim.metric("vllm:generation_tokens_total") == 5
    sim.faults(drop_after_tokens=2, ttft_ms=0, itl_ms=5)
    with sim.http.stream("POST", URL, json={"model": "m", "messages": AM, "max_tokens": 20, "stream": True}) as resp:
        raw = b""
        with pytest.raises(Exception):
            for chunk in resp.iter_raw():
                raw += chunk
    assert raw.count(b"event: content_block_delta") == 2 and b"message_stop" not in raw
    assert sim.stats()["dropped"] == 1


def test_a_key_is_needed_when_the_server_has_one(start_sim):
    sim = start_sim("--kind", "chat", "--served-model-name", "m", "--api-key", "sk-test")
    assert sim.post(URL, {"model": "m", "messages": AM, "max_tokens": 2}).status_code == 401
    ok = sim.post(URL, {"model": "m", "messages": AM, "max_tokens": 2}, headers={"Authorization": "Bearer sk-test"})
    assert ok.status_code == 200


def test_a_lora_adapter_is_served_by_name(start_sim):
    sim = start_sim("--kind", "chat", "--served-model-name", "m", "--enable-lora", "--lora-modules", "poet=/x")
    answer = sim.post(URL, {"model": "poet", "messages": AM, "max_tokens": 3}).json()
    assert answer["model"] == "poet" and answer["usage"]["output_tokens"] == 3
    assert sim.post(URL + "/count_tokens", {"model": "poet", "messages": AM}).json()["input_tokens"] > 0
    assert sim.post(URL, {"model": "nope", "messages": AM, "max_tokens": 3}).status_code == 404
