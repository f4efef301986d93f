"""Shared fixtures: the simulator stack and the real-vLLM stack, each started once per session.

Real vLLM needs minutes to boot on two cores, so its backends are started when the session
begins (if any selected test needs them) and boot while the simulator tests run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from stacks import TestStack

_vllm: dict[str, TestStack] = {}


def _wants_vllm(items) -> bool:
    return any(item.get_closest_marker("vllm") for item in items)


def pytest_collection_modifyitems(items) -> None:
    # Real-vLLM tests last: the engines boot in the background while everything else runs.
    items.sort(key=lambda item: item.get_closest_marker("vllm") is not None)


def pytest_collection_finish(session) -> None:
    if _wants_vllm(session.items):
        stack = TestStack("vllm-cpu", Path(tempfile.mkdtemp(prefix="llmgw-vllm-stack-")))
        stack.start_backends()
        _vllm["stack"] = stack


def pytest_sessionfinish(session) -> None:
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
    stack = _vllm.get("stack")
    if stack is None:
        pytest.fail("the real-vLLM stack was not started (run with the vllm marker selected)")
    if stack.gateway is None:
        stack.wait_backends(900)
        stack.start_gateway()
    return stack


@pytest.fixture(scope="session", params=["sim", pytest.param("vllm", marks=pytest.mark.vllm)])
def stack(request) -> TestStack:
    """Every end-to-end test that takes `stack` runs against simulators and against real vLLM."""
    return request.getfixturevalue(f"{request.param}_stack")
