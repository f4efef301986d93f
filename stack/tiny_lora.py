"""Builds tiny random-weight LoRA adapters (no download, no peft) for the tiny chat model.

Run with the vLLM venv's interpreter: `python stack/tiny_lora.py MODEL_DIR OUT_DIR NAME ...`
writes OUT_DIR/NAME/{adapter_config.json, adapter_model.safetensors} for the model in
MODEL_DIR (stack/tiny_models.py's chat model): rank 8 on q_proj and v_proj, in PEFT's file
layout, the one vLLM's --lora-modules loads. Each adapter's weights are seeded by its name,
so different adapters change the model differently and a rebuild gives the same adapter. The
weights are large next to the base model's (std 0.02): an adapter visibly changes what the
model generates. A folder that is already complete is left alone; each is written in a
scratch folder then renamed, so a crash never leaves a half-written adapter.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

RANK = 8
ALPHA = 16
TARGETS = ("q_proj", "v_proj")
FILES = ("adapter_config.json", "adapter_model.safetensors")


def _shapes(config: dict) -> dict[str, tuple[int, int]]:
    """(out, in) features of each target projection of a Llama model."""
    hidden = config["hidden_size"]
    head_dim = config.get("head_dim") or hidden // config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or config["num_attention_heads"]
    return {"q_proj": (config["num_attention_heads"] * head_dim, hidden),
            "v_proj": (kv_heads * head_dim, hidden)}


def tensors(config: dict, name: str) -> dict[str, torch.Tensor]:
    """PEFT's names: base_model.model.<module>.lora_A.weight (r x in) and lora_B (out x r)."""
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for layer in range(config["num_hidden_layers"]):
        for target, (fan_out, fan_in) in _shapes(config).items():
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{target}"
            out[prefix + ".lora_A.weight"] = torch.randn(RANK, fan_in, generator=generator) * 0.5
            out[prefix + ".lora_B.weight"] = torch.randn(fan_out, RANK, generator=generator) * 0.5
    return out


def adapter_config(model_dir: Path) -> dict:
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": RANK, "lora_alpha": ALPHA,
            "lora_dropout": 0.0, "target_modules": list(TARGETS), "bias": "none",
            "fan_in_fan_out": False, "modules_to_save": None, "use_rslora": False,
            "use_dora": False, "init_lora_weights": True,
            "base_model_name_or_path": str(model_dir)}


def is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


def ensure(model_dir: Path, out_dir: Path, name: str) -> Path:
    """Build OUT_DIR/name unless it is already complete; returns the folder."""
    final = out_dir / name
    if is_complete(final):
        return final
    config = json.loads((model_dir / "config.json").read_text())
    scratch = out_dir / f".{name}.partial-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    save_file(tensors(config, name), str(scratch / "adapter_model.safetensors"))
    (scratch / "adapter_config.json").write_text(json.dumps(adapter_config(model_dir), indent=2))
    if is_complete(final):  # another builder finished first; its result is identical
        shutil.rmtree(scratch, ignore_errors=True)
        return final
    shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover
    os.replace(scratch, final)
    return final


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(f"usage: {argv[0]} MODEL_DIR OUT_DIR NAME ...", file=sys.stderr)
        return 2
    model_dir, out_dir = Path(argv[1]).resolve(), Path(argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in argv[3:]:
        print(f"tiny_lora: {ensure(model_dir, out_dir, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
