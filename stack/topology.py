"""The local stack's topology: which backend runs where, derived from the gateway's routing table.

The same routing.yaml drives compose and the local stack, so the backends started here serve
exactly the names the gateway will ask for, on the ports the environment points it to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmgw.adapters import Adapter
from llmgw.routing import Endpoint, RoutingTable, load_routing

# Fixed local ports (issue: chat0 8101, chat1 8102, text2sql 8103, embed 8104, rerank 8105).
# chat2 and chat3 serve only routing files that name them (bench/routing_bench.yaml's 4-replica
# chat pool); the shipped routing.yaml does not, so the stack starts no process for them.
DEFAULT_BACKEND_PORTS = {"chat0": 8101, "chat1": 8102, "text2sql": 8103, "embed": 8104,
                         "rerank": 8105, "chat2": 8106, "chat3": 8107}
# The environment variable routing.yaml reads each backend's URL from.
URL_VARS = {"chat0": "CHAT0_URL", "chat1": "CHAT1_URL", "text2sql": "TEXT2SQL_URL",
            "embed": "EMBED_URL", "rerank": "RERANK_URL", "chat2": "CHAT2_URL",
            "chat3": "CHAT3_URL"}


@dataclass(frozen=True)
class BackendSpec:
    name: str
    kind: str  # chat | embed | rerank: which engine task it runs
    port: int
    served_names: tuple[str, ...]
    adapters: tuple[Adapter, ...] = ()  # LoRA adapters its pool declares: it loads every one
    priority_scheduling: bool = False   # its pool says `scheduling: priority`

    @property
    def scheduling_flags(self) -> list[str]:
        """How vLLM (and the simulator) are told to order their waiting requests."""
        return ["--scheduling-policy", "priority"] if self.priority_scheduling else []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _kind(endpoints: frozenset[Endpoint]) -> str:
    if Endpoint.EMBEDDINGS in endpoints:
        return "embed"
    if endpoints & {Endpoint.RERANK, Endpoint.CLASSIFY}:  # a sequence-classification model
        return "rerank"
    return "chat"


def backend_specs(routing_file: Path, ports: dict[str, int]) -> list[BackendSpec]:
    """One spec per backend of the routing table, serving every model of its pool."""
    env = {var: f"http://127.0.0.1:{ports[name]}" for name, var in URL_VARS.items() if name in ports}
    routing: RoutingTable = load_routing(routing_file, env=env)
    specs = []
    for pool in routing.pools.values():
        # Base models only: the pool's LoRA adapters are loaded by name (BackendSpec.adapters),
        # and vLLM refuses an adapter named like a served model.
        models = [m for m in routing.models if m.pool.name == pool.name and m.parent is None]
        kind = _kind(frozenset().union(*(m.endpoints for m in models))) if models else "chat"
        served = tuple(dict.fromkeys(m.served_name for m in models))
        for backend in pool.backends:
            if backend.name not in ports:
                raise ValueError(f"no local port assigned to backend {backend.name}")
            specs.append(BackendSpec(backend.name, kind, ports[backend.name], served, pool.adapters,
                                     pool.priority_scheduling))
    return specs


def gateway_env(specs: list[BackendSpec]) -> dict[str, str]:
    """The URL variables that point routing.yaml at the local backends."""
    return {URL_VARS[s.name]: s.url for s in specs if s.name in URL_VARS}
