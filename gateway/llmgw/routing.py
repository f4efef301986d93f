"""The routing table: public model names and aliases, the pools of backends that serve them.

Loaded once from YAML at start-up and validated there, so a typo stops the gateway instead of
turning into 404s at run time. Backend URLs may use `${VAR}` or `${VAR:-default}` so the same
file serves compose (service names) and the local stack (loopback ports).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
import re
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator

from .adapters import Adapter, AdapterSpec, check_adapters
from .backend_http import Origin
from .errors import InvalidRequest, ModelNotAllowed, ModelNotFound, ModelNotSupported
from .placement.policy import PlacementPolicy, PolicyName, backend_seed


class Endpoint(str, Enum):
    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    RERANK = "rerank"
    CLASSIFY = "classify"
    TEXT2SQL = "text2sql"


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, env: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is None:
            raise ValueError(f"routing file refers to ${{{name}}}, which is not set")
        return default
    return _ENV_REF.sub(replace, text)


class _BackendSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: HttpUrl
    max_num_seqs: int = Field(default=256, gt=0)


class _PolicySpec(BaseModel):
    """A pool's routing policy (placement/policy.py says what each one does)."""
    model_config = ConfigDict(extra="forbid")
    name: PolicyName = "least_load"
    prefix_bytes: int = Field(default=2048, ge=64, le=1 << 20)
    min_prefix_bytes: int = Field(default=32, ge=1, le=1 << 20)
    balance_abs: int = Field(default=8, ge=0, le=100_000)
    balance_rel: float = Field(default=1.5, ge=1.0, le=100.0)
    session_header: str = Field(default="x-session-id", pattern=r"^[A-Za-z0-9-]{1,64}$")
    bind_first_turns: bool = False

    @model_validator(mode="after")
    def _head_fits(self) -> "_PolicySpec":
        if self.min_prefix_bytes > self.prefix_bytes:
            raise ValueError("min_prefix_bytes must not exceed prefix_bytes")
        return self


class _PoolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backends: list[_BackendSpec] = Field(min_length=1)
    policy: _PolicySpec = _PolicySpec()
    adapters: list[AdapterSpec] = []  # LoRA adapters every backend loads (adapters.py)
    # What its vLLM servers were started with (--scheduling-policy): with `priority`, the
    # gateway sets each request's `priority` so batch lines wait behind realtime requests.
    scheduling: Literal["fcfs", "priority"] = "fcfs"


class _ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=256)
    served_name: str | None = None
    aliases: list[str] = []
    pool: str
    endpoints: list[Endpoint] = Field(min_length=1)
    owned_by: str = "llmgw"


class _TableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pools: dict[str, _PoolSpec] = Field(min_length=1)
    models: list[_ModelSpec] = Field(min_length=1)
    text2sql_default_model: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "_TableSpec":
        names: dict[str, _ModelSpec | AdapterSpec] = {}
        for m in self.models:
            if m.pool not in self.pools:
                raise ValueError(f"model {m.name!r} uses unknown pool {m.pool!r}")
            for n in [m.name, *m.aliases]:
                if n in names:
                    raise ValueError(f"model name or alias {n!r} is defined twice")
                names[n] = m
        for name, pool in self.pools.items():
            check_adapters(name, pool.adapters, names)
        for a in (a for pool in self.pools.values() for a in pool.adapters):
            for n in [a.name, *a.aliases]:
                if n in names:
                    raise ValueError(f"model or adapter name or alias {n!r} is defined twice")
                names[n] = a
        backend_names = [b.name for p in self.pools.values() for b in p.backends]
        if len(backend_names) != len(set(backend_names)):
            raise ValueError("backend names must be unique across pools")
        if self.text2sql_default_model and self.text2sql_default_model not in names:
            raise ValueError("text2sql_default_model names no model")
        return self


@dataclass(eq=False)
class Backend:
    """One vLLM server; `in_flight` is this worker's count of requests it is serving, and
    `prefill_pending` its estimate of their prompt tokens not yet prefilled (placement/)."""
    name: str
    url: str
    max_num_seqs: int
    in_flight: int = 0
    prefill_pending: int = 0

    @cached_property
    def origin(self) -> Origin:
        """Where it listens, parsed once, for the backend HTTP client."""
        return Origin.from_url(self.url)

    @cached_property
    def seed(self) -> int:
        """Its place in rendezvous rankings (placement/policy.py), the same in every process."""
        return backend_seed(self.name)


