#!/usr/bin/env bash
# Creates .venv with the pinned Python dependencies, the gateway and the simulator.
# Safe to run again: it reinstalls only when a requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is required (found: $("$PYTHON" --version 2>&1))." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv; then
    echo "error: '$PYTHON -m venv' failed; on Debian install it with: apt-get install python3-venv" >&2
    exit 1
  fi
fi

stamp=.venv/.installed
inputs=(requirements-dev.txt gateway/requirements.txt gateway/pyproject.toml simulator/pyproject.toml)
if [ -f "$stamp" ] && [ -z "$(find "${inputs[@]}" -newer "$stamp" 2>/dev/null)" ]; then
  exit 0
fi
echo "installing Python dependencies into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e gateway -e simulator
touch "$stamp"
