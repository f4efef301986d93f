"""The local stack's `.env`: created from `.env.example` on first run, secrets filled in once."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

# Settings the local stack generates when they are empty, so a first run needs no editing.
GENERATED_SECRETS = ("BACKEND_API_KEY", "ADMIN_TOKEN", "BATCH_RUNNER_TOKEN")


def parse(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = _value(value.strip())
    return values


def _value(raw: str) -> str:
    """Quoted values are taken whole; unquoted ones end at an inline ` #` comment (as compose does)."""
    if raw[:1] in {'"', "'"} and raw.find(raw[0], 1) > 0:
        return raw[1:raw.find(raw[0], 1)]
    return re.split(r"(?:^|\s+)#", raw, maxsplit=1)[0].strip()


def ensure_env_file(root: Path) -> Path:
    """Create `.env` from the example if missing; generate empty secrets. Returns its path."""
    path = root / ".env"
    if not path.exists():
        path.write_text((root / ".env.example").read_text())
        print(f"created {path.name} from .env.example")
    lines = path.read_text().splitlines()
    changed = False
    present = {line.split("=", 1)[0].strip() for line in lines if "=" in line}
    for key in GENERATED_SECRETS:
        if key not in present:  # an older .env, from before the setting existed
            lines.append(f"{key}=")
    for i, line in enumerate(lines):
        key = line.split("=", 1)[0].strip()
        if key in GENERATED_SECRETS and line.strip() == f"{key}=":
            lines[i] = f"{key}={secrets.token_urlsafe(32)}"
            changed = True
            print(f"generated {key} in {path.name}")
    if changed:
        path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def load(root: Path) -> dict[str, str]:
    """`.env` values, with the process environment taking precedence (so `VAR=x make demo` works)."""
    return {**parse(ensure_env_file(root).read_text()), **os.environ}
