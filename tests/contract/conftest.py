"""Fixtures for the contract tests: the session's real-vLLM and simulator backends, side by side.

Both stacks serve the same served names (tests/e2e/routing.yaml), so request bodies are
identical; each side is called with its own backend key.
"""

from __future__ import annotations

import httpx
import pytest

# Which backend of each stack answers for each kind of server.
BACKENDS = {"chat": "chat0", "embed": "embed", "rerank": "rerank"}


@pytest.fixture(scope="session")
def clients(vllm_stack, sim_stack):
    """{"real"|"sim": {kind: httpx.Client}} sending that stack's backend key by default."""
    made = {side: {kind: httpx.Client(base_url=stack.backend_url(backend), timeout=120,
                                      headers={"Authorization": f"Bearer {stack.backend_key}"})
                   for kind, backend in BACKENDS.items()}
            for side, stack in (("real", vllm_stack), ("sim", sim_stack))}
    yield made
    for side in made.values():
        for client in side.values():
            client.close()
