"""POST /v1/responses request -> plan, as vLLM 0.32 handles it with the response store disabled.

Checks run in vLLM's order: ResponsesRequest's "before" validators, then field validation,
then OpenAIServingResponses (model, background, previous_response_id), then rendering (input
items -> chat messages, prompt length), then SamplingParams. The conversation is rendered
like the equivalent chat request, so it gets the same tokens, prefix-cache blocks and text.
"""

from __future__ import annotations

import time

from . import generate as gen
from . import openai_shapes as shapes
from . import responses_input as items
from .kv_cache import PromptBlocks
from .lora import adapter_named
from .responses_stream import ResponsesEngine
from .validate import (ApiError, bad_request, check_model, check_prompt_len, clamp_max_tokens, get_bool,
                       get_int, get_str, invalid)

_SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority")
_TRUNCATIONS = ("auto", "disabled")
_TOOL_CHOICES = ("none", "auto", "required")
_LOGPROBS_INCLUDE = "message.output_text.logprobs"
_GREEDY_EPS = 1e-5  # SamplingParams._SAMPLING_EPS: below it sampling is greedy and top_p is reset to 1
_FUNCTION_TOOL_KEYS = ("name", "parameters", "strict", "type", "allowed_callers", "async", "defer_loading",
                       "description", "output_schema")  # openai FunctionTool field order
_NO_STORE_BACKGROUND = ("This vLLM engine does not support `store=True` and therefore does not support the "
                        "background mode. To enable these features, set the environment variable "
                        "`VLLM_ENABLE_RESPONSES_API_STORE=1` when launching the vLLM server.")


class ResponsesPlan:
    """One Responses request, decided up front (the Engine reads stream, gens, prompt_tokens,
    max_tokens and kv_prompts; the rest shapes the answer)."""

    __slots__ = ("stream", "gens", "prompt_tokens", "max_tokens", "kv_prompts", "template", "logprobs",
                 "full_blocks", "claim", "opened", "priority")


# ---- field parsing (pydantic's lax mode) ---------------------------------------
def _float(body: dict, name: str) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            raise invalid("float_parsing", name, "Input should be a valid number, unable to parse string as a "
                          "number", v) from None
    raise invalid("float_type", name, "Input should be a valid number", v)


def _literal(body: dict, name: str, allowed: tuple, default: str) -> str:
    v = body.get(name)
    if v is None:
        return default
    if v not in allowed:
        expected = ", ".join(repr(a) for a in allowed[:-1]) + f" or {allowed[-1]!r}"
        entry = {"type": "literal_error", "loc": f"body.{name}", "msg": f"Input should be {expected}",
                 "input": str(v), "ctx": {"expected": expected}}
        raise ApiError(400, shapes.error(f"1 validation error:\n  {entry!r}", "Bad Request", 400, f"body.{name}"))
    return v


def _metadata(body: dict) -> dict | None:
    meta = body.get("metadata")
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise invalid("dict_type", "metadata", "Input should be a valid dictionary", meta)
    for key, value in meta.items():
        if not isinstance(value, str):
            raise invalid("string_type", f"metadata.{key}", "Input should be a valid string", value)
    return meta


# ---- tools and tool_choice (echoed back as vLLM's models dump them) ---------------
def _tools(body: dict) -> list:
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid("list_type", "tools", "Input should be a valid list", tools)
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            out.append(tool)  # other tool types are echoed as sent
            continue
        if not isinstance(tool.get("name"), str):
            raise invalid("missing", f"tools.{i}.FunctionTool.name", "Field required", tool)
        dumped = {k: tool.get(k) for k in _FUNCTION_TOOL_KEYS}
        dumped.update((k, v) for k, v in tool.items() if k not in dumped)  # extra keys follow, kept
        out.append(dumped)
    return out


def _tool_choice(body: dict):
    """ResponsesRequest.check_tool_usage: no tools turns auto into none; a named tool must exist."""
    choice, tools = body.get("tool_choice", "auto"), body.get("tools")
    named = isinstance(choice, dict) and choice.get("type") in ("function", "custom")
    if not tools:
        if choice in ("auto", "none"):
            return "none"
        if choice == "required":
            raise bad_request("Tool choice 'required' must be specified with 'tools' parameter.", "tool_choice")
    names = {t.get("name") for t in tools or () if isinstance(t, dict)}
    if named and choice.get("name") not in names:
        raise bad_request("Tool choice 'function' not found in 'tools' parameter.", "tool_choice")
    if named:
        return {"name": choice["name"], "type": choice["type"]}  # ToolChoiceFunction's field order
    if isinstance(choice, str):
        _literal({"tool_choice": choice}, "tool_choice", _TOOL_CHOICES, "auto")
    return choice


