"""Reading a multipart/form-data upload: the `file` part goes to disk as it arrives, in chunks
of at most WRITE_CHUNK written off the event loop, never held whole in memory; the small text
fields (`purpose`, `expires_after[...]`) are kept. Every malformed upload is a 400 naming what
is wrong, a file over the limit a 413, another content type a 415."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ..errors import BodyTooLarge, InvalidRequest, UnsupportedMediaType

WRITE_CHUNK = 1 << 20   # bytes gathered before one write to disk (in a worker thread)
MAX_FIELD_BYTES = 1024  # a text field: a purpose, a number of seconds
MAX_PARTS = 16
ENVELOPE_BYTES = 64 * 1024  # the multipart framing around the file: boundaries, part headers


@dataclass
class Upload:
    """What an upload carried: its text fields, and the file's name and size on disk."""
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0


class _Reader:
    """python-multipart's callbacks: sort each part into a text field or the file."""

    def __init__(self, max_bytes: int) -> None:
        self.upload, self.max_bytes = Upload(), max_bytes
        self.pending = bytearray()  # file bytes not yet written
        self.parts = 0
        self._header_name, self._header_value = bytearray(), bytearray()
        self._disposition: bytes | None = None
        self._field: str | None = None   # the text field being read, or None for the file
        self._value = bytearray()
        self._in_file = False
        self.ended = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value_data, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._data,
                "on_part_end": self._part_end, "on_end": self._end}

    def _end(self) -> None:
        self.ended = True

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise InvalidRequest(f"the upload has more than {MAX_PARTS} parts")
        self._disposition, self._field, self._in_file = None, None, False
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if bytes(self._header_name).strip().lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        kind, options = parse_options_header(self._disposition or b"")
        name = options.get(b"name")
        if kind != b"form-data" or name is None:
            raise InvalidRequest("each part of the upload needs a Content-Disposition: "
                                 "form-data header with a name")
        name_text = name.decode("utf-8", "replace")
        if name_text == "file":
            if self.upload.filename is not None:
                raise InvalidRequest("the upload has more than one file", param="file")
            filename = options.get(b"filename")
            self.upload.filename = _display_name(filename)
            self._in_file = True
        elif name_text in self.upload.fields:
            raise InvalidRequest(f"the field {name_text[:64]!r} appears twice", param=name_text[:64])
        else:
            self._field = name_text

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.upload.size += end - start
            if self.upload.size > self.max_bytes:
                raise BodyTooLarge(f"the file exceeds {self.max_bytes} bytes", param="file",
                                   code="file_too_large")
            self.pending += data[start:end]
        elif self._field is not None:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"the field {self._field[:64]!r} is longer than "
                                     f"{MAX_FIELD_BYTES} bytes", param=self._field[:64])

    def _part_end(self) -> None:
        if self._field is not None:
            try:
                self.upload.fields[self._field] = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest(f"the field {self._field[:64]!r} is not UTF-8 text",
                                     param=self._field[:64]) from None


def _display_name(raw: bytes | None) -> str:
    """The file's name as the client gave it, for display only: its last path segment, no
    control characters, at most 255 characters."""
    name = (raw or b"").decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:255]
    return name or "upload"


def _boundary(request: Request) -> bytes:
    content_type = request.headers.get("content-type")
    if content_type is None:
        raise UnsupportedMediaType("Content-Type must be multipart/form-data")
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise UnsupportedMediaType(
            f"Content-Type must be multipart/form-data, got {kind.decode('latin-1')[:100]!r}")
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise InvalidRequest("the multipart/form-data Content-Type has no valid boundary")
    return boundary


async def receive(request: Request, partial: Path, max_bytes: int) -> Upload:
    """Read the upload, writing its file to `partial` (created here; the caller removes it
    whatever happens). Raises a GatewayError for anything malformed or too large."""
    boundary = _boundary(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + ENVELOPE_BYTES:
        raise BodyTooLarge(f"the file exceeds {max_bytes} bytes", param="file",
                           code="file_too_large")
    reader = _Reader(max_bytes)
    parser = MultipartParser(boundary, reader.callbacks())
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise InvalidRequest(f"the upload is not valid multipart/form-data: "
                                     f"{str(exc)[:200]}") from None
            if len(reader.pending) >= WRITE_CHUNK:
                await _flush(fd, reader.pending)
        parser.finalize()
        if not reader.ended:
            raise InvalidRequest("the upload ended before its closing multipart boundary")
        if reader.pending:
            await _flush(fd, reader.pending)
        await anyio.to_thread.run_sync(os.fsync, fd)
    finally:
        os.close(fd)
    if reader.upload.filename is None:
        raise InvalidRequest("the upload has no file part (a form field named 'file')",
                             param="file")
    return reader.upload


async def _flush(fd: int, pending: bytearray) -> None:
    data = bytes(pending)
    pending.clear()
    await anyio.to_thread.run_sync(_write_all, fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