@dataclass(frozen=True)
class Pool:
    name: str
    backends: tuple[Backend, ...]
    policy: PlacementPolicy = PlacementPolicy()
    adapters: tuple[Adapter, ...] = ()  # what each backend loads besides its base model
    priority_scheduling: bool = False   # its servers run --scheduling-policy priority


@dataclass(frozen=True)
class Model:
    name: str
    served_name: str
    aliases: tuple[str, ...]
    pool: Pool
    endpoints: frozenset[Endpoint]
    owned_by: str
    parent: str | None = None  # a LoRA adapter's base model (public name); None: a base model
    # Mixed into a prefix-placement key. vLLM hashes an adapter's KV blocks with the adapter,
    # so its requests share no prefix cache with the base model's or another adapter's.
    prefix_salt: bytes = b""


@dataclass
class RoutingTable:
    models: list[Model]
    pools: dict[str, Pool]
    text2sql_default: Model | None = None
    _by_name: dict[str, Model] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for m in self.models:
            for n in (m.name, *m.aliases):
                self._by_name[n] = m

    @property
    def total_seqs(self) -> int:
        """Every backend's max_num_seqs together: the platform's sequence slots."""
        return sum(b.max_num_seqs for pool in self.pools.values() for b in pool.backends)

    def named(self, name: str) -> Model | None:
        """The model with this public name or alias."""
        return self._by_name.get(name)

    def resolve(self, name: object, endpoint: Endpoint,
                may_use: Callable[[Sequence[str]], bool] | None = None) -> Model:
        """The model a request names, or the error the client must see. With `may_use` (the
        caller's model access, when it has a list), a model it may not use, and a name no
        model has, are both 403 model_not_allowed: the answer reveals nothing of the table."""
        if name is None and endpoint is Endpoint.TEXT2SQL and self.text2sql_default:
            name = self.text2sql_default.name
        if name is None:
            raise InvalidRequest("you must provide a model parameter", param="model",
                                 code="missing_model")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("model must be a non-empty string", param="model")
        model = self._by_name.get(name)
        if may_use is not None and (model is None or not may_use((model.name, *model.aliases))):
            raise ModelNotAllowed(f"this API key may not use the model '{name[:200]}'",
                                  param="model")
        if model is None:
            known = ", ".join(m.name for m in self.models)
            raise ModelNotFound(f"The model '{name[:200]}' does not exist. Available models: {known}",
                                param="model")
        if endpoint not in model.endpoints:
            served = ", ".join(sorted(e.value for e in model.endpoints))
            raise ModelNotSupported(
                f"The model '{model.name}' does not support the {endpoint.value} endpoint "
                f"(it serves: {served})", param="model")
        return model


def load_routing(path: Path, env: dict[str, str] | None = None) -> RoutingTable:
    """Parse and validate the routing YAML; raise ValueError with a readable message."""
    raw = expand_env(path.read_text(encoding="utf-8"), dict(os.environ) if env is None else env)
    try:
        spec = _TableSpec.model_validate(yaml.safe_load(raw))
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid routing file {path}: {detail}") from None
    by_name = {n: m for m in spec.models for n in (m.name, *m.aliases)}
    pools = {name: Pool(name, tuple(Backend(b.name, str(b.url).rstrip("/"), b.max_num_seqs)
                                    for b in p.backends),
                        PlacementPolicy(**p.policy.model_dump()),
                        tuple(Adapter(a.lora_name, a.source,
                                      by_name[a.base].served_name or by_name[a.base].name)
                              for a in p.adapters),
                        p.scheduling == "priority")
             for name, p in spec.pools.items()}
    models = [Model(m.name, m.served_name or m.name, tuple(m.aliases), pools[m.pool],
                    frozenset(m.endpoints), m.owned_by) for m in spec.models]
    models += [_adapter_model(a, pools[name], by_name[a.base])
               for name, p in spec.pools.items() for a in p.adapters]
    table = RoutingTable(models, pools)
    if spec.text2sql_default_model:
        table.text2sql_default = table._by_name[spec.text2sql_default_model]
    return table


def _adapter_model(adapter: AdapterSpec, pool: Pool, base: _ModelSpec) -> Model:
    """An adapter as a model of its pool: it serves what its base serves."""
    return Model(adapter.name, adapter.lora_name, tuple(adapter.aliases), pool,
                 frozenset(base.endpoints), adapter.owned_by or base.owned_by, parent=base.name,
                 prefix_salt=b"lora:" + adapter.lora_name.encode() + b"\n")
