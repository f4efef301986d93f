"""LoRA adapters declared per pool in routing.yaml: models of their own on their base's servers.

vLLM serves an adapter (`--enable-lora --lora-modules`) beside its base model, on the same
server, under the adapter's own name: a request names the adapter as its `model`. The gateway
makes each adapter a model of its pool: its public name and aliases are listed, routed,
limited, metered and access-controlled like any model's, and its card names its base model as
`parent`. Every backend of the pool must load every adapter the pool declares; the local
stack and the compose file start them so (stack/topology.py, docker-compose.yml).

    pools:
      chat:
        backends: [...]
        adapters:
          - name: acme/sql-assistant      # public name
            aliases: [sql-assistant]
            base: qwen                    # the model it adapts (name or alias), served by this pool
            source: /adapters/sql-assistant   # what vLLM loads: a folder or a Hugging Face repo id
            served_name: sql-assistant    # its --lora-modules name (default: its public name)
            owned_by: acme                # default: the base model's
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

# vLLM reads `--lora-modules name=path` by splitting at "=": a name with "=" or a space
# could not be given that way, and a name is also a `model` field clients send.
SERVED_NAME = r"^[^\s=]{1,256}$"


class AdapterSpec(BaseModel):
    """One adapter as routing.yaml declares it, under its pool."""
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=256)
    aliases: list[str] = []
    base: str = Field(min_length=1, max_length=256)
    source: str = Field(min_length=1, max_length=4096, pattern=r"\S")
    served_name: str | None = Field(default=None, pattern=SERVED_NAME)
    owned_by: str | None = None

    @property
    def lora_name(self) -> str:
        return self.served_name or self.name

    @model_validator(mode="after")
    def _servable(self) -> "AdapterSpec":
        if not re.match(SERVED_NAME, self.lora_name):
            raise ValueError(f"adapter {self.name!r}: a name with '=' or a space cannot be served "
                             "as it is: give it a served_name")
        return self


class _DeclaredModel(Protocol):
    """What the checks need of a model routing.yaml declares."""
    name: str
    served_name: str | None
    pool: str
    endpoints: Sequence


@dataclass(frozen=True)
class Adapter:
    """What every server of a pool loads for one adapter: an entry of vLLM's --lora-modules."""
    served_name: str
    source: str
    base_served_name: str

    def lora_module(self, source: str | None = None) -> str:
        """The entry in vLLM's JSON form, which also names the base (its listing's `parent`);
        `source` replaces the declared one (the local stack's tiny adapters)."""
        return json.dumps({"name": self.served_name, "path": source or self.source,
                           "base_model_name": self.base_served_name})


def check_adapters(pool: str, adapters: Sequence[AdapterSpec],
                   models: Mapping[str, _DeclaredModel]) -> None:
    """Raise ValueError, naming the adapter, for a declaration the pool cannot serve: a base
    that is no model of this pool or does not generate text, or a served name the pool's
    servers already give to a model or another adapter. `models`: every model by name and
    alias. Clashes of public names and aliases are the table's check (routing.py)."""
    served = {m.served_name or m.name for m in models.values() if m.pool == pool}
    for adapter in adapters:
        where = f"adapter {adapter.name!r} of pool {pool!r}"
        base = models.get(adapter.base)
        if base is None:
            raise ValueError(f"{where}: its base {adapter.base!r} names no model")
        if base.pool != pool:
            raise ValueError(f"{where}: its base model {base.name!r} is served by pool "
                             f"{base.pool!r}; an adapter lives on its base model's servers")
        if not {"chat", "completions", "text2sql"} & {str(getattr(e, "value", e))
                                                       for e in base.endpoints}:
            raise ValueError(f"{where}: its base model {base.name!r} generates no text "
                             "(LoRA adapters apply to chat and completion models)")
        if adapter.lora_name in served:
            raise ValueError(f"{where}: served name {adapter.lora_name!r} is already served "
                             f"by pool {pool!r}")
        served.add(adapter.lora_name)
