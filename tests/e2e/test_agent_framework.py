"""An agent framework through the gateway: LangChain's ChatOpenAI runs a tool loop (the model
calls a tool, the framework runs it, its result goes back, the model answers), plain and
streamed, against the simulators and real vLLM.

A random-weight vLLM model's arguments need not fit the tool's schema, nor be a JSON object
(vLLM constrains them only for parsers that emit JSON calls; hermes does not). Streamed,
LangChain files such a call under `invalid_tool_calls` and the loop sends the error back, as
agents do; plain, LangChain's parser refuses the answer outright, and the loop then goes on
from a well-formed call, the history an agent would send."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

ASK = "What is the weather in Paris?"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18 C and sunny in {city}"


@pytest.fixture
def llm(stack) -> ChatOpenAI:
    return ChatOpenAI(model="qwen", base_url=stack.base_url + "/v1", api_key=stack.api_key,
                      max_retries=0, max_tokens=200, timeout=120, stream_usage=True)


def _run_tool(call: dict) -> ToolMessage:
    try:
        result = get_weather.invoke(call["args"])
    except Exception as exc:  # arguments that do not fit the schema: the model hears why
        result = f"error: {exc}"
    return ToolMessage(content=result, tool_call_id=call["id"])


def _loop(stack, llm: ChatOpenAI, first: AIMessage) -> AIMessage:
    if first.tool_calls:
        call = first.tool_calls[0]
        assert call["name"] == "get_weather" and call["id"]
        result = _run_tool(call)
    else:  # a random-weight model's arguments that are no JSON object (real vLLM only)
        assert stack.kind != "sim" and first.invalid_tool_calls, first
        call = first.invalid_tool_calls[0]
        assert call["name"] == "get_weather" and call["id"]
        result = ToolMessage(content="error: arguments must be an object", tool_call_id=call["id"])
    if stack.kind == "sim":  # the simulator's arguments follow the schema
        assert isinstance(call["args"].get("city"), str), call
    messages = [HumanMessage(ASK), first, result]
    final = llm.bind_tools([get_weather]).invoke(messages)
    assert isinstance(final, AIMessage)
    assert final.content or final.tool_calls, final
    assert final.usage_metadata and final.usage_metadata["output_tokens"] > 0
    return final


def test_a_langchain_tool_loop_completes(stack, llm):
    forced = llm.bind_tools([get_weather], tool_choice="required")
    try:
        first = forced.invoke([HumanMessage(ASK)])
    except ValidationError as exc:  # see the module's docstring: real vLLM's random weights
        assert stack.kind != "sim" and "tool_calls" in str(exc), exc
        first = AIMessage(content="", tool_calls=[{"name": "get_weather", "id": "call_0",
                                                   "args": {"city": "Paris"}}])
    else:
        assert first.response_metadata["model_name"] == "Qwen/Qwen2.5-7B-Instruct"  # public name
        assert first.usage_metadata["input_tokens"] > 0
    _loop(stack, llm, first)


def test_a_streamed_langchain_tool_call_joins_and_the_loop_completes(stack, llm):
    forced = llm.bind_tools([get_weather], tool_choice="required")
    joined: AIMessageChunk | None = None
    chunks = 0
    for chunk in forced.stream([HumanMessage(ASK)]):
        joined = chunk if joined is None else joined + chunk
        chunks += 1
    assert chunks > 1 and joined is not None  # it did stream
    assert joined.usage_metadata and joined.usage_metadata["output_tokens"] > 0
    _loop(stack, llm, joined)
