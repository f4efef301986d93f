"""The local stack starts every backend of a pool with the pool's LoRA adapters: the
simulator and real vLLM get the same --enable-lora/--lora-modules flags."""

from __future__ import annotations

import json
from pathlib import Path

from stack import vllm_cpu
from stack.processes import StackConfig, backend_argv
from stack.topology import DEFAULT_BACKEND_PORTS, backend_specs
from vllm_sim.config import parse_config

ROOT = Path(__file__).resolve().parents[3]
E2E = ROOT / "tests" / "e2e" / "routing.yaml"
SHIPPED = ROOT / "gateway" / "routing.yaml"


def _specs(routing: Path):
    return {s.name: s for s in backend_specs(routing, DEFAULT_BACKEND_PORTS)}


def _modules(argv: list[str]) -> list[dict]:
    start = argv.index("--lora-modules") + 1
    end = next((i for i in range(start, len(argv)) if argv[i].startswith("--")), len(argv))
    return [json.loads(item) for item in argv[start:end]]


def test_every_backend_of_a_pool_loads_its_adapters_and_only_there():
    specs = _specs(E2E)
    assert [a.served_name for a in specs["chat0"].adapters] == \
        [a.served_name for a in specs["chat1"].adapters] == ["tiny-sql-lora", "tiny-poet-lora"]
    assert all(not specs[n].adapters for n in ("text2sql", "embed", "rerank"))
    # the adapters are loaded as adapters, never served as names of the base model
    assert specs["chat0"].served_names == specs["chat1"].served_names == ("tiny-chat",)
    assert all(not s.adapters for s in _specs(SHIPPED).values())  # the shipped file declares none


def test_the_simulator_gets_the_flags_and_serves_the_declared_adapters(tmp_path):
    spec = _specs(E2E)["chat0"]
    argv, _ = backend_argv(spec, StackConfig(state_dir=tmp_path))
    assert "--enable-lora" in argv and argv[argv.index("--max-loras") + 1] == "2"
    assert _modules(argv) == [
        {"name": "tiny-sql-lora", "path": "/adapters/sql-assistant", "base_model_name": "tiny-chat"},
        {"name": "tiny-poet-lora", "path": "/adapters/poet", "base_model_name": "tiny-chat"}]
    cfg = parse_config(argv[argv.index("--host"):])
    assert cfg.lora_names == ("tiny-sql-lora", "tiny-poet-lora")
    plain, _ = backend_argv(_specs(E2E)["text2sql"], StackConfig(state_dir=tmp_path))
    assert "--enable-lora" not in plain and "--lora-modules" not in plain


def test_real_vllm_serves_tiny_adapters_in_place_of_the_declared_ones(tmp_path):
    spec = _specs(E2E)["chat1"]
    argv, _ = backend_argv(spec, StackConfig(state_dir=tmp_path, backends="vllm-cpu",
                                             models_dir=tmp_path / "models"))
    assert argv[argv.index("--max-lora-rank") + 1] == str(vllm_cpu.TINY_LORA_RANK)
    assert [m["path"] for m in _modules(argv)] == [
        str((tmp_path / "models" / "lora" / "tiny-sql-lora").resolve()),
        str((tmp_path / "models" / "lora" / "tiny-poet-lora").resolve())]
    assert vllm_cpu.lora_dir(tmp_path, "acme/odd name").name == "acme_odd_name"
    assert vllm_cpu.lora_flags([]) == []
