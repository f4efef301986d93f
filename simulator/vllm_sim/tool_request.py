"""Chat `tools` / `tool_choice` / `parallel_tool_calls` checks, in vLLM 0.32's order and wording.

vLLM checks a chat request in three layers, and so does chat_plan:
1. check_tool_usage, a pydantic "before" validator of ChatCompletionRequest. It raises a
   VLLMValidationError, which escapes pydantic and is answered 400 BadRequestError with
   "(parameter=...)" appended; it runs before any field is validated. It indexes the raw tools
   (tool["function"]["name"]), so a malformed list fails there with Python's own KeyError (500)
   or TypeError (400) - reproduced by running the same expressions.
2. Field validation: every wrong field is one pydantic error, listed together ("N validation
   errors", type "Bad Request", param = first location). field_errors() returns them.
3. Serving: without a loaded tool parser (--enable-auto-tool-choice and --tool-call-parser),
   OnlineRenderer.render_chat refuses "auto", "required" and named choices (check_parser).
Source: vllm/entrypoints/openai/chat_completion/protocol.py, vllm/renderers/online_renderer.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import openai_shapes as shapes
from .validate import ApiError, bad_request, parse_bool

_USAGE = 'Correct usage: `{"type": "function", "function": {"name": "my_function"}}`'
_LITERAL = "Input should be 'function'"
_MODEL_TYPE = "Input should be a valid dictionary or object to extract fields from"


@dataclass(frozen=True)
class ToolRequest:
    """A request's validated tool settings."""

    tools: tuple  # the function definitions: dicts with "name" and optional "description", "parameters"
    choice: str  # "none", "auto", "required" or "named"; an explicit null tool_choice counts as "none"
    name: str | None  # the function a named tool_choice forces
    parallel: bool  # parallel_tool_calls (the simulator emits one call per choice either way)


def check_tool_usage(body: dict) -> None:
    """ChatCompletionRequest.check_tool_usage, line by line (it may set tool_choice to "auto")."""
    if body.get("tools") == []:
        raise bad_request("`tools` must not be an empty array. Either provide at least one tool or omit "
                          "the field entirely.", "tools")
    if "tool_choice" not in body and body.get("tools"):
        body["tool_choice"] = "auto"
    choice = body.get("tool_choice")
    if choice == "none" or choice is None:
        return
    if body.get("tools") is None:
        raise bad_request("When using `tool_choice`, `tools` must be set.", "tool_choice")
    if choice not in ("auto", "required") and not isinstance(choice, dict):
        raise bad_request(f'Invalid value for `tool_choice`: {choice}! Only named tools, "none", "auto" or '
                          f'"required" are supported.', "tool_choice")
    if isinstance(choice, dict):
        _check_named(choice, body["tools"])


def _check_named(choice: dict, tools) -> None:
    function = choice.get("function")
    if not isinstance(function, dict):
        raise bad_request(f"Invalid value for `function`: `{function}` in `tool_choice`! {_USAGE}",
                          "tool_choice.function")
    if "name" not in function:
        raise bad_request(f"Expected field `name` in `function` in `tool_choice`! {_USAGE}",
                          "tool_choice.function.name")
    name = function["name"]
    if not isinstance(name, str) or len(name) == 0:
        raise bad_request(f"Invalid `name` in `function`: `{name}` in `tool_choice`! {_USAGE}",
                          "tool_choice.function.name")
    try:
        # vLLM indexes the unvalidated tools here: malformed entries raise Python's own errors.
        found = any(tool["function"]["name"] == name for tool in tools)
    except KeyError as exc:  # vLLM's generic handler: 500 with str(exc), e.g. "'function'"
        raise ApiError(500, shapes.error(str(exc), "InternalServerError", 500)) from None
    except TypeError as exc:  # the TypeError fallback handler: 400 BadRequestError
        raise ApiError(400, shapes.error(str(exc), "BadRequestError", 400)) from None
    if not found:
        raise bad_request("The tool specified in `tool_choice` does not match any of the specified `tools`",
                          "tool_choice")