def _echo_text(body: dict) -> dict | None:
    text = body.get("text")
    if not isinstance(text, dict):
        return None
    fmt = text.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        fmt = {k: fmt.get(k) for k in ("name", "schema", "type", "description", "strict")}
    return {"format": fmt, "verbosity": text.get("verbosity")}


def _echo_reasoning(body: dict) -> dict | None:
    r = body.get("reasoning")
    if not isinstance(r, dict):
        return None
    return {k: r.get(k) for k in ("context", "effort", "generate_summary", "mode", "summary")}


# ---- the plan ----------------------------------------------------------------------
def _before_validators(body: dict) -> tuple[dict, object]:
    """ResponsesRequest's mode="before" validators, which pydantic runs last-defined first: the
    body as field validation then sees it (check_tool_usage may set tool_choice), and tool_choice."""
    choice = _tool_choice(body)
    if body.get("prompt") is not None:
        raise bad_request("prompt template is not supported", "prompt")
    if body.get("background") and body.get("store", True) is False:
        raise bad_request("background can only be used when `store` is true", "background")
    return ({**body, "tool_choice": choice} if choice == "none" else body), choice


def _sampling(f: dict, requested: int | None, prompt_tokens: int, cfg) -> tuple[float, float, int]:
    """SamplingParams defaults and _verify_args checks, in its order: (temperature, top_p, max_tokens)."""
    temperature = 1.0 if f["temperature"] is None else f["temperature"]
    top_p = 1.0 if f["top_p"] is None or temperature < _GREEDY_EPS else f["top_p"]
    if temperature < 0:
        raise bad_request(f"temperature must be non-negative, got {temperature}.", "temperature", temperature)
    if temperature > 2:
        raise bad_request(f"temperature must be in [0, 2], got {temperature}.", "temperature", temperature)
    if not 0 < top_p <= 1:
        raise bad_request(f"top_p must be in (0, 1], got {top_p}.", "top_p", top_p)
    max_tokens = clamp_max_tokens(requested, cfg.default_max_tokens, prompt_tokens, cfg.max_model_len)
    return temperature, top_p, max_tokens


def _check_lengths(requested: int | None, prompt_tokens: int, max_model_len: int) -> None:
    """The renderer's TokenizeParams checks, then _validate_generator_input."""
    if requested and requested > max_model_len:
        raise bad_request(f"max_output_tokens={requested} cannot be greater than max_model_len={max_model_len}. "
                          "Please request fewer output tokens.", "max_output_tokens", requested)
    check_prompt_len(prompt_tokens, max_model_len)
    if prompt_tokens >= max_model_len:
        msg = (f"The engine prompt length {prompt_tokens} exceeds the max_model_len {max_model_len}. "
               "Please reduce prompt.")
        raise ApiError(400, shapes.error(msg, "invalid_request_error", 400, "input"))


def _fields(body: dict) -> dict:
    """Field validation (pydantic): the values the answer echoes besides the sampling ones."""
    items.check_input(body)
    tools = _tools(body)
    for name in ("stream", "store", "background", "parallel_tool_calls", "ignore_eos"):
        get_bool(body, name, False)
    return {"tools": tools, "max_output_tokens": get_int(body, "max_output_tokens", None),
            "instructions": get_str(body, "instructions"), "metadata": _metadata(body),
            "previous_response_id": get_str(body, "previous_response_id"), "user": get_str(body, "user"),
            "service_tier": _literal(body, "service_tier", _SERVICE_TIERS, "auto"),
            "truncation": _literal(body, "truncation", _TRUNCATIONS, "disabled"),
            "max_tool_calls": get_int(body, "max_tool_calls", None), "seed": get_int(body, "seed", None),
            "request_id": get_str(body, "request_id"), "temperature": _float(body, "temperature"),
            "top_p": _float(body, "top_p"), "presence_penalty": _float(body, "presence_penalty") or 0.0,
            "frequency_penalty": _float(body, "frequency_penalty") or 0.0}


