"""The single-host entrypoint's settings: read from the environment and checked before anything
starts, so a typo stops the container with a message naming the variable, not a restart loop.

Only what the entrypoint itself needs is here (the model, the backend command, Redis, restart
timing); every gateway setting (ADMIN_TOKEN, limits, GATEWAY_PORT...) is read by the gateway
as usual, and checked here too (`check_gateway_settings`) before the first process starts.
"""

from __future__ import annotations

import secrets
import shlex
from pathlib import Path
from typing import Annotated

from pydantic import (AliasChoices, BaseModel, ConfigDict, Field, ValidationError,
                      field_validator, model_validator)

from ..routing import Endpoint

# What BACKEND_COMMAND may refer to; filled in from the settings below.
PLACEHOLDERS = ("{port}", "{model}", "{served_model_name}", "{max_num_seqs}")

Port = Annotated[int, Field(gt=0, lt=65536)]
Seconds = Annotated[float, Field(gt=0, le=3600)]


class SingleHostConfig(BaseModel):
    """Names match the environment variables (case-insensitive); seed 000's names work too."""

    # A model, not BaseSettings: load_config passes the environment it means (no hidden reads).
    model_config = ConfigDict(extra="ignore", frozen=True, protected_namespaces=())

    # The model vLLM loads (a Hugging Face id or a path), and the name clients use for it.
    model: str = Field("", validation_alias=AliasChoices("model", "model_id"))
    served_model_name: str = ""
    model_aliases: str = ""                  # comma-separated other names for the same model
    model_endpoints: str = "chat,completions"
    vllm_port: Port = 8001                   # loopback only: the gateway is the way in
    vllm_args: str = Field("", validation_alias=AliasChoices("vllm_args", "extra_vllm_args"))
    max_num_seqs: Annotated[int, Field(gt=0, le=100_000)] = 256
    # Replaces `vllm serve ...` whole (shell words, no shell); may use PLACEHOLDERS.
    backend_command: str = ""
    # Unset: a random key for this start; vLLM and the gateway both get it.
    backend_api_key: str = ""

    # Unset: a redis-server of our own on REDIS_PORT, its data under DATA_DIR/redis.
    redis_url: str = ""
    redis_port: Port = 6379
    data_dir: Path = Path("/var/lib/llmgw")
    # A routing table of your own instead of the generated one-backend table.
    routing_file: Path | None = None
    gunicorn_conf: Path = Path("/app/gunicorn.conf.py")

    # A backend that dies waits this long before its restart, doubled after each quick death
    # up to the maximum; one that ran BACKEND_STABLE_SECS first starts again from the minimum.
    backend_restart_min_secs: Seconds = 1.0
    backend_restart_max_secs: Seconds = 60.0
    backend_stable_secs: Seconds = 120.0
    # How long the backend may take to stop (after the gateway has drained) before SIGKILL.
    backend_stop_secs: Seconds = 30.0

    @field_validator("model", "served_model_name", "backend_command", "vllm_args", "redis_url",
                     "backend_api_key")
    @classmethod
    def _stripped(cls, value: str) -> str:
        return value.strip()

    @field_validator("vllm_args", "backend_command")
    @classmethod
    def _shell_words(cls, value: str) -> str:
        try:
            shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot be split into words: {exc}") from None
        return value

    @field_validator("model_endpoints")
    @classmethod
    def _known_endpoints(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        known = {e.value for e in Endpoint}
        unknown = [n for n in names if n not in known]
        if not names or unknown:
            raise ValueError(f"must list endpoints among {', '.join(sorted(known))} "
                             f"(got {value!r})")
        return ",".join(names)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (or be unset: "
                             "a Redis inside the container)")
        return value

    @field_validator("backend_api_key")
    @classmethod
    def _header_safe(cls, value: str) -> str:
        if value and (len(value) < 16 or not value.isprintable() or " " in value):
            raise ValueError("must be at least 16 printable characters without spaces")
        return value

    @field_validator("routing_file", "gunicorn_conf")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "SingleHostConfig":
        if not self.model and not self.served_model_name:
            raise ValueError("MODEL is required (the model vLLM serves, e.g. "
                             "Qwen/Qwen2.5-7B-Instruct)")
        if self.backend_restart_min_secs > self.backend_restart_max_secs:
            raise ValueError("BACKEND_RESTART_MIN_SECS cannot exceed BACKEND_RESTART_MAX_SECS")
        if self.backend_command and self.vllm_args:
            raise ValueError("VLLM_ARGS applies to the default vLLM command only; with "
                             "BACKEND_COMMAND, put the arguments there")
        if not self.redis_url and self.redis_port == self.vllm_port:
            raise ValueError("REDIS_PORT and VLLM_PORT must differ")
        return self

    @property
    def public_name(self) -> str:
        """The name clients send and vLLM answers with (its --served-model-name)."""
        return self.served_model_name or self.model

    @property
    def aliases(self) -> list[str]:
        return [a.strip() for a in self.model_aliases.split(",") if a.strip()]

    @property
    def endpoints(self) -> list[str]:
        return self.model_endpoints.split(",")

    @property
    def backend_url(self) -> str:
        return f"http://127.0.0.1:{self.vllm_port}"

    @property
    def internal_redis(self) -> bool:
        return not self.redis_url

    @property
    def gateway_redis_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    def backend_argv(self) -> list[str]:
        """vLLM's OpenAI server on loopback, or BACKEND_COMMAND with its placeholders filled."""
        if not self.backend_command:
            return ["vllm", "serve", self.model or self.public_name, "--host", "127.0.0.1",
                    "--port", str(self.vllm_port), "--served-model-name", self.public_name,
                    "--max-num-seqs", str(self.max_num_seqs), *shlex.split(self.vllm_args)]
        values = dict(zip(PLACEHOLDERS, (str(self.vllm_port), self.model or self.public_name,
                                         self.public_name, str(self.max_num_seqs))))
        words = []
        for word in shlex.split(self.backend_command):
            for placeholder, value in values.items():
                word = word.replace(placeholder, value)
            words.append(word)
        return words


def load_config(environ: dict[str, str]) -> SingleHostConfig:
    """The settings from `environ`, or SystemExit naming every bad variable."""
    try:
        config = SingleHostConfig(**_lowercase(environ))
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: "
                 f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        raise SystemExit("single-host: invalid settings:\n" + "\n".join(lines)) from None
    if not config.backend_api_key:
        # vLLM listens on loopback only, but a key still keeps other local users off it.
        config = config.model_copy(update={"backend_api_key": secrets.token_urlsafe(32)})
    return config


def _lowercase(environ: dict[str, str]) -> dict[str, str]:
    """Only the names this class knows, lowercased, as environment names are case-insensitive."""
    wanted = set(SingleHostConfig.model_fields) | {"model_id", "extra_vllm_args"}
    return {k.lower(): v for k, v in environ.items() if k.lower() in wanted}
