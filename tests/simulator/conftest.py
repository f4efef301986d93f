"""Fixtures that run the simulator as a real subprocess on a free port."""

from __future__ import annotations

import pytest

from simproc import Sim


@pytest.fixture
def start_sim():
    """Factory: start_sim(*flags) -> Sim; every simulator started is stopped after the test."""
    started: list[Sim] = []

    def _start(*args: str, env: dict | None = None) -> Sim:
        sim = Sim(*args, env=env)
        started.append(sim)
        return sim

    yield _start
    for sim in started:
        sim.stop()


@pytest.fixture(scope="module")
def chat_sim():
    sim = Sim("--kind", "chat", "--served-model-name", "sim-chat", "alias-chat", "--max-model-len", "512")
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def embed_sim():
    sim = Sim("--kind", "embed", "--served-model-name", "sim-embed", "--embed-dim", "64")
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def rerank_sim():
    sim = Sim("--kind", "rerank", "--served-model-name", "sim-rerank")
    yield sim
    sim.stop()
