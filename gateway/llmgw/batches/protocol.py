"""The Batch API's wire shapes, as OpenAI documents them (and its SDK parses them), and the
input and output lines of a batch file."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Which endpoint table row (endpoints.py) a batch may name, by its public path.
BATCH_ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions",
                   "/v1/embeddings": "embeddings", "/v1/responses": "responses",
                   "/v1/rerank": "rerank", "/v1/score": "score", "/v1/text2sql": "text2sql"}
MAX_LINES = 50_000
WINDOW_SECS = 86_400  # completion_window "24h", the only one OpenAI offers
OUTPUT_EXPIRY_SECS = (3600, 30 * 86400)
Status = Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired",
                 "cancelling", "cancelled"]
TERMINAL = ("failed", "completed", "expired", "cancelled")


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anchor: Literal["created_at"]
    seconds: int = Field(ge=OUTPUT_EXPIRY_SECS[0], le=OUTPUT_EXPIRY_SECS[1])


class BatchCreate(BaseModel):
    """POST /v1/batches. `priority` is ours: lower runs first, as in vLLM (default 0)."""
    model_config = ConfigDict(extra="forbid")
    input_file_id: str = Field(max_length=64)
    endpoint: str
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = None
    output_expires_after: ExpiresAfter | None = None
    priority: int = Field(0, ge=-1000, le=1000)

    @field_validator("endpoint")
    @classmethod
    def _known_endpoint(cls, value: str) -> str:
        if value not in BATCH_ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(BATCH_ENDPOINTS)}")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_bounds(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            if len(value) > 16:
                raise ValueError("metadata holds at most 16 pairs")
            if any(len(k) > 64 or len(v) > 512 for k, v in value.items()):
                raise ValueError("metadata keys are at most 64 characters, values 512")
        return value


class BatchError(BaseModel):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class RequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class InputDetails(BaseModel):
    cached_tokens: int = 0


class OutputDetails(BaseModel):
    reasoning_tokens: int = 0


class BatchUsage(BaseModel):
    input_tokens: int = 0
    input_tokens_details: InputDetails = InputDetails()
    output_tokens: int = 0
    output_tokens_details: OutputDetails = OutputDetails()
    total_tokens: int = 0


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None = None
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str = "24h"
    status: Status
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts = RequestCounts()
    usage: BatchUsage = BatchUsage()
    metadata: dict[str, str] | None = None
    priority: int = 0
    running: int = 0  # lines being run now (ours, as `priority`)


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class InputLine(BaseModel):
    """One line of a batch input file."""
    model_config = ConfigDict(extra="forbid")
    custom_id: str = Field(min_length=1, max_length=512)
    method: Literal["POST"]
    url: str
    body: dict


class BatchCompletionAccepted(BaseModel):
    """202 of POST /v1/batch/completions (seeds 001 and 004)."""
    id: str
    object: Literal["batch.completion"] = "batch.completion"
    status: Literal["queued", "running", "completed", "failed", "cancelled", "expired"]
    status_url: str
    priority: int
    created_at: int


class BatchCompletionStatus(BatchCompletionAccepted):
    """GET /v1/batch/completions/{id}: `result` is the completion once `completed`; `error`
    what the gateway answered if it failed."""
    completed_at: int | None = None
    result: dict | None = None
    error: dict | None = None
