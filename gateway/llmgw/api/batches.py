"""The Batch API routes (batches/ runs the jobs): create, retrieve, list and cancel batches
for keys with the `batch` scope, and seed 001/004's single batch completions. Each
organisation sees only its own jobs; another's id is 404."""

from __future__ import annotations

import os
from array import array
from typing import Annotated

import anyio
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ..body import read_json_object
from ..batches.jobs import JobStore
from ..files.store import FileStore
from ..deps import BatchesDep, FilesDep, PrincipalDep, RoutingDep, SettingsDep, presented_key
from ..errors import Conflict, InvalidRequest, NotFound
from ..files.protocol import PURPOSES
from ..openapi import error_responses, json_body
from ..protocol import CompletionRequest, validate
from ..routing import Endpoint
from ..tenancy.apikeys import digest
from ..tenancy.auth import Principal
from ..tenancy.records import KeyScope
from ..batches.jobs import new_batch_id
from ..batches.protocol import (WINDOW_SECS, BatchCompletionAccepted, BatchCompletionStatus,
                                BatchCreate, BatchList, BatchObject)
from ..batches.spool import batch_dir
from ..batches.validate import write_spans

router = APIRouter(tags=["batches"])
ERRORS = error_responses(400, 401, 403, 404, 503)


def _not_found(batch_id: str) -> NotFound:
    return NotFound(f"No such batch: {batch_id[:64]}", param="batch_id")


def _job_fields(principal: Principal, request: Request, batch_id: str, now: int, **fields) -> dict:
    return {"id": batch_id, "org": principal.org_id, "key": digest(presented_key(request) or ""),
            "status": "validating", "created_at": now, "expires_at": now + WINDOW_SECS,
            "completion_window": "24h", **fields}


@router.post("/v1/batches", response_model=BatchObject, responses=ERRORS,
             summary="Create a batch from an uploaded JSONL file (purpose batch)",
             openapi_extra=json_body(BatchCreate))
async def create_batch(request: Request, batches: BatchesDep, files: FilesDep, settings: SettingsDep,
                       principal: PrincipalDep) -> BatchObject:
    principal.require(KeyScope.BATCH)
    body = validate(BatchCreate, await read_json_object(request, settings.max_body_bytes))
    file = await files.get(principal.org_id, body.input_file_id)
    if file is None:
        raise NotFound(f"No such File object: {body.input_file_id[:64]}", param="input_file_id")
    if file.purpose not in PURPOSES:
        raise InvalidRequest(f"the input file's purpose is {file.purpose!r}, not 'batch'",
                             param="input_file_id")
    now = int(batches.now())
    batch_id = new_batch_id(now)
    expiry = body.output_expires_after.seconds if body.output_expires_after else 0
    await batches.create(principal.org_id, batch_id, _job_fields(
        principal, request, batch_id, now, kind="batch", endpoint=body.endpoint,
        input_file_id=body.input_file_id, priority=body.priority, output_expires=expiry,
        metadata=orjson.dumps(body.metadata).decode() if body.metadata is not None else ""),
        runnable=False)
    return await _get(batches, principal, batch_id)


async def _get(batches: JobStore, principal: Principal, batch_id: str) -> BatchObject:
    batch = await batches.get(principal.org_id, batch_id)
    if batch is None:
        raise _not_found(batch_id)
    return batch


@router.get("/v1/batches/{batch_id}", response_model=BatchObject, responses=ERRORS,
            summary="One batch: status, counts, usage, output and error files")
async def retrieve_batch(batch_id: str, batches: BatchesDep,
                         principal: PrincipalDep) -> BatchObject:
    principal.require(KeyScope.BATCH)
    return await _get(batches, principal, batch_id)


@router.get("/v1/batches", response_model=BatchList, responses=ERRORS,
            summary="The organisation's batches, newest first")
async def list_batches(batches: BatchesDep, principal: PrincipalDep,
                       limit: Annotated[int, Query(ge=1, le=100)] = 20,
                       after: str | None = None) -> BatchList:
    principal.require(KeyScope.BATCH)
    found, more = await batches.page(principal.org_id, limit=limit, after=after)
    return BatchList(data=found, first_id=found[0].id if found else None,
                     last_id=found[-1].id if found else None, has_more=more)


@router.post("/v1/batches/{batch_id}/cancel", response_model=BatchObject,
             responses=error_responses(400, 401, 403, 404, 409, 503),
             summary="Cancel a batch: nothing new starts; what ran is kept")