def tools_errors(body: dict) -> list:
    """Pydantic errors of the `tools` field (list[ChatCompletionToolsParam] | None)."""
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        return [("list_type", ("body", "tools"), "Input should be a valid list", tools, None)]
    return [e for i, tool in enumerate(tools) for e in _tool_errors(("body", "tools", i), tool)]


def field_errors(body: dict) -> list:
    """Pydantic errors of tools, tool_choice and parallel_tool_calls, in field order."""
    errors = tools_errors(body)
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type", "function") != "function":
        # The union's three literal branches fail, then the named branch on its "type".
        errors += [("literal_error", ("body", "tool_choice"), f"Input should be '{lit}'", choice,
                    {"expected": f"'{lit}'"}) for lit in ("none", "auto", "required")]
        errors.append(("literal_error", ("body", "tool_choice", "type"), _LITERAL, choice["type"],
                       {"expected": "'function'"}))
    errors += _bool_errors(("body", "parallel_tool_calls"), body.get("parallel_tool_calls"))
    return errors


def _tool_errors(loc: tuple, tool) -> list:
    """ChatCompletionToolsParam: type, function (FunctionDefinition), defer_loading."""
    if not isinstance(tool, dict):
        return [("model_attributes_type", loc, _MODEL_TYPE, tool, None)]
    errors = []
    if "type" in tool and tool["type"] != "function":
        errors.append(("literal_error", loc + ("type",), _LITERAL, tool["type"], {"expected": "'function'"}))
    fn = tool.get("function")
    if "function" not in tool:
        errors.append(("missing", loc + ("function",), "Field required", tool, None))
    elif not isinstance(fn, dict):
        errors.append(("model_attributes_type", loc + ("function",), _MODEL_TYPE, fn, None))
    else:
        errors += _function_errors(loc + ("function",), fn)
    return errors + _bool_errors(loc + ("defer_loading",), tool.get("defer_loading"))


def _function_errors(loc: tuple, fn: dict) -> list:
    """FunctionDefinition: name, description, parameters, strict, defer_loading."""
    errors = []
    if "name" not in fn:
        errors.append(("missing", loc + ("name",), "Field required", fn, None))
    elif not isinstance(fn["name"], str):
        errors.append(("string_type", loc + ("name",), "Input should be a valid string", fn["name"], None))
    desc, params = fn.get("description"), fn.get("parameters")
    if desc is not None and not isinstance(desc, str):
        errors.append(("string_type", loc + ("description",), "Input should be a valid string", desc, None))
    if params is not None and not isinstance(params, dict):
        errors.append(("dict_type", loc + ("parameters",), "Input should be a valid dictionary", params, None))
    for key in ("strict", "defer_loading"):
        errors += _bool_errors(loc + (key,), fn.get(key))
    return errors


def _bool_errors(loc: tuple, value) -> list:
    if value is None:
        return []
    problem = parse_bool(value)[1]
    return [(problem[0], loc, problem[1], value, None)] if problem else []


def raise_field_errors(errors: list) -> None:
    if errors:
        raise ApiError(400, shapes.validation_errors(errors))


def normalize_history(body: dict) -> None:
    """ChatCompletionRequest._normalize_messages_before: a non-list tool_calls becomes list(it)."""
    messages = body.get("messages")
    for msg in messages if isinstance(messages, list) else ():
        calls = msg.get("tool_calls") if isinstance(msg, dict) else None
        if calls is not None and not isinstance(calls, list):
            try:
                msg["tool_calls"] = list(calls)  # a string becomes its characters, an object its keys
            except TypeError as exc:  # e.g. a number: escapes pydantic, answered by the TypeError handler
                raise ApiError(400, shapes.error(str(exc), "BadRequestError", 400)) from None


