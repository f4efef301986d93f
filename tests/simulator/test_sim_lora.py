"""LoRA adapters on a simulator process, as vLLM 0.32 serves them with --enable-lora --lora-modules:
listed with root and parent, answered under their own name with text of their own, unknown names
404, and KV blocks cached apart from the base model's."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.timeout(30)
SQL = json.dumps({"name": "sql-lora", "path": "/adapters/sql", "base_model_name": "sim-chat"})
CHAT = {"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 12, "temperature": 0,
        "ignore_eos": True}


@pytest.fixture(scope="module")
def lora_sim():
    from simproc import Sim
    sim = Sim("--kind", "chat", "--served-model-name", "sim-chat", "alias-chat", "--max-model-len", "4096",
              "--enable-lora", "--max-lora-rank", "8", "--max-loras", "2",
              "--lora-modules", SQL, "poet-lora=/adapters/poet",
              "--num-gpu-blocks", "1024", "--block-size", "16")
    yield sim
    sim.stop()


def _text(sim, model: str, path: str = "/v1/chat/completions", body: dict = CHAT) -> tuple[str, str]:
    r = sim.post(path, {**body, "model": model})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    return r.json()["model"], choice.get("text", (choice.get("message") or {}).get("content"))


def test_adapters_are_listed_after_the_base_model_with_root_and_parent(lora_sim):
    cards = lora_sim.http.get("/v1/models").json()["data"]
    assert [(c["id"], c["root"], c["parent"], c["max_model_len"]) for c in cards] == [
        ("sim-chat", "sim-chat", None, 4096), ("alias-chat", "sim-chat", None, 4096),
        ("sql-lora", "/adapters/sql", "sim-chat", None),
        # name=path names no base: vLLM gives the first served name as parent
        ("poet-lora", "/adapters/poet", "sim-chat", None)]


def test_an_adapter_answers_under_its_name_with_text_of_its_own(lora_sim):
    base_model, base = _text(lora_sim, "sim-chat")
    model, sql = _text(lora_sim, "sql-lora")
    assert (base_model, model) == ("sim-chat", "sql-lora")
    assert sql != base and _text(lora_sim, "sql-lora") == (model, sql)  # deterministic
    assert _text(lora_sim, "poet-lora")[1] not in (base, sql)
    assert _text(lora_sim, "alias-chat") == ("sim-chat", base)  # a served alias is the base model
    completion = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    base_c = _text(lora_sim, "sim-chat", "/v1/completions", completion)
    sql_c = _text(lora_sim, "sql-lora", "/v1/completions", completion)
    assert sql_c[0] == "sql-lora" and sql_c[1] != base_c[1]


def test_an_adapter_streams_and_answers_the_responses_api_under_its_name(lora_sim):
    with lora_sim.http.stream("POST", "/v1/chat/completions",
                              json={**CHAT, "model": "sql-lora", "stream": True}) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines()
                  if line.startswith("data: {")]
    assert {e["model"] for e in events} == {"sql-lora"}
    streamed = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert streamed == _text(lora_sim, "sql-lora")[1]
    r = lora_sim.post("/v1/responses", {"model": "sql-lora", "input": "Say hello", "max_output_tokens": 4})
    assert r.status_code == 200 and r.json()["model"] == "sql-lora"
    base = lora_sim.post("/v1/responses", {"model": "sim-chat", "input": "Say hello", "max_output_tokens": 4})
    assert base.json()["model"] == "sim-chat"


def test_unknown_names_are_404_listing_the_base_models_only(lora_sim):
    r = lora_sim.post("/v1/chat/completions", {**CHAT, "model": "other-lora"})
    assert r.status_code == 404
    assert r.json()["error"]["message"] == \
        "The model `other-lora` does not exist. Valid aliases: sim-chat, alias-chat."
    assert lora_sim.post("/tokenize", {"model": "sql-lora", "prompt": "hi"}).status_code == 200
    assert lora_sim.post("/tokenize", {"model": "other-lora", "prompt": "hi"}).status_code == 404
    # vLLM serves no run-time loading route unless VLLM_ALLOW_RUNTIME_LORA_UPDATING is set
    assert lora_sim.post("/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "/x"}).status_code == 404


def test_an_adapter_shares_no_prefix_cache_with_the_base_model(lora_sim):
    document = "The gateway routes each request to a replica. " * 40  # ~360 tokens: 22 blocks
    body = {"prompt": document, "max_tokens": 1}
    hits = lambda: lora_sim.metric("vllm:prefix_cache_hits_total")  # noqa: E731
    before = hits()
    assert lora_sim.post("/v1/completions", {**body, "model": "sim-chat"}).status_code == 200
    assert lora_sim.post("/v1/completions", {**body, "model": "sql-lora"}).status_code == 200
    assert hits() == before  # the base model's blocks are not the adapter's
    assert lora_sim.post("/v1/completions", {**body, "model": "sql-lora"}).status_code == 200
    after_adapter = hits()
    assert after_adapter > before  # its own blocks are
    assert lora_sim.post("/v1/completions", {**body, "model": "poet-lora"}).status_code == 200
    assert hits() == after_adapter  # nor are another adapter's


@pytest.mark.parametrize("flags,message", [
    (("--lora-modules", "a=/x"), "needs --enable-lora"),
    (("--enable-lora", "--lora-modules", "a=/x", "a=/y"), "already been loaded"),
    (("--enable-lora", "--served-model-name", "m", "a", "--lora-modules", "a=/x"),
     "conflicts with a served base model"),
    (("--enable-lora", "--lora-modules", "a="), "must be provided"),
    (("--enable-lora", "--lora-modules", "{not json"), "Invalid JSON format"),
    (("--enable-lora", "--lora-modules", '{"name": "a", "path": "/x", "rank": 8}'), "Invalid fields"),
])
def test_bad_lora_flags_stop_the_start(start_sim, flags, message):
    with pytest.raises(RuntimeError, match=message):
        start_sim("--kind", "chat", *flags)
