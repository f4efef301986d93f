"""An agent framework through the gateway: LangChain's ChatOpenAI runs a tool loop (the model
calls a tool, the framework runs it, its result goes back, the model answers), plain and
streamed, against the simulators and real vLLM. A random-weight vLLM model's arguments need
not fit the tool's schema; the loop then sends the error back, as agents do."""

from __future__ import annotations

import pytest
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
    assert first.tool_calls, first
    call = first.tool_calls[0]
    assert call["name"] == "get_weather" and call["id"]
    if stack.kind == "sim":  # the simulator's arguments follow the schema
        assert isinstance(call["args"].get("city"), str), call
    messages = [HumanMessage(ASK), first, _run_tool(call)]
    final = llm.bind_tools([get_weather]).invoke(messages)
    assert isinstance(final, AIMessage)
    assert final.content or final.tool_calls, final
    assert final.usage_metadata and final.usage_metadata["output_tokens"] > 0
    return final


def test_a_langchain_tool_loop_completes(stack, llm):
    first = llm.bind_tools([get_weather], tool_choice="required").invoke([HumanMessage(ASK)])
    assert first.response_metadata["model_name"] == "Qwen/Qwen2.5-7B-Instruct"  # the public name
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
