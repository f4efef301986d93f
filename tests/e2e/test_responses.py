"""The Responses API through the gateway, with the official SDK: any replica continues any
conversation (the gateway keeps it, per organisation), stored responses are fetched, deleted
and refused to other organisations, streams store before their last event, limits hold."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from stacks import TestStack

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MAX_BYTES = 8192


@pytest.fixture(scope="module")
def resp_stack(tmp_path_factory):
    """Two chat replicas behind two gateway replicas of two workers each, sharing Redis."""
    stack = TestStack("sim", tmp_path_factory.mktemp("responses-stack"), workers=2, replicas=2,
                      sim_args=("--ttft-ms", "2", "--itl-ms", "1"),
                      env={"RESPONSES_MAX_BYTES": str(MAX_BYTES)}).start()
    yield stack
    stack.stop()


def _client(stack, base: str | None = None, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=(base or stack.base_url) + "/v1", max_retries=0,
                         api_key=key or stack.api_key)


def test_create_retrieve_delete(resp_stack):
    client = _client(resp_stack)
    first = client.responses.create(model="qwen", input="Say hello.", max_output_tokens=8)
    assert first.status in ("completed", "incomplete") and first.output_text
    assert first.model == "Qwen/Qwen2.5-7B-Instruct" and first.store is True
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    fetched = client.responses.retrieve(first.id)
    assert fetched.model_dump() == first.model_dump()
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="qwen", input="again", previous_response_id=first.id)


def test_another_organisation_sees_nothing(resp_stack):
    mine = _client(resp_stack).responses.create(model="qwen", input="secret", max_output_tokens=4)
    other = _client(resp_stack, key=resp_stack.create_org()["api_key"])
    for call in (lambda: other.responses.retrieve(mine.id),
                 lambda: other.responses.delete(mine.id),
                 lambda: other.responses.cancel(mine.id),
                 lambda: other.responses.create(model="qwen", input="x",
                                                previous_response_id=mine.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert _client(resp_stack).responses.retrieve(mine.id).id == mine.id  # still there


def test_not_stored_when_asked_and_background_is_refused(resp_stack):
    client = _client(resp_stack)
    loose = client.responses.create(model="qwen", input="x", store=False, max_output_tokens=4)
    assert loose.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(loose.id)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="qwen", input="x", background=True)
    assert err.value.body["param"] == "background"
    kept = client.responses.create(model="qwen", input="y", max_output_tokens=4)
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(kept.id)  # synchronous: nothing to cancel


def test_a_conversation_over_the_size_bound_is_answered_but_not_stored(resp_stack):
    # the estimate counts bytes: a key whose context bound the estimate of 9 KB cannot reach
    client = _client(resp_stack, key=resp_stack.create_org(max_context_tokens=50_000)["api_key"])
    big = client.responses.create(model="qwen", input="word " * 1800, max_output_tokens=4)
    assert big.output_text and big.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(big.id)


def test_a_streamed_turn_is_stored_before_its_last_event(resp_stack):
    client = _client(resp_stack)
    previous = None
    for turn in range(4):
        with client.responses.stream(model="qwen", input=f"turn {turn}", max_output_tokens=6,
                                     previous_response_id=previous) as stream:
            events = [event.type for event in stream]
            final = stream.get_final_response()
        assert events[0] == "response.created" and events[-1] == "response.completed"
        assert final.previous_response_id == previous and final.model == "Qwen/Qwen2.5-7B-Instruct"
        previous = final.id  # sent at once: the next turn must find it


async def _conversation(client: openai.AsyncOpenAI, n: int, turns: int) -> list[int]:
    previous, inputs = None, []
    for turn in range(turns):
        answer = await client.responses.create(
            model="qwen", input=f"conversation {n} turn {turn}", max_output_tokens=4,
            previous_response_id=previous)
        previous = answer.id
        inputs.append(answer.usage.input_tokens)
    return inputs


def test_fifty_ten_turn_conversations_across_replicas_and_workers(resp_stack):
    """Each turn goes through either gateway replica on a new connection (so any worker),
    and to either chat replica; every turn succeeds and carries the whole history."""
    key = resp_stack.open_org()["api_key"]  # limits out of the way: 10 conversations at once

    async def main() -> list[list[int]]:
        clients = [openai.AsyncOpenAI(base_url=base + "/v1", api_key=key,
                                      max_retries=0,
                                      http_client=httpx.AsyncClient(
                                          limits=httpx.Limits(max_keepalive_connections=0)))
                   for base in resp_stack.base_urls]
        gate = asyncio.Semaphore(10)

        async def one(n: int) -> list[int]:
            async with gate:
                return await _conversation(clients[n % 2], n, 10)
        try:
            return await asyncio.gather(*(one(n) for n in range(50)))
        finally:
            for c in clients:
                await c.close()
    results = asyncio.run(main())
    assert len(results) == 50
    for inputs in results:  # the backend saw every earlier turn: its prompt only grows
        assert all(b > a for a, b in zip(inputs, inputs[1:])), inputs
    served = {name: sum(float(line.split()[-1]) for line in httpx.get(
        resp_stack.backend_url(name) + "/metrics").text.splitlines()
        if line.startswith("vllm:request_success_total")) for name in ("chat0", "chat1")}
    assert min(served.values()) >= 100, served  # both replicas answered turns


def test_a_chained_conversation_on_the_stack(stack):
    """Against the simulators and real vLLM: each turn carries the earlier ones."""
    client = _client(stack)
    previous, inputs = None, []
    for turn in range(3):
        answer = client.responses.create(model="qwen", input=f"turn {turn}: say something",
                                          max_output_tokens=4, previous_response_id=previous)
        assert answer.status in ("completed", "incomplete") and answer.store is True
        assert answer.previous_response_id == previous
        previous = answer.id
        inputs.append(answer.usage.input_tokens)
    assert inputs[0] < inputs[1] < inputs[2]
    assert client.responses.retrieve(previous).previous_response_id == answer.previous_response_id
