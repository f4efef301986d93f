"""The gateway's one settings class: every knob, read from the environment and validated once."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (AliasChoices, Field, SecretStr, ValidationError, field_validator,
                      model_validator)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .redis_link import check_topology
from .tenancy.limits import LIMIT_FIELDS, Limits

# The shipped routing table sits beside the package so a bare install finds it.
DEFAULT_ROUTING_FILE = Path(__file__).resolve().parent.parent / "routing.yaml"

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


def _also(name: str, seed_002_name: str, default: int):
    """A default limit that seed 002's environment name sets too."""
    return Field(default, validation_alias=AliasChoices(name, seed_002_name))


class Settings(BaseSettings):
    """Gateway settings; names match the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, frozen=True,
                                      populate_by_name=True)

    gateway_host: str = "0.0.0.0"
    gateway_port: Annotated[int, Field(gt=0, lt=65536)] = 8000
    gateway_workers: Annotated[int, Field(ge=1, le=64)] = 2
    routing_file: Path = DEFAULT_ROUTING_FILE

    backend_api_key: SecretStr | None = None
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1_048_576
    # What a client may send to the gateway's own port (nginx is not always in front). The
    # header size is nginx's large_client_header_buffers 4 32k; the timeouts are 60 s as
    # nginx's client_header/body_timeout, but whole deadlines (below), not nginx's gaps
    # between two reads. Request line and header fields together; a 10 KB Authorization
    # header must get through.
    client_max_header_bytes: Annotated[int, Field(ge=16 * 1024, le=16 * 1024 * 1024)] = 131_072
    client_max_header_fields: Annotated[int, Field(ge=16, le=10_000)] = 100
    # From the connection's first byte (or its opening, for the first request) to the end of
    # the headers; then from there to the end of the body. Whole deadlines, not idle gaps, so
    # a byte now and then cannot hold a connection. The body's asks a client for at least
    # MAX_BODY_BYTES / CLIENT_BODY_TIMEOUT_SECS to send the largest body: 17.5 KB/s at the
    # defaults, but 1.1 MB/s with a 64 MiB MAX_BODY_BYTES, so raise both together. (Behind
    # nginx, which buffers the whole body first, the gateway gets it at loopback speed.)
    client_header_timeout_secs: Annotated[float, Field(gt=0, le=3600)] = 60.0
    client_body_timeout_secs: Annotated[float, Field(gt=0, le=3600)] = 60.0

    # Upstream connection pool (seed 002: 3000 connections, 800 kept alive).
    http_max_connections: PositiveInt = 3000
    http_max_keepalive: PositiveInt = 800
    # Getting a connection: a free one under the cap, then the connect; within what is left of
    # the upstream deadline too.
    upstream_connect_timeout_secs: PositiveFloat = 5.0
    # Longest wait for a backend's answer (a non-streaming call's last byte, a stream's
    # response head), waits for capacity and connections included, one deadline for all of a
    # request's attempts: a retry gets what is left (seed 000's name). /tokenize, called
    # before the main call, has min(this, 5 s) of its own (upstream.TOKENIZE_SECS).
    upstream_timeout_seconds: PositiveFloat = 300.0
    # Longest silence of a stream, its response head included.
    stream_idle_timeout_secs: PositiveFloat = 180.0
    max_request_secs: PositiveFloat = 5400.0
    health_check_interval_secs: PositiveFloat = 10.0
    health_probe_timeout_secs: PositiveFloat = 2.0
    # Each worker reads every backend's /metrics this often (with jitter) for its state view
    # (backend_state/): running and waiting requests, KV cache use, prefix cache hits. A scrape
    # may take the interval, at most 2 s; figures older than 3 intervals are ignored. 0 = off.
    backend_metrics_interval_secs: Annotated[float, Field(ge=0, le=300)] = 1.0

    # --- resilience ---
    # Consecutive backend failures (connect errors, timeouts, 5xx) that open its breaker; a
    # request's 5xx answers count once, however many backends it tried (resilience/tries.py).
    circuit_failure_threshold: PositiveInt = 5
    # Seconds an open breaker keeps its backend out before one trial request.
    circuit_recovery_timeout: PositiveFloat = 30.0
    retry_max: Annotated[int, Field(ge=0, le=5)] = 2
    # Retries may be at most this share of requests over the budget window.
    retry_budget_ratio: Annotated[float, Field(ge=0, le=1)] = 0.2
    retry_budget_window_secs: PositiveFloat = 10.0
    # After an attempt on a backend fails, it gets no first tries for this long while another
    # backend of its pool can serve (a success ends it sooner; resilience/suspects.py).
    failover_hold_secs: Annotated[float, Field(ge=0, le=3600)] = 10.0
    # While another sound backend could take over: the longest wait for a stream's response
    # head (vLLM sends it once the request is queued), and for a whole non-streaming answer
    # (above the longest legitimate generation). Past it the backend counts as hung and the
    # request moves on with what is left of UPSTREAM_TIMEOUT_SECONDS.
    failover_stream_head_secs: Annotated[float, Field(gt=0, le=3600)] = 10.0
    failover_answer_secs: Annotated[float, Field(gt=0, le=86400)] = 120.0
    # First backoff before a retry; doubled each time, with full jitter, capped at 1 s.
    retry_backoff_secs: Annotated[float, Field(ge=0, le=1)] = 0.05
    # Longest wait for backend capacity when every backend of a pool is full.
    queue_timeout_secs: Annotated[float, Field(ge=0, le=600)] = 2.0
    # On SIGTERM or reload: how long in-flight requests and streams may take to finish.
    graceful_timeout_secs: Annotated[float, Field(ge=1, le=7200)] = 120.0

    # --- state and control plane ---
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis counts as unreachable (LIMITER_FAILURE_POLICY applies) once it has sent nothing for
    # this long while a request-path call waited; a call waits at most 4 times as long (at
    # least 1 s) while Redis answers the calls queued before it, then gets 503 limiter_busy.
    redis_timeout_secs: Annotated[float, Field(gt=0, le=30)] = 0.25
    # Redis Sentinel (redis_link.py): `host:port,...` of the sentinels that name the primary of
    # REDIS_MASTER_NAME; REDIS_URL then gives only credentials, database and TLS.
    redis_sentinels: str = ""
    redis_master_name: Annotated[str, Field(min_length=1, max_length=128,
                                            pattern=r"^[A-Za-z0-9._-]+$")] = "llmgw"
    redis_sentinel_password: SecretStr | None = None
    redis_sentinel_tls: bool = False
    # Redis Cluster: REDIS_URL names one node, the others are learnt from it. Each organisation's
    # limits stay exact (its keys share a slot); GLOBAL_MAX_CONCURRENT must be 0 (one script
    # cannot hold a platform-wide lease set beside every organisation's keys).
    redis_cluster: bool = False
    admin_token: SecretStr | None = None
    auth_cache_ttl_secs: Annotated[float, Field(ge=0, le=3600)] = 30.0

    # --- admission ---
    # What to do while Redis is unreachable: "open" admits with a per-worker limiter at each
    # organisation's limit divided by workers x replicas; "closed" answers 503.
    limiter_failure_policy: Literal["open", "closed"] = "open"
    global_max_concurrent: Annotated[int, Field(ge=0)] = 128  # whole platform; 0 = unlimited
    concurrency_lease_secs: Annotated[float, Field(ge=3, le=600)] = 30.0
    usage_retention_days: Annotated[int, Field(ge=1, le=3650)] = 90
    gateway_replicas: Annotated[int, Field(ge=1, le=256)] = 1

    # --- limits an organisation gets for every field it does not set (seed 000 names; seed
    # 002's MAX_RPS_PER_IP, RPS_BURST, MAX_INFLIGHT_PER_IP and ORG_* names are accepted too) ---
    default_rps: PositiveInt = _also("default_rps", "max_rps_per_ip", 50)
    default_burst: PositiveInt = _also("default_burst", "rps_burst", 100)
    default_rpm_limit: PositiveInt = 120
    default_tpm_limit: PositiveInt = 120_000
    default_max_concurrent: PositiveInt = _also("default_max_concurrent", "max_inflight_per_ip", 4)
    default_daily_token_limit: PositiveInt = _also("default_daily_token_limit",
                                                   "org_daily_token_limit", 10_000_000)
    default_daily_request_limit: PositiveInt = _also("default_daily_request_limit",
                                                     "org_daily_request_limit", 100_000)
    default_monthly_token_limit: PositiveInt = _also("default_monthly_token_limit",
                                                     "org_monthly_token_limit", 300_000_000)
    default_max_context_tokens: PositiveInt = 8192
    default_max_output_tokens: PositiveInt = 512

    # --- Responses API: stored conversations (Redis), per organisation ---
    responses_ttl_secs: Annotated[int, Field(ge=60, le=365 * 86400)] = 30 * 86400
    # A conversation (its items and the last response) over this many bytes is answered but
    # not stored: a later turn naming it gets 404.
    responses_max_bytes: Annotated[int, Field(ge=4096, le=64 * 1024 * 1024)] = 4 * 1024 * 1024

    # --- Files API: batch input files and the files batch jobs write ---
    # Contents on disk here (metadata in Redis), shared by every gateway worker and replica and
    # the batch runner: a named volume in compose, under .stack/ locally. Created at start-up;
    # one that cannot be written stops start-up.
    data_dir: Path = Path("/var/lib/llmgw")
    # One file's largest size (OpenAI's batch input limit, 200 MiB); nginx's /v1/files location
    # takes this plus the multipart framing.
    files_max_bytes: Annotated[int, Field(ge=1024, le=8 * 1024**3)] = 200 * 1024 * 1024
    # Everything one organisation may keep, uploads and batch output together.
    files_org_max_bytes: Annotated[int, Field(ge=1024, le=1024**5)] = 20 * 1024**3
    # The whole deadline for an upload's body on the gateway's own port (the other requests'
    # is CLIENT_BODY_TIMEOUT_SECS): 200 MiB in 600 s asks for 350 KB/s.
    files_upload_timeout_secs: Annotated[float, Field(gt=0, le=86400)] = 600.0

    # --- batch jobs (batches/): run by the batch runner through the gateway, on spare capacity ---
    # The runner's credential on the batch lane (at least 16 characters); unset, the gateway
    # refuses batch-lane calls and the runner does not start.
    batch_runner_token: SecretStr | None = None
    # Batch requests in flight at once, whole platform (seeds 001/004); 0 stops batch work.
    max_concurrent_batch: Annotated[int, Field(ge=0, le=100_000)] = 32
    # A backend takes batch work only while nothing waits there and it runs fewer than this
    # share of its max_num_seqs (the state view's figures, or this worker's own count).
    batch_capacity_share: Annotated[float, Field(gt=0, le=1)] = 0.9
    # While a worker runs batch lines on a backend it reads that backend's /metrics this often,
    # and aborts its youngest batch lines there once realtime fills it past the halfway point
    # between BATCH_CAPACITY_SHARE and full (they run again later).
    batch_watch_secs: Annotated[float, Field(ge=0.05, le=10)] = 0.1
    # An organisation whose quota is spent has its batches paused until the reset, but looked
    # at again this often (an operator may have raised the quota).
    batch_quota_recheck_secs: Annotated[float, Field(ge=1, le=86400)] = 60.0
    # Where a runner sends its lines (the gateway's own port or its service name).
    batch_gateway_url: str = "http://127.0.0.1:8000"
    # Lines one runner process sends at once.
    batch_runner_slots: Annotated[int, Field(ge=1, le=4096)] = 32
    # How long a console sign-in (/dashboard) lasts; signing out ends it sooner.
    console_session_secs: Annotated[float, Field(ge=60, le=86400)] = 3600.0
    # A line whose runner stops renewing its lease for this long runs again elsewhere.
    batch_lease_secs: Annotated[float, Field(ge=5, le=3600)] = 60.0

    # --- response cache and compression ---
    cache_enabled: bool = True
    cache_ttl_secs: Annotated[float, Field(gt=0, le=86400)] = 60.0
    cache_max_entries: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    # Larger answers are served but not kept: bounds a worker's cache memory (entries x size).
    cache_max_entry_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 32_768
    # A second tier in Redis (REDIS_URL) shared by every worker and replica.
    cache_redis: bool = False
    # "requests": a hit counts as a request and bills no tokens; "tokens": it bills the
    # cached answer's tokens too.
    cache_hit_billing: Literal["requests", "tokens"] = "requests"
    # JSON answers at least this large are gzipped for clients that accept it; 0 turns it off.
    gzip_min_bytes: Annotated[int, Field(ge=0, le=64 * 1024 * 1024)] = 1024

    # Opt-in: log the request's text (last message, prompt or input), redacted, on the access line.
    log_content: bool = False
    # seed 000: "off" drops organisation labels from every metric
    metrics_tenant_labels: bool = True

    build_sha: str = "dev"
    build_time: str = "dev"
    log_level: str = "info"

    @field_validator("routing_file")
    @classmethod
    def _routing_file_exists(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"routing file not found: {value}")
        return value

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None  # unset: every admin route answers 503 admin_unavailable
        if len(value.get_secret_value()) < 16:
            raise ValueError("ADMIN_TOKEN must be at least 16 characters")
        return value

    @field_validator("batch_runner_token")
    @classmethod
    def _strong_runner_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None  # unset: no batch lane
        token = value.get_secret_value()
        if len(token) < 16 or not token.isprintable() or " " in token:
            raise ValueError("BATCH_RUNNER_TOKEN must be at least 16 printable characters, "
                             "without spaces")
        return value

    @field_validator("backend_api_key")
    @classmethod
    def _header_safe_key(cls, value: SecretStr | None) -> SecretStr | None:
        # It travels in an Authorization header: a control character would split the request.
        if value is not None and not value.get_secret_value().isprintable():
            raise ValueError("BACKEND_API_KEY must be printable text (no CR, LF or other controls)")
        if value is not None and value.get_secret_value() == "":
            return None
        # As the admin token: nginx's access log masks every run of 16 characters or more
        # between URI delimiters (nginx.conf.template); a shorter key would be logged there.
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("BACKEND_API_KEY must be at least 16 characters")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _redis_topology(self) -> "Settings":
        check_topology(self)  # REDIS_SENTINELS, REDIS_CLUSTER and what they exclude
        return self

    @field_validator("files_org_max_bytes")
    @classmethod
    def _org_holds_a_file(cls, value: int, info) -> int:
        largest = info.data.get("files_max_bytes")
        if largest is not None and value < largest:
            raise ValueError("FILES_ORG_MAX_BYTES cannot be below FILES_MAX_BYTES")
        return value

    def default_limits(self) -> Limits:
        return Limits(**{name: getattr(self, f"default_{name}") for name in LIMIT_FIELDS})

    @field_validator("backend_metrics_interval_secs")
    @classmethod
    def _scrape_interval(cls, value: float) -> float:
        # Below 0.1 s the scrapes would cost the backends (each renders its whole /metrics).
        if 0 < value < 0.1:
            raise ValueError("BACKEND_METRICS_INTERVAL_SECS must be 0 (off) or at least 0.1")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return value

    @field_validator("http_max_keepalive")
    @classmethod
    def _keepalive_within_pool(cls, value: int, info) -> int:
        limit = info.data.get("http_max_connections")
        if limit is not None and value > limit:
            raise ValueError("HTTP_MAX_KEEPALIVE cannot exceed HTTP_MAX_CONNECTIONS")
        return value


def load_settings() -> Settings:
    """Read settings from the environment or raise SystemExit with a readable message."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}"
                 for e in exc.errors()]
        raise SystemExit("invalid gateway settings:\n" + "\n".join(lines)) from None