def history_errors(messages: list) -> list:
    """The first malformed assistant tool_calls entry, as pydantic reports it.

    vLLM validates these lazily (an Iterable field, drained by an "after" validator), so they
    are only seen when every field is valid, only the first bad entry counts, and its location
    starts at the entry's index in its message's tool_calls. pydantic tries both members of the
    tool-call union (function, custom) and lists both failures; vLLM's location cleaner drops the
    segment "arguments".
    """
    for msg in messages:
        calls = msg.get("tool_calls") if isinstance(msg, dict) else None
        for j, call in enumerate(calls or ()):
            errors = _call_errors(j, call)
            if errors:
                return errors
    return []


def _call_errors(j: int, call) -> list:
    fn_loc = ("body", j, "ChatCompletionMessageFunctionToolCallParam")
    custom_loc = ("body", j, "ChatCompletionMessageCustomToolCallParam")
    if not isinstance(call, dict):
        return [("dict_type", loc, "Input should be a valid dictionary", call, None) for loc in (fn_loc, custom_loc)]
    fn_errors = _member_errors(fn_loc, call, "function", ("arguments", "name"))
    return fn_errors + _member_errors(custom_loc, call, "custom", ("input", "name")) if fn_errors else []


def _member_errors(loc: tuple, call: dict, kind: str, inner: tuple) -> list:
    """One union member, a TypedDict {id, <kind>: {inner...}, type: Literal[kind]}, against an entry."""
    errors = _str_errors(loc + ("id",), call, "id")
    if kind not in call:
        errors.append(("missing", loc + (kind,), "Field required", call, None))
    elif not isinstance(call[kind], dict):
        errors.append(("dict_type", loc + (kind,), "Input should be a valid dictionary", call[kind], None))
    else:
        for key in inner:  # vLLM's location cleaner drops an "arguments" segment
            where = loc + (kind,) if key == "arguments" else loc + (kind, key)
            errors += _str_errors(where, call[kind], key)
    if "type" not in call:
        errors.append(("missing", loc + ("type",), "Field required", call, None))
    elif call["type"] != kind:
        errors.append(("literal_error", loc + ("type",), f"Input should be '{kind}'", call["type"],
                       {"expected": f"'{kind}'"}))
    return errors


def _str_errors(where: tuple, obj: dict, key: str) -> list:
    if key not in obj:
        return [("missing", where, "Field required", obj, None)]
    if not isinstance(obj[key], str):
        return [("string_type", where, "Input should be a valid string", obj[key], None)]
    return []


def parse(body: dict) -> ToolRequest | None:
    """The validated settings (after field_errors found none); None when the request has no tools."""
    tools = body.get("tools")
    if not tools:
        return None
    choice = body.get("tool_choice")
    named = choice["function"]["name"] if isinstance(choice, dict) else None
    kind = "named" if named else (choice if choice in ("auto", "required") else "none")
    ptc = body.get("parallel_tool_calls")
    return ToolRequest(tuple(t["function"] for t in tools), kind, named, True if ptc is None else parse_bool(ptc)[0])


def template_tools(functions) -> list | None:
    """Validated tools as vLLM hands them to the chat template (ChatCompletionToolsParam dumps)."""
    if not functions:
        return None
    return [{"type": "function", "function": {"name": f["name"], "description": f.get("description"),
                                              "parameters": f.get("parameters")}} for f in functions]


def tokenize_tools(body: dict) -> list | None:
    """/tokenize's optional tools (TokenizeChatRequest.tools: field checks only, [] allowed)."""
    raise_field_errors(tools_errors(body))
    return template_tools([t["function"] for t in body.get("tools") or ()])


def check_parser(req: ToolRequest | None, parser: str | None) -> None:
    """OnlineRenderer.render_chat: only a loaded tool parser serves auto, required or named choices."""
    if req is None or req.choice == "none" or parser is not None:
        return
    if req.choice == "auto":
        raise ApiError(400, shapes.error('"auto" tool choice requires --enable-auto-tool-choice and '
                                         '--tool-call-parser to be set', "BadRequestError", 400))
    desc = f'function "{req.name}"' if req.choice == "named" else f'"{req.choice}"'
    raise ApiError(400, shapes.error(f"tool_choice={desc} requires --tool-call-parser to be set",
                                     "BadRequestError", 400))
