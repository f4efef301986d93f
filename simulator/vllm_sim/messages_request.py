"""POST /v1/messages and /v1/messages/count_tokens bodies as vLLM 0.32 validates them.

vLLM parses the body into AnthropicMessagesRequest (vllm/entrypoints/anthropic/protocol.py), a
pydantic model in lax mode: every field's errors are collected, in field order, and answered
by FastAPI's handler like any other request's (400, type "Bad Request", OpenAI's shape). This
module checks the fields the simulator uses and those a client commonly gets wrong: model,
messages (roles, content, block types and their typed fields), max_tokens, stop_sequences,
stream, system, temperature, tool_choice, tools, top_k and top_p.
"""

from __future__ import annotations

from . import openai_shapes as shapes
from .validate import ApiError, parse_bool

ROLES = ("user", "assistant", "system")
BLOCK_TYPES = ("text", "image", "tool_use", "tool_result", "tool_reference", "thinking", "redacted_thinking",
               "tool_addition", "tool_removal")
CHOICE_TYPES = ("auto", "any", "tool", "none")
# AnthropicContentBlock's optional fields and the type each must have.
_BLOCK_STR = ("text", "id", "tool_use_id", "name", "tool_name", "thinking", "signature", "data")
_BLOCK_DICT = ("source", "input")


def _expected(options: tuple) -> str:
    return ", ".join(repr(o) for o in options[:-1]) + f" or {options[-1]!r}"


def _literal(loc: tuple, value, options: tuple) -> tuple:
    expected = _expected(options)
    return ("literal_error", loc, f"Input should be {expected}", value, {"expected": expected})


def _value_error(loc: tuple, message: str, value) -> tuple:
    return ("value_error", loc, f"Value error, {message}", value, {"error": ValueError(message)})


def _missing(loc: tuple, parent) -> tuple:
    return ("missing", loc, "Field required", parent, None)


def _str_errors(loc: tuple, value) -> list:
    return [] if isinstance(value, str) else [("string_type", loc, "Input should be a valid string", value, None)]


