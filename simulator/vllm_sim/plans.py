"""Turns chat/completion request bodies into generation plans (all tokens decided up front)."""

from __future__ import annotations

import time

from . import generate as gen
from . import openai_shapes as shapes
from . import tool_request, tools
from .kv_cache import PromptBlocks
from .lora import adapter_named
from .validate import (ApiError, bad_request, check_model, check_n, check_prompt_len, check_stream_options,
                       clamp_max_tokens, get_bool, get_int, get_str, invalid, stream_flags)

_COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # CompletionRequest.max_tokens default in vLLM


class GenPlan:
    """Everything needed to answer one generation request, computed before any waiting."""

    __slots__ = ("chat", "rid", "created", "model", "gens", "prompt_counts", "prompt_ids", "n", "stream",
                 "include_usage", "continuous", "token_ids", "max_tokens", "logprobs", "kv_prompts", "tools",
                 "adapter", "priority")

    @property
    def prompt_tokens(self) -> int:
        return sum(self.prompt_counts)

    def prompt_index(self, choice: int) -> int:
        return choice // self.n


def _common(plan: GenPlan, body: dict, headers: dict, cfg, prefix: str, requested_key: str,
            more_fields=None) -> int | None:
    """Field-level checks first (pydantic in vLLM; more_fields: the caller's), then the model name."""
    plan.stream, plan.include_usage, plan.continuous = stream_flags(body)
    n = get_int(body, "n", 1)
    plan.token_ids = get_bool(body, "return_token_ids", False)
    plan.priority = get_int(body, "priority", 0)  # ordering the wait under --scheduling-policy priority
    requested = get_int(body, requested_key, _COMPLETIONS_DEFAULT_MAX_TOKENS if not plan.chat else None)
    if plan.chat and requested is None:
        requested = get_int(body, "max_tokens", None)  # max_completion_tokens wins over max_tokens
    if plan.chat:  # logprobs: None when not requested, else the number of top alternatives per token
        plan.logprobs = get_int(body, "top_logprobs", 0) if get_bool(body, "logprobs", False) else None
    else:
        plan.logprobs = get_int(body, "logprobs", None)
    base = headers.get("x-request-id") or get_str(body, "request_id") or shapes.random_id()
    if more_fields is not None:
        more_fields()
    check_model(body, cfg.served_model_names, adapters=cfg.lora_names)
    plan.n = check_n(n)
    plan.rid = prefix + base
    plan.created = int(time.time())
    # vLLM answers with the first served name, or the LoRA adapter's the request names.
    plan.adapter = adapter_named(body.get("model"), cfg.lora_modules)
    plan.model = plan.adapter.name if plan.adapter else cfg.model_name
    return requested


def _generate(plan: GenPlan, keys: list[str], requested: int | None, default: int, body: dict, cfg,
              last_role: str | None = None) -> None:
    seed = get_int(body, "seed", None)
    ignore_eos = get_bool(body, "ignore_eos", False)
    min_tokens = get_int(body, "min_tokens", 0)
    plan.gens = []
    plan.max_tokens = 0
    if plan.adapter:  # an adapter generates its own text from the same prompt
        keys = [plan.adapter.generation_key(k) for k in keys]
    for key, count in zip(keys, plan.prompt_counts):
        check_prompt_len(count, cfg.max_model_len)
        max_tokens = clamp_max_tokens(requested, default, count, cfg.max_model_len)
        # A tool call ends by itself, so without max_tokens it gets vLLM's default: the context left.
        call_limit = clamp_max_tokens(requested, cfg.max_model_len - count, count, cfg.max_model_len)
        for i in range(plan.n):
            g = tools.answer(plan.tools, key, seed, i, call_limit, last_role) if plan.tools else None
            plan.max_tokens = max(plan.max_tokens, max_tokens if g is None else call_limit)
            plan.gens.append(g or gen.generate(key, seed, i, max_tokens, cfg.natural_len, ignore_eos, min_tokens))


