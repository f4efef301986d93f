"""The stored shapes of organisations and API keys, and the scopes a key can hold."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field

from .limits import Limits


class KeyScope(str, Enum):
    CHAT = "chat"              # /v1/chat/completions and /v1/completions
    TEXT2SQL = "text2sql"
    EMBEDDINGS = "embeddings"
    RERANK = "rerank"
    BATCH = "batch"
    MONITOR = "monitor"        # /metrics, /health/detailed


INFERENCE_SCOPES = (KeyScope.CHAT, KeyScope.TEXT2SQL, KeyScope.EMBEDDINGS, KeyScope.RERANK)



class Org(BaseModel):
    id: str
    name: str
    status: Literal["active", "suspended"] = "active"
    profile: str | None = None
    limits: Limits = Field(default_factory=Limits)  # only what was set; defaults fill the rest
    timezone: str = "UTC"
    models: list[str] | None = None  # patterns of the models it may use (model_access.py); None: all
    created_at: float
    updated_at: float


class ApiKeyRecord(BaseModel):
    key_id: str
    org_id: str
    name: str | None = None
    scopes: list[KeyScope]
    status: Literal["active", "revoked"] = "active"
    expires_at: float | None = None
    limits: Limits = Field(default_factory=Limits)
    models: list[str] | None = None  # narrows its organisation's list; None: as the organisation
    created_at: float
    digest: str = Field(exclude=True)  # stored, never shown

    def public(self) -> dict:
        return {**self.model_dump(mode="json"), "limits": self.limits.explicit()}

    def stored(self) -> dict:
        return {**self.public(), "digest": self.digest}
