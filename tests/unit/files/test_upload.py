"""files/upload.py: a multipart upload read in chunks of any size, the file on disk and the
fields kept; malformed uploads refused with their error."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from llmgw.errors import BodyTooLarge, InvalidRequest, UnsupportedMediaType
from llmgw.files import upload
from llmgw.files.upload import receive

FILE = b"".join(b'{"custom_id": "%d"}\r\n' % i for i in range(2000)) + b"--bnd-not-a-boundary\r\n"


def _body(file: bytes = FILE, *, filename: bytes = b"dir/in put.jsonl", extra: bytes = b"") -> bytes:
    return (b"--bnd\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            b"--bnd\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename +
            b"\"\r\nContent-Type: application/jsonl\r\n\r\n" + file + b"\r\n" + extra + b"--bnd--\r\n")


def _request(body: bytes, chunk: int, content_type: bytes = b"multipart/form-data; boundary=bnd"):
    chunks = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]

    async def receive_message():
        return messages.pop(0)
    scope = {"type": "http", "method": "POST", "path": "/v1/files", "headers": [
        (b"content-type", content_type)]}
    return Request(scope, receive_message)


def _run(request, tmp_path, max_bytes=1 << 20):
    return asyncio.run(receive(request, tmp_path / "f.part", max_bytes))


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_the_file_reaches_disk_whole_whatever_the_chunks(tmp_path, chunk, monkeypatch):
    monkeypatch.setattr(upload, "WRITE_CHUNK", 1000)  # many writes, not one
    got = _run(_request(_body(), chunk), tmp_path)
    assert (tmp_path / "f.part").read_bytes() == FILE
    assert got.size == len(FILE) and got.fields == {"purpose": "batch"}
    assert got.filename == "in put.jsonl"  # the last path segment only


@pytest.mark.parametrize("body, content_type, error, param", [
    (_body(FILE * 20), None, BodyTooLarge, "file"),
    (_body(extra=b"--bnd\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b\"\r\n\r\nx\r\n"),
     None, InvalidRequest, "file"),
    (_body(extra=b"--bnd\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"),
     None, InvalidRequest, "purpose"),
    (_body(extra=b"--bnd\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n" + b"n" * 2000
           + b"\r\n"), None, InvalidRequest, "note"),
    (_body(extra=b"--bnd\r\nContent-Disposition: attachment\r\n\r\nx\r\n"), None, InvalidRequest, None),
    (_body()[:-10], None, InvalidRequest, None),
    (b"--bnd\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--bnd--\r\n",
     None, InvalidRequest, "file"),
    (_body(), b"application/json", UnsupportedMediaType, None),
    (_body(), b"multipart/form-data", InvalidRequest, None),
    (b"".join(b"--bnd\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nx\r\n" % i
              for i in range(17)) + b"--bnd--\r\n", None, InvalidRequest, None),
])
def test_malformed_uploads_are_refused(tmp_path, body, content_type, error, param):
    request = _request(body, 512, content_type or b"multipart/form-data; boundary=bnd")
    with pytest.raises(error) as caught:
        _run(request, tmp_path, max_bytes=len(FILE) + 10)
    assert caught.value.param == param


def test_a_display_name_has_no_path_and_no_control_characters():
    assert upload._display_name(b"C:\\Users\\me\\a\x07b.jsonl") == "ab.jsonl"
    assert upload._display_name(b"../../etc/passwd") == "passwd"
    assert upload._display_name(None) == "upload" and upload._display_name(b"a/") == "upload"
    assert len(upload._display_name(b"x" * 1000)) == 255
