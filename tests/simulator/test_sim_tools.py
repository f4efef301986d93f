"""Tool calling through a simulator started like vLLM with --enable-auto-tool-choice --tool-call-parser hermes.

The shapes asserted here are vLLM 0.32's (hermes parser): see vllm_sim/hermes.py for the rules.
"""

from __future__ import annotations

import json
import re

import openai
import pytest
from schema_check import problems
from simproc import Sim

pytestmark = pytest.mark.timeout(30)
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "hours": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 23}},
        "where": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                  "required": ["lat", "lon"]}},
        "required": ["city", "unit", "where"]}}}
PING = {"type": "function", "function": {"name": "ping"}}
TOOLS = [WEATHER, PING]
SCHEMAS = {"get_weather": WEATHER["function"]["parameters"], "ping": {"type": "object"}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}
CALL_ID = re.compile(r"^chatcmpl-tool-[0-9a-f]{16}$")
IM_END, TOOL_CALL = 151645, 151657


@pytest.fixture(scope="module")
def tool_sim():
    sim = Sim("--served-model-name", "sim-chat", "--enable-auto-tool-choice", "--tool-call-parser", "hermes")
    yield sim
    sim.stop()


def chat(sim, **body) -> dict:
    r = sim.post("/v1/chat/completions", {"messages": ASK, "tools": TOOLS, "seed": 5, **body})
    assert r.status_code == 200, r.text
    return r.json()


def events(sim, **body) -> list:
    with sim.http.stream("POST", "/v1/chat/completions",
                         json={"messages": ASK, "tools": TOOLS, "seed": 5, "stream": True, **body}) as r:
        assert r.status_code == 200
        raw = r.read().decode()
    return [b[6:] if b[6:] == "[DONE]" else json.loads(b[6:]) for b in raw.split("\n\n") if b]


def assert_call(call: dict, name: str | None = None) -> dict:
    """One well-formed tool call; returns its parsed arguments, checked against the tool's schema."""
    assert list(call) == ["id", "type", "function"] and CALL_ID.match(call["id"]) and call["type"] == "function"
    assert list(call["function"]) == ["name", "arguments"] and call["function"]["name"] in SCHEMAS
    assert name is None or call["function"]["name"] == name
    args = json.loads(call["function"]["arguments"])
    assert problems(args, SCHEMAS[call["function"]["name"]]) == []
    return args


@pytest.mark.parametrize("choice,content,finish", [("auto", None, "tool_calls"), ("required", "", "tool_calls"),
                                                   (NAMED, "", "stop")])
def test_nonstream_call_per_choice(tool_sim, choice, content, finish):
    r = chat(tool_sim, tool_choice=choice, return_token_ids=True)
    (c,) = r["choices"]
    msg = c["message"]
    assert list(msg) == ["role", "content", "refusal", "annotations", "audio", "function_call", "tool_calls",
                         "reasoning"]
    assert msg["content"] == content and c["finish_reason"] == finish and len(msg["tool_calls"]) == 1
    assert_call(msg["tool_calls"][0], "get_weather" if choice == NAMED else None)
    # The call's tokens, then the end-of-turn token, all counted as completion tokens.
    assert c["token_ids"][0] == TOOL_CALL and c["token_ids"][-1] == IM_END
    assert r["usage"]["completion_tokens"] == len(c["token_ids"])


def test_omitted_tool_choice_means_auto_and_none_answers_in_text(tool_sim):
    assert chat(tool_sim)["choices"][0]["finish_reason"] == "tool_calls"
    (c,) = chat(tool_sim, tool_choice="none", max_tokens=6)["choices"]
    assert "tool_calls" not in c["message"] and len(c["message"]["content"].split()) == 6
    assert c["finish_reason"] == "length"


def test_same_request_same_arguments_other_seed_other_arguments(tool_sim):
    args = [chat(tool_sim, tool_choice=NAMED, seed=s)["choices"][0]["message"]["tool_calls"][0]["function"]
            ["arguments"] for s in (1, 1, 2)]
    assert args[0] == args[1] != args[2]


def test_n_choices_each_call(tool_sim):
    r = chat(tool_sim, tool_choice="required", n=3, return_token_ids=True)
    assert [c["index"] for c in r["choices"]] == [0, 1, 2]
    calls = [c["message"]["tool_calls"] for c in r["choices"]]
    assert all(len(cs) == 1 for cs in calls) and len({cs[0]["id"] for cs in calls}) == 3
    for cs in calls:
        assert_call(cs[0])
    assert r["usage"]["completion_tokens"] == sum(len(c["token_ids"]) for c in r["choices"])


