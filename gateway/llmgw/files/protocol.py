"""The Files API's wire shapes, as OpenAI documents them (and its SDK parses them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

# The purposes a file may be uploaded with: the gateway keeps files for batch jobs only.
PURPOSES = ("batch",)
# What a batch job writes; a client cannot upload with these.
OUTPUT_PURPOSE = "batch_output"


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True