def _number_errors(loc: tuple, value, kind: str) -> list:
    """pydantic's lax float or int (numbers, numeric strings; no booleans for floats)."""
    if value is None:
        return []
    if kind == "int":
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return []
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return []
        return [("int_type", loc, "Input should be a valid integer", value, None)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return []
    if isinstance(value, str):
        try:
            float(value.strip())
            return []
        except ValueError:
            return [("float_parsing", loc, "Input should be a valid number, unable to parse string as a "
                     "number", value, None)]
    return [("float_type", loc, "Input should be a valid number", value, None)]


def block_errors(loc: tuple, block) -> list:
    """AnthropicContentBlock."""
    if not isinstance(block, dict):
        return [("model_type", loc, "Input should be a valid dictionary or instance of AnthropicContentBlock",
                 block, None)]
    errors = []
    if "type" not in block:
        errors.append(_missing(loc + ("type",), block))
    elif block["type"] not in BLOCK_TYPES:
        errors.append(_literal(loc + ("type",), block["type"], BLOCK_TYPES))
    for name in _BLOCK_STR:
        if block.get(name) is not None:
            errors += _str_errors(loc + (name,), block[name])
    for name in _BLOCK_DICT:
        if block.get(name) is not None and not isinstance(block[name], dict):
            errors.append(("dict_type", loc + (name,), "Input should be a valid dictionary", block[name], None))
    content = block.get("content")
    if content is not None and not isinstance(content, str) and not (
            isinstance(content, list) and all(isinstance(c, dict) for c in content)):
        errors.append(("string_type", loc + ("content",), "Input should be a valid string", content, None))
    if block.get("is_error") is not None and parse_bool(block["is_error"])[1]:
        errors.append(("bool_type", loc + ("is_error",), "Input should be a valid boolean", block["is_error"], None))
    return errors


def content_errors(loc: tuple, content) -> list:
    """`str | list[AnthropicContentBlock]`: a value that is neither fails both members."""
    if isinstance(content, str):
        return []
    errors = [("string_type", loc, "Input should be a valid string", content, None)]
    if not isinstance(content, list):
        return errors + [("list_type", loc, "Input should be a valid list", content, None)]
    inner = [e for i, block in enumerate(content) for e in block_errors(loc + (i,), block)]
    return errors + inner if inner else []


def _message_errors(loc: tuple, msg) -> list:
    if not isinstance(msg, dict):
        return [("model_type", loc, "Input should be a valid dictionary or instance of AnthropicMessage",
                 msg, None)]
    errors = []
    if "role" not in msg:
        errors.append(_missing(loc + ("role",), msg))
    elif msg["role"] not in ROLES:
        errors.append(_literal(loc + ("role",), msg["role"], ROLES))
    if "content" not in msg:
        errors.append(_missing(loc + ("content",), msg))
    else:
        errors += content_errors(loc + ("content",), msg["content"])
    return errors


def _tool_errors(loc: tuple, tool) -> list:
    if not isinstance(tool, dict):
        return [("model_type", loc, "Input should be a valid dictionary or instance of AnthropicTool", tool, None)]
    errors = [_missing(loc + ("name",), tool)] if "name" not in tool else _str_errors(loc + ("name",), tool["name"])
    if tool.get("description") is not None:
        errors += _str_errors(loc + ("description",), tool["description"])
    if "input_schema" not in tool:
        errors.append(_missing(loc + ("input_schema",), tool))
    elif not isinstance(tool["input_schema"], dict):
        errors.append(("dict_type", loc + ("input_schema",), "Input should be a valid dictionary",
                       tool["input_schema"], None))
    return errors


def _choice_errors(loc: tuple, choice) -> list:
    if choice is None:
        return []
    if not isinstance(choice, dict):
        return [("model_type", loc, "Input should be a valid dictionary or instance of AnthropicToolChoice",
                 choice, None)]
    if "type" not in choice:
        return [_missing(loc + ("type",), choice)]
    if choice["type"] not in CHOICE_TYPES:
        return [_literal(loc + ("type",), choice["type"], CHOICE_TYPES)]
    if choice.get("name") is not None:
        return _str_errors(loc + ("name",), choice["name"])
    if choice["type"] == "tool":
        return [_value_error(loc, "tool_choice.name is required when type is 'tool'", choice)]
    return []


def _list_errors(body: dict, name: str, item_errors) -> list:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        return [("list_type", ("body", name), "Input should be a valid list", value, None)]
    return [e for i, item in enumerate(value) for e in item_errors(("body", name, i), item)]


def _conversation_errors(body: dict) -> list:
    """model and messages, the fields both requests start with."""
    errors = []
    if "model" not in body:
        errors.append(_missing(("body", "model"), body))
    elif not isinstance(body["model"], str):
        errors += _str_errors(("body", "model"), body["model"])
    elif not body["model"]:
        errors.append(_value_error(("body", "model"), "Model is required", body["model"]))
    if "messages" not in body:
        errors.append(_missing(("body", "messages"), body))
    else:
        errors += _list_errors(body, "messages", _message_errors)
    return errors


def _system_errors(body: dict) -> list:
    return [] if body.get("system") is None else content_errors(("body", "system"), body["system"])


def _tools_errors(body: dict) -> list:
    return _choice_errors(("body", "tool_choice"), body.get("tool_choice")) + \
        _list_errors(body, "tools", _tool_errors)


def _max_tokens_errors(body: dict) -> list:
    if "max_tokens" not in body:
        return [_missing(("body", "max_tokens"), body)]
    value = body["max_tokens"]
    errors = _number_errors(("body", "max_tokens"), value, "int")
    if not errors and value is not None and int(float(value)) <= 0:
        errors.append(_value_error(("body", "max_tokens"), "max_tokens must be positive", value))
    return errors


def check_messages_request(body: dict) -> None:
    """AnthropicMessagesRequest's field validation, its errors in field order."""
    errors = _conversation_errors(body) + _max_tokens_errors(body)
    errors += _list_errors(body, "stop_sequences", _str_errors)
    problem = parse_bool(body["stream"])[1] if body.get("stream") is not None else None
    if problem:
        errors.append((problem[0], ("body", "stream"), problem[1], body["stream"], None))
    errors += _system_errors(body) + _number_errors(("body", "temperature"), body.get("temperature"), "float")
    errors += _tools_errors(body)
    errors += _number_errors(("body", "top_k"), body.get("top_k"), "int")
    errors += _number_errors(("body", "top_p"), body.get("top_p"), "float")
    if errors:
        raise ApiError(400, shapes.validation_errors(errors))


def check_count_request(body: dict) -> None:
    """AnthropicCountTokensRequest's field validation."""
    errors = _conversation_errors(body) + _system_errors(body) + _tools_errors(body)
    if errors:
        raise ApiError(400, shapes.validation_errors(errors))