async def cancel_batch(batch_id: str, batches: BatchesDep,
                       principal: PrincipalDep) -> BatchObject:
    principal.require(KeyScope.BATCH)
    batch = await _get(batches, principal, batch_id)
    was = await batches.cancel(principal.org_id, batch_id)
    if was == "" and batch.status not in ("cancelling", "cancelled"):
        raise Conflict(f"a batch that is {batch.status} cannot be cancelled")
    return await _get(batches, principal, batch_id)


@router.post("/v1/batch/completions", status_code=202, response_model=BatchCompletionAccepted,
             responses=error_responses(400, 401, 403, 404, 413, 503),
             summary="Queue one completion as batch work (seeds 001/004); poll its status_url",
             description="A /v1/completions body plus `priority` (an integer, lower runs first, "
                         "as vLLM orders priorities; default 0). Needs the `batch` scope.",
             openapi_extra=json_body(CompletionRequest))
async def create_batch_completion(request: Request, batches: BatchesDep, routing: RoutingDep, settings: SettingsDep,
                                  principal: PrincipalDep) -> JSONResponse:
    principal.require(KeyScope.BATCH)
    body = await read_json_object(request, settings.max_body_bytes)
    priority = body.pop("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not -1000 <= priority <= 1000:
        raise InvalidRequest("priority must be an integer from -1000 to 1000", param="priority")
    validate(CompletionRequest, body)
    if body.get("stream"):
        raise InvalidRequest("a batch completion cannot stream", param="stream")
    model = routing.resolve(body.get("model"), Endpoint.COMPLETIONS,
                                     principal.may_use if principal.restricted else None)
    now = int(batches.now())
    batch_id = new_batch_id(now)
    line = orjson.dumps({"custom_id": batch_id, "method": "POST", "url": "/v1/completions",
                         "body": body}) + b"\n"
    folder = batch_dir(settings.data_dir, principal.org_id, batch_id)
    await anyio.to_thread.run_sync(_write_single, folder, line)
    await batches.create(principal.org_id, batch_id, _job_fields(
        principal, request, batch_id, now, kind="completion", endpoint="/v1/completions",
        status="in_progress", in_progress_at=now, total=1, model=model.name, priority=priority),
        runnable=True)
    accepted = BatchCompletionAccepted(id=batch_id, status="queued", priority=priority,
                                       status_url=_status_url(request, batch_id), created_at=now)
    return JSONResponse(accepted.model_dump(), status_code=202)


def _write_single(folder, line: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "input.jsonl", "wb") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    write_spans(array("Q", (0, len(line))), folder / "lines.idx")


def _status_url(request: Request, batch_id: str) -> str:
    return str(request.url_for("batch_completion_status", batch_id=batch_id))


@router.get("/v1/batch/completions/{batch_id}", response_model=BatchCompletionStatus,
            response_model_exclude_none=True,  # `result` or `error` once there is one
            responses=ERRORS, name="batch_completion_status",
            summary="A batch completion's status, and its answer once completed")
async def batch_completion_status(batch_id: str, request: Request, batches: BatchesDep, files: FilesDep,
                                  principal: PrincipalDep) -> BatchCompletionStatus:
    principal.require(KeyScope.BATCH)
    fields = await batches.fields(principal.org_id, batch_id) \
        if batch_id.startswith("batch_") and ":" not in batch_id else None
    if fields is None or fields.get("kind") != "completion":
        raise _not_found(batch_id)
    status, result, error = _completion_status(fields), None, None
    if status == "completed":
        answer = await _only_line(files, principal.org_id, fields)
        response = (answer or {}).get("response") or {}
        if response.get("status_code") == 200:
            result = response.get("body")
        else:
            status, error = "failed", (response.get("body") or answer or {}).get("error")
    return BatchCompletionStatus(
        id=batch_id, status=status, status_url=_status_url(request, batch_id),
        priority=int(fields.get("priority") or 0), created_at=int(fields["created_at"]),
        completed_at=int(fields["completed_at"]) if fields.get("completed_at") else None,
        result=result, error=error)


def _completion_status(fields: dict[str, str]) -> str:
    status = fields["status"]
    if status == "in_progress":
        return "running" if int(fields.get("next") or 0) else "queued"
    return {"finalizing": "running", "cancelling": "running"}.get(status, status)


async def _only_line(files: FileStore, org_id: str, fields: dict[str, str]) -> dict | None:
    file_id = fields.get("output_file_id") or fields.get("error_file_id")
    if not file_id:
        return None
    path = files.content_path(org_id, file_id)
    try:
        raw = await anyio.to_thread.run_sync(path.read_bytes)
    except FileNotFoundError:
        return None
    return orjson.loads(raw.splitlines()[0]) if raw.strip() else None