@pytest.mark.parametrize("choice", ["auto", "required", NAMED])
def test_stream_sequence_and_reassembly(tool_sim, choice):
    full = chat(tool_sim, tool_choice=choice)["choices"][0]
    evs = events(tool_sim, tool_choice=choice, stream_options={"include_usage": True})
    role, first, *args_chunks, finish, usage, done = evs
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""} and done == "[DONE]"
    (head,) = first["choices"][0]["delta"]["tool_calls"]
    assert first["choices"][0]["delta"]["content"] is None
    assert list(head) == ["id", "type", "index", "function"] and CALL_ID.match(head["id"])
    assert head["index"] == 0 and head["function"] == {"name": full["message"]["tool_calls"][0]["function"]["name"]}
    pieces = []
    for chunk in args_chunks:
        (tc,) = chunk["choices"][0]["delta"]["tool_calls"]
        assert tc.keys() == {"index", "function"} and tc["function"].keys() == {"arguments"}
        pieces.append(tc["function"]["arguments"])
    assert "".join(pieces) == full["message"]["tool_calls"][0]["function"]["arguments"]
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"] == full["finish_reason"]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == chat(tool_sim, tool_choice=choice)[
        "usage"]["completion_tokens"]


def test_stream_none_is_plain_text(tool_sim):
    role, *tokens, done = events(tool_sim, tool_choice="none", max_tokens=4)
    assert [list(t["choices"][0]["delta"]) for t in tokens] == [["content"]] * 4 and done == "[DONE]"


def test_stream_with_token_ids_sends_every_step(tool_sim):
    # Steps the parser holds back still go out (empty delta) when they carry token ids, like vLLM.
    evs = events(tool_sim, tool_choice="required", return_token_ids=True)
    steps = [e["choices"][0] for e in evs[1:-1]]
    ids = [i for s in steps for i in s["token_ids"]]
    assert ids == chat(tool_sim, tool_choice="required", return_token_ids=True)["choices"][0]["token_ids"]
    assert steps[0]["delta"] == {} and steps[-1]["delta"] == {} and steps[-1]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("max_tokens", [3, 12])
def test_max_tokens_cuts_the_call(tool_sim, max_tokens):
    (c,) = chat(tool_sim, max_tokens=max_tokens)["choices"]
    # An unfinished call does not parse: vLLM returns its raw text as content.
    assert c["finish_reason"] == "length" and "tool_calls" not in c["message"]
    assert c["message"]["content"].startswith("<tool_call>\n{")
    evs = events(tool_sim, max_tokens=max_tokens)
    assert evs[-2]["choices"][0]["finish_reason"] == "length"


def test_parallel_tool_calls_false_still_one_call(tool_sim):
    (c,) = chat(tool_sim, tool_choice="required", parallel_tool_calls=False)["choices"]
    assert len(c["message"]["tool_calls"]) == 1


def test_two_turn_tool_loop_with_the_sdk(tool_sim):
    client = openai.OpenAI(base_url=tool_sim.url + "/v1", api_key="none", max_retries=0, timeout=10)
    messages = list(ASK)
    first = client.chat.completions.create(model="sim-chat", messages=messages, tools=TOOLS, seed=5)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name in SCHEMAS
    messages.append({"role": "assistant", "content": None, "tool_calls": [call.model_dump()]})
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'})
    second = client.chat.completions.create(model="sim-chat", messages=messages, tools=TOOLS, seed=5)
    assert second.choices[0].message.tool_calls is None and second.choices[0].message.content
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens - 1
    # The SDK's stream helper accumulates the same call from the deltas.
    with client.chat.completions.stream(model="sim-chat", messages=ASK, tools=TOOLS, seed=5) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.arguments == call.function.arguments


def test_tools_are_part_of_the_prompt_and_of_tokenize(tool_sim):
    with_tools = chat(tool_sim, tool_choice="none", max_tokens=1)["usage"]["prompt_tokens"]
    without = tool_sim.post("/v1/chat/completions", {"messages": ASK, "max_tokens": 1}).json()["usage"]
    assert with_tools > without["prompt_tokens"] + 50
    tok = tool_sim.post("/tokenize", {"messages": ASK, "tools": TOOLS}).json()
    assert tok["count"] == with_tools