def chat_plan(body: dict, headers: dict, cfg) -> GenPlan:
    # vLLM's "before" validators run ahead of every field check (the last defined first): tool usage,
    # stream options, then tool_calls lists turned into lists.
    tool_request.check_tool_usage(body)
    check_stream_options(body)
    tool_request.normalize_history(body)
    tool_fields = tool_request.field_errors(body)
    messages = _messages(body, tool_fields)
    plan = GenPlan()
    plan.chat = True

    def more_fields():  # tools come after the sampling fields; the history check runs after all of them
        tool_request.raise_field_errors(tool_fields or tool_request.history_errors(messages))

    requested = _common(plan, body, headers, cfg, "chatcmpl-", "max_completion_tokens", more_fields)
    plan.tools = tool_request.parse(body)
    tool_request.check_parser(plan.tools, cfg.tool_parser)
    try:
        rendered = gen.render_chat(messages, get_bool(body, "add_generation_prompt", True),
                                   tool_request.template_tools(plan.tools and plan.tools.tools))
    except ValueError as exc:
        raise bad_request(str(exc), "messages") from None
    pieces = gen.tokenize(rendered, specials=True)
    plan.prompt_counts = [len(pieces)]
    plan.prompt_ids = gen.token_ids(pieces) if plan.token_ids else None
    last = messages[-1].get("role") if messages and isinstance(messages[-1], dict) else None
    _generate(plan, [rendered], requested, cfg.default_max_tokens, body, cfg, last)
    _kv_prompts(plan, [pieces], cfg)
    return plan


def _messages(body: dict, tool_fields: list) -> list:
    """The messages list; when it is missing or not a list, pydantic reports it with the tool field errors."""
    if isinstance(body.get("messages"), list):
        return body["messages"]
    if "messages" not in body:
        first = ("missing", ("body", "messages"), "Field required", body, None)
    else:
        first = ("list_type", ("body", "messages"), "Input should be a valid list", body["messages"], None)
    raise ApiError(400, shapes.validation_errors([first] + tool_fields))


def _kv_prompts(plan: GenPlan, prompts: list, cfg) -> None:
    """Block hashes of each prompt and of its choices' outputs, when the prefix cache is modelled."""
    if not cfg.num_gpu_blocks:
        plan.kv_prompts = None
        return
    n = plan.n
    salt = plan.adapter.salt if plan.adapter else 0  # an adapter's blocks are its own
    plan.kv_prompts = [PromptBlocks(p, [g.pieces for g in plan.gens[k * n:(k + 1) * n]], cfg.block_size, salt)
                       for k, p in enumerate(prompts)]


def _check_prompt_given(body: dict) -> None:
    """CompletionRequest's "before" validator: a VLLMValidationError (400 BadRequestError, not a pydantic list)."""
    if "prompt" not in body or body["prompt"] is None or body["prompt"] == "":
        raise bad_request("Either prompt or prompt_embeds must be provided and non-empty.", "prompt")


def _prompts(body: dict) -> list:
    """Normalise prompt: str | list[str] | list[int] | list[list[int]] to a list of prompts."""
    p = body["prompt"]
    if isinstance(p, str):
        return [p]
    if isinstance(p, list) and p:
        if all(isinstance(x, int) and not isinstance(x, bool) for x in p):
            return [p]
        if all(isinstance(x, str) for x in p):
            return p
        if all(isinstance(x, list) and x and all(isinstance(t, int) for t in x) for x in p):
            return p
    raise invalid("union_type", "prompt", "Input should be a valid string, a list of strings, a list of "
                  "integers or a list of lists of integers", p)


def completion_plan(body: dict, headers: dict, cfg) -> GenPlan:
    _check_prompt_given(body)
    check_stream_options(body)  # the next "before" validator in CompletionRequest
    prompts = _prompts(body)  # field validation
    plan = GenPlan()
    plan.chat = False
    plan.tools = None
    requested = _common(plan, body, headers, cfg, "cmpl-", "max_tokens")
    keys, ids, tokens = [], [], []  # tokens: token strings of a text prompt, the ids of an id prompt
    for p in prompts:
        if isinstance(p, str):
            keys.append(p)
            tokens.append(gen.tokenize(p))
            ids.append(gen.token_ids(tokens[-1]) if plan.token_ids else None)
        else:
            keys.append("ids:" + ",".join(map(str, p)))
            ids.append(p)
            tokens.append(p)
    plan.prompt_counts = [len(t) for t in tokens]
    # One prompt_token_ids entry per choice (choices are prompt-major, n per prompt).
    plan.prompt_ids = [ids[c // plan.n] for c in range(len(prompts) * plan.n)] if plan.token_ids else None
    _generate(plan, keys, requested, cfg.default_max_tokens, body, cfg)
    _kv_prompts(plan, tokens, cfg)
    return plan