def _template(body: dict, f: dict, choice, sampled: tuple, logprobs: int | None, model: str) -> dict:
    """The answer in ResponsesResponse's field order, in progress; status, output, usage and
    incomplete_details are filled in per use. sampled: (temperature, top_p, max_tokens)."""
    temperature, top_p, max_tokens = sampled
    return {
        "id": f["request_id"] or "resp_" + shapes.random_id(), "created_at": int(time.time()),
        "incomplete_details": None, "instructions": f["instructions"], "metadata": f["metadata"],
        "model": model, "object": "response", "output": [],
        "parallel_tool_calls": get_bool(body, "parallel_tool_calls", True), "temperature": temperature,
        "tool_choice": choice, "tools": f["tools"], "top_p": top_p, "background": False,
        "max_output_tokens": max_tokens, "max_tool_calls": f["max_tool_calls"], "previous_response_id": None,
        "prompt": None, "reasoning": _echo_reasoning(body), "service_tier": f["service_tier"],
        "status": "in_progress", "text": _echo_text(body), "top_logprobs": logprobs, "truncation": f["truncation"],
        "usage": None, "user": f["user"], "presence_penalty": f["presence_penalty"],
        "frequency_penalty": f["frequency_penalty"], "kv_transfer_params": None, "ec_transfer_params": None,
        "input_messages": None, "output_messages": None}


def _prompt(body: dict, f: dict, cfg) -> tuple[str, list]:
    """Serving-level checks (model, background, previous_response_id), then the rendered prompt."""
    check_model(body, cfg.served_model_names, adapters=cfg.lora_names)
    if get_bool(body, "background", False):  # store is always off here, so background never works
        raise ApiError(400, shapes.error(_NO_STORE_BACKGROUND, "invalid_request_error", 400, "background"))
    if f["previous_response_id"] is not None:  # nothing is ever stored
        msg = f"Response with id '{f['previous_response_id']}' not found."
        raise ApiError(404, shapes.error(msg, "invalid_request_error", 404, "response_id"))
    rendered = items.render(f["instructions"], body["input"])
    pieces = gen.tokenize(rendered, specials=True)
    _check_lengths(f["max_output_tokens"], len(pieces), cfg.max_model_len)
    return rendered, pieces


def responses_plan(body: dict, cfg) -> ResponsesPlan:
    body, choice = _before_validators(body)
    f = _fields(body)
    rendered, pieces = _prompt(body, f, cfg)
    sampled = _sampling(f, f["max_output_tokens"], len(pieces), cfg)
    plan = ResponsesPlan()
    plan.stream = get_bool(body, "stream", False)
    plan.priority = get_int(body, "priority", 0)
    plan.prompt_tokens, plan.max_tokens = len(pieces), sampled[2]
    adapter = adapter_named(body.get("model"), cfg.lora_modules)  # its own text and KV blocks
    key = adapter.generation_key(rendered) if adapter else rendered
    plan.gens = [gen.generate(key, f["seed"], 0, plan.max_tokens, cfg.natural_len,
                              get_bool(body, "ignore_eos", False))]
    include = body.get("include")
    wants_logprobs = isinstance(include, list) and _LOGPROBS_INCLUDE in include
    plan.logprobs = get_int(body, "top_logprobs", 0) if wants_logprobs else None
    kv = bool(cfg.num_gpu_blocks)
    plan.kv_prompts = [PromptBlocks(pieces, [plan.gens[0].pieces], cfg.block_size,
                                    adapter.salt if adapter else 0)] if kv else None
    plan.full_blocks = len(pieces) // cfg.block_size * cfg.block_size if kv else 0
    plan.claim, plan.opened = None, []
    # vLLM answers with the first served name, or the LoRA adapter's the request names.
    model = adapter.name if adapter else cfg.model_name
    plan.template = _template(body, f, choice, sampled, plan.logprobs, model)
    return plan


def run(engine, body: dict, cfg, conn, t0: float):
    """Plan the request (raising ApiError on a bad one), then run it like a chat request."""
    plan = responses_plan(body, cfg)
    return ResponsesEngine(engine, plan).run_generation(plan, conn, t0)
