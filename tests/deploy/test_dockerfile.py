"""gateway/Dockerfile, deploy/single/Dockerfile and .dockerignore, read statically (no Docker
engine where the tests run)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import zipfile

from deploy_support import ROOT

import pytest

DOCKERFILE = (ROOT / "gateway" / "Dockerfile").read_text()
SINGLE = (ROOT / "deploy" / "single" / "Dockerfile").read_text()


def instructions(text: str = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def sent_to_build(path: str) -> bool:
    """Whether .dockerignore lets `path` into the build context (last matching rule wins)."""
    included = True
    for rule in (ROOT / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", ""))
               for p in prefixes):
            included = negate
    return included


def test_multi_stage_on_one_pinned_python_311_slim_release():
    stages = [args.split()[0] for name, args in instructions() if name == "FROM"]
    assert len(stages) == 2 and len(set(stages)) == 1  # the virtualenv's Python is the runtime's
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", stages[0])


def test_only_the_virtualenv_leaves_the_build_stage_and_it_has_no_pip():
    copied = [args for name, args in instructions() if name == "COPY" and args.startswith("--from")]
    assert copied == ["--from=build /opt/venv /opt/venv"]
    assert "venv --without-pip /opt/venv" in DOCKERFILE


def test_runs_gunicorn_as_a_non_root_user():
    user = [args for name, args in instructions() if name == "USER"]
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    [cmd] = [json.loads(args) for name, args in instructions() if name == "CMD"]
    assert cmd[:3] == ["gunicorn", "-c", "/app/gunicorn.conf.py"] and cmd[-1] == "llmgw.app:create_app()"
    [health] = [args for name, args in instructions() if name == "HEALTHCHECK"]
    assert "/healthz" in health


def test_build_sha_and_time_reach_the_environment():
    args = {a.split("=")[0] for name, a in instructions() if name == "ARG"}
    assert {"BUILD_SHA", "BUILD_TIME"} <= args
    env = " ".join(a for name, a in instructions() if name == "ENV")
    assert "BUILD_SHA=$BUILD_SHA" in env and "BUILD_TIME=$BUILD_TIME" in env
    assert "ROUTING_FILE=/app/routing.yaml" in env  # site-packages has no routing.yaml beside it


@pytest.mark.parametrize("text", [DOCKERFILE, SINGLE], ids=["gateway", "single"])
def test_every_copied_file_exists_and_is_in_the_build_context(text):
    for name, args in instructions(text):
        if name != "COPY" or args.startswith("--from"):
            continue
        for source in args.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert sent_to_build(source), f"{source} is excluded by .dockerignore"


def test_secrets_and_bulk_stay_out_of_the_build_context():
    for path in (".env", ".venv/bin/python", ".stack/redis/appendonly.aof", "hf-cache/models",
                 ".git/config", "gateway/llmgw/__pycache__/app.cpython-311.pyc",
                 "gateway/llmgw.egg-info/PKG-INFO", "tests/conftest.py"):
        assert not sent_to_build(path), path
    assert sent_to_build("gateway/llmgw/app.py")


def test_the_installed_package_keeps_every_file(tmp_path):
    """The build stage pip-installs what it copied of gateway/: nothing may go missing (e.g. Lua)."""
    src = tmp_path / "gateway"
    shutil.copytree(ROOT / "gateway" / "llmgw", src / "llmgw",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "gateway" / "pyproject.toml", src)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    wanted = {p.relative_to(src).as_posix() for p in (src / "llmgw").rglob("*") if p.is_file()}
    assert sorted(wanted - packed) == []


def test_the_single_image_runs_vllm_s_pinned_image_and_the_entrypoint_as_a_non_root_user():
    args = dict(a.split("=", 1) for name, a in instructions(SINGLE) if name == "ARG" and "=" in a)
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", args["VLLM_IMAGE"])
    stages = [a.split()[0] for name, a in instructions(SINGLE) if name == "FROM"]
    assert stages and set(stages) == {"${VLLM_IMAGE}"}
    user = [a for name, a in instructions(SINGLE) if name == "USER"]
    assert user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0"
    [entrypoint] = [json.loads(a) for name, a in instructions(SINGLE) if name == "ENTRYPOINT"]
    assert entrypoint[-2:] == ["-m", "llmgw.single_host"] and "tini" in entrypoint[0]
    [health] = [a for name, a in instructions(SINGLE) if name == "HEALTHCHECK"]
    assert "/healthz" in health
    env = " ".join(a for name, a in instructions(SINGLE) if name == "ENV")
    # vLLM's python3 first on PATH; the gateway's virtualenv (gatewayctl) after it.
    assert "PATH=$PATH:/opt/llmgw/bin" in env and "GUNICORN_CONF=/app/gunicorn.conf.py" in env
