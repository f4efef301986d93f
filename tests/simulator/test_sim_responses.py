"""POST /v1/responses as vLLM 0.32 answers it with the response store off (no VLLM_ENABLE_RESPONSES_API_STORE).

Key orders come from vLLM's own models (ResponsesResponse.model_dump(mode="json", by_alias=True) and the
events' model_dump_json(by_alias=True), dumped with the .venv-vllm install); the event sequence and the
errors follow entrypoints/openai/responses/{serving,streaming_events,protocol}.py.
"""

from __future__ import annotations

import json
import time

import openai
import pytest

pytestmark = pytest.mark.timeout(30)
URL = "/v1/responses"
RESPONSE_KEYS = ["id", "created_at", "incomplete_details", "instructions", "metadata", "model", "object", "output",
                 "parallel_tool_calls", "temperature", "tool_choice", "tools", "top_p", "background",
                 "max_output_tokens", "max_tool_calls", "previous_response_id", "prompt", "reasoning",
                 "service_tier", "status", "text", "top_logprobs", "truncation", "usage", "user", "presence_penalty",
                 "frequency_penalty", "kv_transfer_params", "ec_transfer_params", "input_messages", "output_messages"]
MESSAGE_KEYS = ["id", "content", "role", "status", "type", "phase"]
TEXT_KEYS = ["annotations", "text", "type", "logprobs"]
TEXT_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
               "response.content_part.added"]
DONE_EVENTS = ["response.output_text.done", "response.content_part.done", "response.output_item.done",
               "response.completed"]


def respond(sim, body: dict) -> dict:
    r = sim.post(URL, body)
    assert r.status_code == 200, r.text
    return r.json()


