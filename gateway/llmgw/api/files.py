"""The Files API routes (files/ says where files live): upload, list, retrieve, content,
delete, for keys with the `batch` scope, each organisation seeing only its own files."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from ..deps import FilesDep, PrincipalDep, SettingsDep
from ..errors import InvalidRequest, NotFound
from ..files.protocol import PURPOSES, FileDeleted, FileList, FileObject
from ..files.upload import receive
from ..openapi import error_responses
from ..tenancy.records import KeyScope

router = APIRouter(tags=["files"])
ERRORS = error_responses(400, 401, 403, 404, 503)
READ_CHUNK = 256 * 1024
EXPIRY_SECS = (3600, 30 * 86400)  # OpenAI's bounds for expires_after[seconds]

UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "purpose"],
    "properties": {"file": {"type": "string", "format": "binary"},
                   "purpose": {"type": "string", "enum": list(PURPOSES)},
                   "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
                   "expires_after[seconds]": {"type": "integer", "minimum": EXPIRY_SECS[0],
                                              "maximum": EXPIRY_SECS[1]}}}}}}}


def _not_found(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {file_id[:64]}", param="file_id")


@router.post("/v1/files", response_model=FileObject, summary="Upload a file (purpose batch)",
             responses=error_responses(400, 401, 403, 413, 415, 429, 503),
             openapi_extra=UPLOAD_BODY)
async def upload_file(request: Request, files: FilesDep, settings: SettingsDep, principal: PrincipalDep) -> FileObject:
    principal.require(KeyScope.BATCH)
    store = files
    file_id = store.new_id()
    partial = store.partial_path(file_id)
    try:
        upload = await receive(request, partial, settings.files_max_bytes)
        purpose = upload.fields.get("purpose")
        if purpose not in PURPOSES:
            raise InvalidRequest(f"purpose must be one of {', '.join(PURPOSES)}"
                                 + ("" if purpose is None else f", got {purpose[:64]!r}"),
                                 param="purpose")
        created = int(store.now())
        file = FileObject(id=file_id, bytes=upload.size, created_at=created,
                          expires_at=_expires_at(upload.fields, created),
                          filename=upload.filename or "upload", purpose=purpose)
        await store.add(principal.org_id, file, partial)
        return file
    finally:
        partial.unlink(missing_ok=True)


def _expires_at(fields: dict[str, str], created: int) -> int | None:
    anchor, seconds = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest("expires_after[anchor] must be 'created_at'",
                             param="expires_after[anchor]")
    if seconds is None or not seconds.strip().isdigit() \
            or not EXPIRY_SECS[0] <= int(seconds) <= EXPIRY_SECS[1]:
        raise InvalidRequest(f"expires_after[seconds] must be a whole number from "
                             f"{EXPIRY_SECS[0]} to {EXPIRY_SECS[1]}", param="expires_after[seconds]")
    return created + int(seconds)


@router.get("/v1/files", response_model=FileList, responses=ERRORS,
            summary="The organisation's files, newest first by default")
async def list_files(store: FilesDep, principal: PrincipalDep,
                     purpose: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
                     order: Literal["asc", "desc"] = "desc",
                     after: str | None = None) -> FileList:
    principal.require(KeyScope.BATCH)
    files, more = await store.page(principal.org_id, limit=limit, descending=order == "desc",
                                   after=after, purpose=purpose)
    return FileList(data=files, first_id=files[0].id if files else None,
                    last_id=files[-1].id if files else None, has_more=more)


@router.get("/v1/files/{file_id}", response_model=FileObject, responses=ERRORS,
            summary="One file's metadata")
async def retrieve_file(file_id: str, files: FilesDep, principal: PrincipalDep) -> FileObject:
    principal.require(KeyScope.BATCH)
    file = await files.get(principal.org_id, file_id)
    if file is None:
        raise _not_found(file_id)
    return file


@router.get("/v1/files/{file_id}/content", responses=ERRORS, response_class=StreamingResponse,
            summary="A file's contents, as uploaded or written")
async def file_content(file_id: str, files: FilesDep,
                       principal: PrincipalDep) -> StreamingResponse:
    principal.require(KeyScope.BATCH)
    store = files
    file = await store.get(principal.org_id, file_id)
    if file is None:
        raise _not_found(file_id)
    try:
        fd = os.open(store.content_path(principal.org_id, file_id), os.O_RDONLY)
    except FileNotFoundError:
        raise _not_found(file_id) from None  # deleted between the two steps
    return StreamingResponse(_chunks(fd), media_type="application/octet-stream",
                             headers={"Content-Length": str(os.fstat(fd).st_size)})


async def _chunks(fd: int) -> AsyncIterator[bytes]:
    """The open file in chunks read off the event loop (open already: a delete meanwhile does
    not cut it short)."""
    try:
        while chunk := await anyio.to_thread.run_sync(os.read, fd, READ_CHUNK):
            yield chunk
    finally:
        os.close(fd)


@router.delete("/v1/files/{file_id}", response_model=FileDeleted, responses=ERRORS,
               summary="Delete a file")
async def delete_file(file_id: str, files: FilesDep, principal: PrincipalDep) -> FileDeleted:
    principal.require(KeyScope.BATCH)
    if not await files.delete(principal.org_id, file_id):
        raise _not_found(file_id)
    return FileDeleted(id=file_id)
