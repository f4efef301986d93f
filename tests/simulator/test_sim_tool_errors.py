"""Tool request errors: status, type, param and message exactly as vLLM 0.32 answers them.

The expected bodies were taken from vLLM 0.32's own request model and exception handlers (FastAPI
app with ChatCompletionRequest and init_exception_handler) and from OnlineRenderer's source.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(30)
U = [{"role": "user", "content": "hi"}]
F = [{"type": "function", "function": {"name": "f"}}]
USAGE = 'Correct usage: `{"type": "function", "function": {"name": "my_function"}}`'


def bad(message: str, param: str | None) -> tuple:
    """A VLLMValidationError from a "before" validator: BadRequestError, "(parameter=...)" appended."""
    return 400, {"message": f"{message} (parameter={param})", "type": "BadRequestError", "param": param, "code": 400}


def pyd(entries: list, param: str | None = None) -> tuple:
    """Pydantic errors as vLLM lists them (type "Bad Request", param = first location)."""
    label = "error" if len(entries) == 1 else "errors"
    message = f"{len(entries)} validation {label}:\n" + "\n".join(f"  {e!r}" for e in entries)
    return 400, {"message": message, "type": "Bad Request", "param": param or entries[0]["loc"], "code": 400}


def lit(loc: str, value, expected: str) -> dict:
    return {"type": "literal_error", "loc": loc, "msg": f"Input should be '{expected}'", "input": value,
            "ctx": {"expected": f"'{expected}'"}}


CASES = {
    "empty tools": ({"messages": U, "tools": []}, bad(
        "`tools` must not be an empty array. Either provide at least one tool or omit the field entirely.", "tools")),
    "tool_choice without tools": ({"messages": U, "tool_choice": "required"},
                                  bad("When using `tool_choice`, `tools` must be set.", "tool_choice")),
    "checked before the fields": ({"tool_choice": "auto"},
                                  bad("When using `tool_choice`, `tools` must be set.", "tool_choice")),
    "unknown tool_choice": ({"messages": U, "tool_choice": "always", "tools": F}, bad(
        'Invalid value for `tool_choice`: always! Only named tools, "none", "auto" or "required" are supported.',
        "tool_choice")),
    "named tool not in tools": ({"messages": U, "tool_choice": {"type": "function", "function": {"name": "g"}},
                                 "tools": F}, bad("The tool specified in `tool_choice` does not match any of the "
                                                  "specified `tools`", "tool_choice")),
    "named without function": ({"messages": U, "tool_choice": {"type": "function"}, "tools": F}, bad(
        f"Invalid value for `function`: `None` in `tool_choice`! {USAGE}", "tool_choice.function")),
    "named without name": ({"messages": U, "tool_choice": {"type": "function", "function": {}}, "tools": F}, bad(
        f"Expected field `name` in `function` in `tool_choice`! {USAGE}", "tool_choice.function.name")),
    "named with empty name": ({"messages": U, "tool_choice": {"function": {"name": ""}}, "tools": F}, bad(
        f"Invalid `name` in `function`: `` in `tool_choice`! {USAGE}", "tool_choice.function.name")),
    # check_tool_usage indexes unvalidated tools: Python's own KeyError (500) and TypeError (400) escape.
    "named, tool without function": ({"messages": U, "tool_choice": {"function": {"name": "f"}},
                                      "tools": [{"type": "function"}]},
                                     (500, {"message": "'function'", "type": "InternalServerError", "param": None,
                                            "code": 500})),
    "named, tool is a string": ({"messages": U, "tool_choice": {"function": {"name": "f"}}, "tools": ["f"]},
                                (400, {"message": "string indices must be integers, not 'str'",
                                       "type": "BadRequestError", "param": None, "code": 400})),
    "tool without name": ({"messages": U, "tools": [{"type": "function", "function": {"description": "x"}}]}, pyd([
        {"type": "missing", "loc": "body.tools.0.function.name", "msg": "Field required",
         "input": "<dict of 1 items>"}])),
    "tool of another type": ({"messages": U, "tools": [{"type": "code", "function": {"name": "f"}}]},
                             pyd([lit("body.tools.0.type", "code", "function")])),
    "tool not an object": ({"messages": U, "tools": ["f"]}, pyd([
        {"type": "model_attributes_type", "loc": "body.tools.0",
         "msg": "Input should be a valid dictionary or object to extract fields from", "input": "f"}])),
    "two bad tools": ({"messages": U, "tools": [{"type": "function", "function": {}}, {"type": "function"}]}, pyd([
        {"type": "missing", "loc": "body.tools.0.function.name", "msg": "Field required", "input": "<dict of 0 items>"},
        {"type": "missing", "loc": "body.tools.1.function", "msg": "Field required", "input": "<dict of 1 items>"}])),
    "missing messages and bad tool": ({"tools": [{"type": "function"}]}, pyd([
        {"type": "missing", "loc": "body.messages", "msg": "Field required", "input": "<dict of 2 items>"},
        {"type": "missing", "loc": "body.tools.0.function", "msg": "Field required", "input": "<dict of 1 items>"}])),
    "named choice of another type": ({"messages": U, "tool_choice": {"type": "x", "function": {"name": "f"}},
                                      "tools": F}, pyd(
        [lit("body.tool_choice", "<dict of 2 items>", c) for c in ("none", "auto", "required")]
        + [lit("body.tool_choice.type", "x", "function")])),
    "parallel_tool_calls not a bool": ({"messages": U, "tools": F, "parallel_tool_calls": "maybe"}, pyd([
        {"type": "bool_parsing", "loc": "body.parallel_tool_calls",
         "msg": "Input should be a valid boolean, unable to interpret input", "input": "maybe"}])),
    "history: arguments as an object": ({"messages": U + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}]}, pyd([
            {"type": "string_type", "loc": "body.0.ChatCompletionMessageFunctionToolCallParam.function",
             "msg": "Input should be a valid string", "input": "<dict of 1 items>"},
            {"type": "missing", "loc": "body.0.ChatCompletionMessageCustomToolCallParam.custom",
             "msg": "Field required", "input": "<dict of 3 items>"},
            lit("body.0.ChatCompletionMessageCustomToolCallParam.type", "function", "custom")])),
    "history: tool_calls a number": ({"messages": [{"role": "assistant", "content": None, "tool_calls": 5}]},
                                     (400, {"message": "'int' object is not iterable", "type": "BadRequestError",
                                            "param": None, "code": 400})),
}


@pytest.mark.parametrize("name", CASES)
def test_request_errors(chat_sim, name):
    body, (status, error) = CASES[name]
    r = chat_sim.post("/v1/chat/completions", body)
    assert (r.status_code, r.json()) == (status, {"error": error})


NO_PARSER_AUTO = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'


@pytest.mark.parametrize("choice,message", [
    ("auto", NO_PARSER_AUTO),
    (None, NO_PARSER_AUTO),  # tools without tool_choice default to "auto"
    ("required", 'tool_choice="required" requires --tool-call-parser to be set'),
    ({"type": "function", "function": {"name": "f"}}, 'tool_choice=function "f" requires --tool-call-parser to be set'),
])
def test_without_a_parser_only_none_is_served(chat_sim, choice, message):
    body = {"messages": U, "tools": F} | ({} if choice is None else {"tool_choice": choice})
    r = chat_sim.post("/v1/chat/completions", body)
    assert (r.status_code, r.json()) == (400, {"error": {"message": message, "type": "BadRequestError",
                                                         "param": None, "code": 400}})
    none = chat_sim.post("/v1/chat/completions", {"messages": U, "tools": F, "tool_choice": "none"})
    assert none.status_code == 200 and "tool_calls" not in none.json()["choices"][0]["message"]


def test_refusal_comes_after_the_model_check_and_needs_both_flags(chat_sim, start_sim):
    r = chat_sim.post("/v1/chat/completions", {"model": "nope", "messages": U, "tools": F})
    assert r.status_code == 404
    # vLLM loads the parser only with --enable-auto-tool-choice: --tool-call-parser alone changes nothing.
    sim = start_sim("--tool-call-parser", "hermes")
    r = sim.post("/v1/chat/completions", {"messages": U, "tools": F, "tool_choice": "required"})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith('tool_choice="required" requires')


@pytest.mark.parametrize("flags,message", [
    (("--enable-auto-tool-choice",), "Error: --enable-auto-tool-choice requires --tool-call-parser"),
    (("--enable-auto-tool-choice", "--tool-call-parser", "nope"),
     "invalid tool call parser: nope (chose from { hermes })"),
])
def test_start_up_flag_errors(start_sim, flags, message):
    with pytest.raises(RuntimeError, match="did not start") as info:
        start_sim(*flags)
    assert message in str(info.value)