def chat_text(sim, messages: list, **extra) -> dict:
    r = sim.post("/v1/chat/completions", {"messages": messages, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def text_of(answer: dict) -> str:
    (item,) = answer["output"]
    return item["content"][0]["text"]


def stream(sim, body: dict) -> list[tuple[str, dict]]:
    """(event line, data) of every SSE event; asserts the framing vLLM uses."""
    with sim.http.stream("POST", URL, json={**body, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        raw = r.read().decode()
    assert raw.endswith("\n\n") and "[DONE]" not in raw  # vLLM's Responses stream has no data: [DONE]
    out = []
    for block in raw[:-2].split("\n\n"):
        event, data = block.split("\n")
        assert event.startswith("event: ") and data.startswith("data: ")
        out.append((event[len("event: "):], json.loads(data[len("data: "):])))
    return out


# ---- non-streamed answers ------------------------------------------------------
def test_string_input_answer_has_vllms_fields_and_values(chat_sim):
    a = respond(chat_sim, {"model": "alias-chat", "input": "Name a color.", "max_output_tokens": 5, "store": True})
    assert list(a) == RESPONSE_KEYS  # no "store" field at all; store=true is silently dropped
    assert a["id"].startswith("resp_") and len(a["id"]) == 21 and a["object"] == "response"
    assert a["model"] == "sim-chat" and abs(a["created_at"] - time.time()) < 5
    assert a["status"] == "incomplete" and a["incomplete_details"] == {"reason": "max_output_tokens"}
    (item,) = a["output"]
    assert list(item) == MESSAGE_KEYS and item["id"].startswith("msg_") and item["status"] == "completed"
    assert item["role"] == "assistant" and item["type"] == "message" and item["phase"] is None
    (part,) = item["content"]
    assert list(part) == TEXT_KEYS and part["annotations"] == [] and part["logprobs"] is None
    assert len(part["text"].split()) == 5
    assert (a["tool_choice"], a["tools"], a["temperature"], a["top_p"]) == ("none", [], 1.0, 1.0)
    assert (a["background"], a["parallel_tool_calls"], a["max_output_tokens"]) == (False, True, 5)
    assert (a["service_tier"], a["truncation"], a["top_logprobs"]) == ("auto", "disabled", None)
    assert (a["presence_penalty"], a["frequency_penalty"]) == (0.0, 0.0)
    assert a["previous_response_id"] is None and a["input_messages"] is None


def test_usage_counts_the_prompt_like_chat(chat_sim):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a color."}]
    a = respond(chat_sim, {"input": "Name a color.", "instructions": "Be brief.", "max_output_tokens": 7})
    u = a["usage"]
    assert list(u) == ["input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details",
                       "total_tokens"]
    assert u["input_tokens"] == chat_sim.post("/tokenize", {"messages": msgs}).json()["count"]
    assert u["output_tokens"] == 7 and u["total_tokens"] == u["input_tokens"] + 7
    assert u["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0, "input_tokens_per_turn": [],
                                         "cached_tokens_per_turn": []}
    assert u["output_tokens_details"] == {"reasoning_tokens": 0, "tool_output_tokens": 0,
                                          "output_tokens_per_turn": [], "tool_output_tokens_per_turn": []}


def test_echoed_request_fields(chat_sim):
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    a = respond(chat_sim, {"input": "hi", "metadata": {"k": "v"}, "user": "u1", "temperature": 0.5, "top_p": 0.9,
                           "tools": tools, "instructions": "Be brief.", "request_id": "my-id",
                           "include": ["message.output_text.logprobs"], "top_logprobs": 2, "max_output_tokens": 3})
    assert a["id"] == "my-id" and a["metadata"] == {"k": "v"} and a["user"] == "u1"
    assert (a["temperature"], a["top_p"], a["tool_choice"], a["instructions"]) == (0.5, 0.9, "auto", "Be brief.")
    assert a["tools"] == [{"name": "get_weather", "parameters": {"type": "object"}, "strict": None,
                           "type": "function", "allowed_callers": None, "async": None, "defer_loading": None,
                           "description": None, "output_schema": None}]
    assert a["top_logprobs"] == 2
    (entry, *_) = a["output"][0]["content"][0]["logprobs"]
    assert list(entry) == ["token", "bytes", "logprob", "top_logprobs"] and len(entry["top_logprobs"]) == 2
    greedy = respond(chat_sim, {"input": "hi", "temperature": 0, "top_p": 0.3, "max_output_tokens": 1})
    assert (greedy["temperature"], greedy["top_p"]) == (0.0, 1.0)  # SamplingParams resets top_p when greedy


def test_natural_stop_is_completed(chat_sim):
    a = respond(chat_sim, {"input": "Name a color.", "max_output_tokens": 400})
    assert a["status"] == "completed" and a["incomplete_details"] is None
    assert 16 <= a["usage"]["output_tokens"] <= 128


# ---- the conversation the model sees -----------------------------------------------
def test_string_and_items_give_the_equivalent_chat_requests_text(chat_sim):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a color."}]
    chat = chat_text(chat_sim, msgs, max_tokens=9, seed=3)["choices"][0]["message"]["content"]
    as_string = respond(chat_sim, {"input": "Name a color.", "instructions": "Be brief.", "max_output_tokens": 9,
                                   "seed": 3})
    items = [{"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
             {"role": "user", "content": "Name a color."}]
    as_items = respond(chat_sim, {"input": items, "max_output_tokens": 9, "seed": 3})
    assert text_of(as_string) == text_of(as_items) == chat
    other_seed = respond(chat_sim, {"input": items, "max_output_tokens": 9, "seed": 4})
    assert text_of(other_seed) != chat


def test_multi_turn_with_earlier_output_items_and_function_calls(chat_sim):
    first = respond(chat_sim, {"input": "Name a color.", "max_output_tokens": 4})
    earlier = first["output"][0]  # sent back as it came, id/status/annotations included
    call = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}
    result = {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
    items = [{"role": "user", "content": "Name a color."}, earlier,
             {"role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"}]}, call, result]
    a = respond(chat_sim, {"input": items, "max_output_tokens": 6})
    msgs = [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": text_of(first)},
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                  "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    chat = chat_text(chat_sim, msgs, max_tokens=6)
    assert text_of(a) == chat["choices"][0]["message"]["content"]
    assert a["usage"]["input_tokens"] == chat["usage"]["prompt_tokens"]


# ---- streaming ----------------------------------------------------------------------
def test_stream_event_sequence_and_deltas(chat_sim):
    body = {"input": "Name a color.", "instructions": "Be brief.", "max_output_tokens": 4, "seed": 1}
    evs = stream(chat_sim, body)
    names = [name for name, _ in evs]
    assert names == TEXT_EVENTS + ["response.output_text.delta"] * 4 + DONE_EVENTS
    assert [d["sequence_number"] for _, d in evs] == list(range(len(evs)))
    assert all(d["type"] == name for name, d in evs)
    created, in_progress = evs[0][1]["response"], evs[1][1]["response"]
    assert created == in_progress and list(created) == RESPONSE_KEYS and created["status"] == "in_progress"
    assert created["output"] == [] and created["usage"] is None and created["incomplete_details"] is None
    added, part = evs[2][1], evs[3][1]
    assert list(added) == ["item", "output_index", "sequence_number", "type"]
    assert added["item"]["content"] == [] and added["item"]["status"] == "in_progress"
    assert part["part"] == {"annotations": [], "text": "", "type": "output_text", "logprobs": []}
    deltas = [d for _, d in evs[4:8]]
    assert list(deltas[0]) == ["content_index", "delta", "item_id", "logprobs", "output_index", "sequence_number",
                               "type"]
    item_id = added["item"]["id"]
    assert {d["item_id"] for d in deltas} == {item_id} and all(d["logprobs"] == [] for d in deltas)
    text = "".join(d["delta"] for d in deltas)
    text_done, part_done, item_done, completed = (d for _, d in evs[8:])
    assert text_done["text"] == text and text_done["logprobs"] == [] and part_done["part"]["text"] == text
    assert part_done["part"]["logprobs"] is None and item_done["item"]["status"] == "completed"
    final = completed["response"]
    assert final["output"] == [item_done["item"]] and final["id"] == created["id"]
    assert final["status"] == "incomplete" and final["usage"]["output_tokens"] == 4
    full = respond(chat_sim, {k: v for k, v in body.items()})
    assert text_of(full) == text and full["usage"] == final["usage"]
    assert {k: v for k, v in full.items() if k not in ("id", "created_at", "output")} == \
        {k: v for k, v in final.items() if k not in ("id", "created_at", "output")}


def test_openai_sdk_reads_answers_and_streams(chat_sim):
    client = openai.OpenAI(base_url=chat_sim.url + "/v1", api_key="none", max_retries=0, timeout=10)
    r = client.responses.create(model="sim-chat", input="Name a color.", max_output_tokens=5)
    assert r.status == "incomplete" and len(r.output_text.split()) == 5 and r.usage.output_tokens == 5
    with client.responses.stream(model="sim-chat", input="Name a color.", max_output_tokens=5) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == final.output_text == r.output_text


def test_stream_opens_before_the_first_token_and_deltas_follow_itl(start_sim):
    sim = start_sim("--ttft-ms", "600", "--itl-ms", "100")
    t0 = time.perf_counter()
    seen = []
    with sim.http.stream("POST", URL, json={"input": "hi", "max_output_tokens": 3, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("event: "):
                seen.append((line[len("event: "):], time.perf_counter() - t0))
    at = dict(seen)
    assert at["response.in_progress"] < 0.4  # sent with the headers, before the engine runs the request
    assert at["response.output_item.added"] >= 0.55  # with the first token, after TTFT
    gaps = [b - a for (n, a), (_, b) in zip(seen, seen[1:]) if n == "response.output_text.delta"]
    assert len(gaps) == 3 and all(g >= 0.08 for g in gaps[:2])


# ---- prefix cache -------------------------------------------------------------------------
def test_cached_tokens_come_from_the_prefix_cache_shared_with_chat(start_sim):
    sim = start_sim("--num-gpu-blocks", "256", "--block-size", "16")
    system = "You answer questions about the gateway. " * 20
    cold = respond(sim, {"instructions": system, "input": "What is a route?", "max_output_tokens": 2})
    details = cold["usage"]["input_tokens_details"]
    prompt = cold["usage"]["input_tokens"]
    assert details["cached_tokens"] == 0 and details["cache_write_tokens"] == prompt // 16 * 16
    chat_text(sim, [{"role": "system", "content": system}, {"role": "user", "content": "What is a backend?"}],
              max_tokens=2)
    warm = respond(sim, {"instructions": system, "input": "What is a backend?", "max_output_tokens": 2})
    details = warm["usage"]["input_tokens_details"]
    full = warm["usage"]["input_tokens"] // 16 * 16
    assert details["cached_tokens"] > 0 and details["cached_tokens"] % 16 == 0
    assert details["cache_write_tokens"] == full - details["cached_tokens"]


# ---- errors ---------------------------------------------------------------------------
def error_of(sim, body: dict, status: int) -> dict:
    r = sim.post(URL, body)
    assert r.status_code == status, r.text
    (err,) = r.json().values()
    assert err["code"] == status
    return err


def test_store_disabled_errors(chat_sim):
    err = error_of(chat_sim, {"input": "hi", "background": True}, 400)
    assert (err["type"], err["param"]) == ("invalid_request_error", "background")
    assert err["message"].startswith("This vLLM engine does not support `store=True` and therefore does not "
                                     "support the background mode.")
    err = error_of(chat_sim, {"input": "hi", "background": True, "store": False}, 400)
    assert err == {"message": "background can only be used when `store` is true (parameter=background)",
                   "type": "BadRequestError", "param": "background", "code": 400}
    err = error_of(chat_sim, {"input": "hi", "previous_response_id": "resp_abc"}, 404)
    assert err == {"message": "Response with id 'resp_abc' not found.", "type": "invalid_request_error",
                   "param": "response_id", "code": 404}


def test_model_and_request_errors(chat_sim):
    err = error_of(chat_sim, {"model": "nope", "input": "hi"}, 404)
    assert (err["type"], err["param"]) == ("NotFoundError", "model")
    assert err["message"] == "The model `nope` does not exist. Valid aliases: sim-chat, alias-chat."
    err = error_of(chat_sim, {"model": "sim-chat"}, 400)  # check_tool_usage has added tool_choice by then
    assert err["message"] == ("1 validation error:\n  {'type': 'missing', 'loc': 'body.input', 'msg': 'Field "
                              "required', 'input': '<dict of 2 items>'}")
    assert (err["type"], err["param"]) == ("Bad Request", "body.input")
    err = error_of(chat_sim, {"input": 5}, 400)
    assert err["message"].startswith("2 validation errors:\n  {'type': 'string_type', 'loc': 'body.input'")
    for bad in (["hi"], [{"role": "bogus", "content": "x"}], [{"type": "function_call", "name": "f"}],
                [{"role": "assistant", "content": [{"type": "output_text", "text": "x"}]}]):
        err = error_of(chat_sim, {"input": bad}, 400)
        assert (err["type"], err["param"]) == ("Bad Request", "body.input")
    err = error_of(chat_sim, {"input": [{"type": "item_reference", "id": "x"}]}, 400)
    assert err["message"] == "Unsupported input item type: item_reference (parameter=input)"
    err = error_of(chat_sim, {"input": "hi", "tool_choice": "required"}, 400)
    assert err["message"] == "Tool choice 'required' must be specified with 'tools' parameter. (parameter=tool_choice)"
    err = error_of(chat_sim, {"input": "hi", "max_output_tokens": 0}, 400)
    assert err["message"] == "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)"
    err = error_of(chat_sim, {"input": "hi", "max_output_tokens": 600}, 400)
    assert err["param"] == "max_output_tokens" and "cannot be greater than max_model_len=512" in err["message"]
    err = error_of(chat_sim, {"input": "hi", "temperature": -1}, 400)
    assert err["message"] == "temperature must be non-negative, got -1.0. (parameter=temperature, value=-1.0)"
    err = error_of(chat_sim, {"input": "hello " * 600}, 400)
    assert err["param"] == "input_tokens" and "at least 513 input tokens" in err["message"]
