"""Request-body parsing and validation, failing with the status and error body vLLM would send."""

from __future__ import annotations

import json

import orjson

from . import openai_shapes as shapes

_INT_MSG = "Input should be a valid integer"


class ApiError(Exception):
    """An error response ready to send: HTTP status plus JSON body."""

    def __init__(self, status: int, body: bytes):
        super().__init__(status)
        self.status = status
        self.body = body


def bad_request(message: str, param: str | None = None, value=None) -> ApiError:
    """A VLLMValidationError: its str() appends "(parameter=..., value=...)" to the message."""
    extras = [f"parameter={param}"] if param is not None else []
    if value is not None:
        extras.append(f"value={value}")
    if extras:
        message = f"{message} ({', '.join(extras)})"
    return ApiError(400, shapes.error(message, "BadRequestError", 400, param))


def invalid(kind: str, field: str, msg: str, value, param: str | None = None) -> ApiError:
    # Validators raising VLLMValidationError name their own param; field errors use the location.
    loc = ("body", field) if field else ("body",)
    return ApiError(400, shapes.validation_error(kind, loc, msg, value, param))


def json_body(headers: dict, raw: bytes) -> dict:
    """Parse a JSON object body, enforcing vLLM's application/json content type."""
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(400, shapes.media_type_error())
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, _stdlib_json_error(raw)) from None
    if not isinstance(body, dict):
        raise invalid("model_attributes_type", "",
                      "Input should be a valid dictionary or object to extract fields from", body)
    return body


def get_int(body: dict, name: str, default: int | None) -> int | None:
    """Pydantic-lax integer: ints, integral floats and numeric strings are accepted."""
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if v.is_integer():
            return int(v)
        raise invalid("int_from_float", name, _INT_MSG + ", got a number with a fractional part", v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            raise invalid("int_parsing", name, _INT_MSG + ", unable to parse string as an integer", v) from None
    raise invalid("int_type", name, _INT_MSG, v)


_TRUE = frozenset(("1", "on", "t", "true", "y", "yes"))
_FALSE = frozenset(("0", "off", "f", "false", "n", "no"))


def parse_bool(v) -> tuple[bool | None, tuple[str, str] | None]:
    """Pydantic's lax bool: (value, None), or (None, (error type, message)) when it is not one."""
    if isinstance(v, bool):
        return v, None
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v), None
    if isinstance(v, str) and v.lower() in _TRUE | _FALSE:  # no stripping: " yes" is refused
        return v.lower() in _TRUE, None
    if isinstance(v, (str, int)) or (isinstance(v, float) and v.is_integer()):
        return None, ("bool_parsing", "Input should be a valid boolean, unable to interpret input")
    return None, ("bool_type", "Input should be a valid boolean")


def get_bool(body: dict, name: str, default: bool) -> bool:
    v = body.get(name)
    if v is None:
        return default
    value, problem = parse_bool(v)
    if problem:
        raise invalid(problem[0], name, problem[1], v)
    return value


def get_str(body: dict, name: str, required: bool = False) -> str | None:
    v = body.get(name)
    if v is None:
        if required:
            raise invalid("missing", name, "Field required", body)
        return None
    if not isinstance(v, str):
        raise invalid("string_type", name, "Input should be a valid string", v)
    return v


def require_list(body: dict, name: str) -> list:
    if name not in body:
        raise invalid("missing", name, "Field required", body)
    v = body[name]
    if not isinstance(v, list):
        raise invalid("list_type", name, "Input should be a valid list", v)
    return v


def _stdlib_json_error(raw: bytes) -> bytes:
    # FastAPI decodes with the stdlib, so its message and position are what vLLM reports.
    try:
        json.loads(raw)
    except json.JSONDecodeError as exc:
        return shapes.json_error(exc.pos, exc.msg)
    except (UnicodeDecodeError, ValueError) as exc:
        return shapes.json_error(0, str(exc))
    return shapes.json_error(0, "Expecting value")


def check_model(body: dict, served: tuple, pooling: bool = False, adapters: tuple = ()) -> None:
    """Unknown model names get vLLM's 404; a missing/empty model means the default one. A LoRA
    adapter's name (`adapters`) is known too, but the message lists the base models only."""
    name = get_str(body, "model")
    if name and name not in served and name not in adapters:
        if pooling:  # the pooling servers word it differently and leave param null
            raise ApiError(404, shapes.error(f"The model `{name}` does not exist.", "NotFoundError", 404))
        msg = f"The model `{name}` does not exist. Valid aliases: {', '.join(served)}."
        raise ApiError(404, shapes.error(msg, "NotFoundError", 404, "model"))


def check_stream_options(body: dict) -> None:
    """vLLM's validate_stream_options, a "before" validator on the raw body (plain truthiness).

    Its VLLMValidationError is not a ValueError, so pydantic does not wrap it: the answer is a
    400 BadRequestError naming the parameter, not a "validation error" list.
    """
    if body.get("stream_options") and not body.get("stream"):
        raise bad_request("Stream options can only be defined when `stream=True`.", "stream_options")


def stream_flags(body: dict) -> tuple[bool, bool, bool]:
    """(stream, include_usage, continuous_usage_stats); check_stream_options ran before."""
    stream = get_bool(body, "stream", False)
    opts = body.get("stream_options")
    if opts is None:
        return stream, False, False
    if not isinstance(opts, dict):
        raise invalid("model_type", "stream_options",
                      "Input should be a valid dictionary or instance of StreamOptions", opts)
    include = get_bool(opts, "include_usage", False)
    return stream, include, include and get_bool(opts, "continuous_usage_stats", False)


def check_n(n: int) -> int:
    if n < 1:
        raise bad_request(f"n must be at least 1, got {n}.")
    if n > 128:
        raise bad_request(f"n must be at most 128, got {n}.")
    return n


def check_prompt_len(prompt_len: int, max_model_len: int) -> None:
    if prompt_len > max_model_len:
        # vLLM's tokenizer truncates at max_model_len + 1, so it only ever knows "at least" that many.
        seen = max_model_len + 1
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your prompt "
            f"contains at least {seen} input tokens, which exceeds this limit even without any output "
            f"tokens. Please reduce the length of the input prompt.", "input_tokens", seen)


def clamp_max_tokens(requested: int | None, default: int, prompt_len: int, max_model_len: int) -> int:
    """vLLM's get_max_tokens: never more than the context left after the prompt."""
    value = min(default if requested is None else requested, max_model_len - prompt_len)
    if value < 1:
        raise bad_request(f"max_tokens must be at least 1, got {value}.", "max_tokens", value)
    return value
