"""In-process checks of tool calling: schema-driven arguments and the ports of vLLM's hermes parser."""

from __future__ import annotations

import json
import random

import pytest
from schema_check import problems

from vllm_sim import generate as gen
from vllm_sim import hermes
from vllm_sim.json_args import arguments
from vllm_sim.tools import call_text

pytestmark = pytest.mark.timeout(20)
LOC = {"type": "object", "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                                        "lon": {"type": "number", "minimum": -180, "maximum": 180}},
       "required": ["lat", "lon"]}
DEEP = {"type": "object", "properties": {"deep": {"type": "array", "items": {
    "type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}}}, "required": ["deep"]}
COMPLEX = {
    "type": "object", "$defs": {"Loc": LOC},
    "properties": {
        "city": {"type": "string", "minLength": 3, "maxLength": 20},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "step": {"type": "integer", "multipleOf": 5, "minimum": 0, "maximum": 50},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "verbose": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4, "uniqueItems": True},
        "where": {"$ref": "#/$defs/Loc"},
        "maybe_where": {"anyOf": [{"$ref": "#/$defs/Loc"}, {"type": "null"}]},
        "stops": {"type": "array", "items": {"$ref": "#/$defs/Loc"}},
        "when": {"type": "string", "format": "date-time"},
        "note": {"type": ["string", "null"]},
        "mode": {"anyOf": [{"type": "null"}, {"type": "string", "enum": ["fast", "slow"]}]},
        "kind": {"const": "forecast"},
        "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}],
                 "minItems": 2, "maxItems": 2},
        "filters": {"type": "object", "properties": {"min": {"type": "integer"}, "nested": DEEP},
                    "required": ["nested"]},
        "extra": {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                            {"properties": {"b": {"type": "string"}}, "required": ["b"]}]},
        "optional_count": {"type": "integer", "maximum": -5},
    },
    "required": ["city", "unit", "days", "step", "ratio", "verbose", "tags", "where", "maybe_where", "stops",
                 "when", "note", "mode", "kind", "pair", "filters", "extra", "undeclared"],
}


def test_arguments_satisfy_the_schema():
    for seed in range(300):
        args = arguments(COMPLEX, random.Random(seed))
        assert problems(args, COMPLEX) == [], seed
        assert set(COMPLEX["required"]) <= set(args), seed  # every required property, declared or not
        assert json.loads(json.dumps(args)) == args


def test_arguments_are_deterministic_and_vary_with_the_seed():
    runs = [json.dumps(arguments(COMPLEX, random.Random(s))) for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]
    optional = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(8)}}
    shapes = {tuple(arguments(optional, random.Random(s))) for s in range(20)}
    assert len(shapes) > 5  # optional properties come and go


@pytest.mark.parametrize("schema", [None, {}, {"type": "object"}, {"type": "string"}, {"properties": {}}])
def test_arguments_without_properties_are_an_empty_object(schema):
    assert arguments(schema, random.Random(0)) == {}


def test_recursive_schema_terminates():
    tree = {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}, "minItems": 1}},
            "required": ["kids"]}
    args = arguments(tree, random.Random(3))
    depth, node = 0, args
    while node.get("kids"):
        node, depth = node["kids"][0], depth + 1
    assert 1 <= depth <= 8


def _stream(text: str, finish: str, limit: int | None = None, named: bool = False):
    """(delta, finish) per decode step of a Hermes text, as vLLM streams it (the end-of-turn step included)."""
    pieces = gen.tokenize(text, specials=True)
    steps = pieces[:limit] if limit else pieces + [""]
    s = hermes.ToolStream(named)
    return [s.step(p, finish if k == len(steps) - 1 else None) for k, p in enumerate(steps)]


def test_stream_deltas_reassemble_to_the_parsed_arguments():
    args = {"city": "Paris", "when": {"day": 3, "tags": ["a", "b"]}, "ok": True, "uni": "héllo"}
    text = call_text("get_weather", args)
    content, calls, finish = hermes.message(text, "stop", "auto")
    assert (content, finish) == (None, "tool_calls") and len(calls) == 1
    assert calls[0]["function"] == {"name": "get_weather", "arguments": json.dumps(args, ensure_ascii=False)}
    steps = _stream(text, "stop")
    sent = [d for d, _ in steps if d is not None]
    first, *rest = (tc for d in sent for tc in d.get("tool_calls", ()))
    assert set(first) == {"id", "type", "index", "function"} and first["function"] == {"name": "get_weather"}
    assert first["id"].startswith("chatcmpl-tool-") and len(first["id"]) == 30
    assert all(d["content"] is None for d in sent[:-1]) and sent[-1] == {}
    assert "".join(tc["function"]["arguments"] for tc in rest) == calls[0]["function"]["arguments"]
    assert steps[-1][1] == "tool_calls" and steps[0] == (None, None)  # "<tool_call>" alone sends nothing


@pytest.mark.parametrize("choice,content,finish", [("auto", None, "tool_calls"), ("required", "", "tool_calls"),
                                                   ("named", "", "stop")])
def test_message_content_and_finish_reason_per_choice(choice, content, finish):
    got = hermes.message(call_text("f", {}), "stop", choice)
    assert (got[0], got[2]) == (content, finish) and got[1][0]["function"]["arguments"] == "{}"


def test_truncated_call_is_content_not_a_call():
    text = "".join(gen.tokenize(call_text("f", {"a": 1}), specials=True)[:12])
    assert hermes.message(text, "length", "auto") == (text, [], "length")
    assert hermes.message(text, "length", "required") == (text, [], "length")


def test_stream_cut_when_the_name_completes_gets_empty_arguments_appended():
    # vLLM's finalize_generation appends the parsed-but-unsent arguments ({} -> "{}") to the last delta.
    steps = _stream(call_text("f", {"a": 1}), "length", limit=9)
    delta, finish = steps[-1]
    assert finish == "length" and delta["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}


def test_named_stream_finishes_with_stop():
    assert _stream(call_text("f", {}), "stop", named=True)[-1] == ({}, "stop")
