"""The Files API through a real gateway (gunicorn, Redis, files on disk): the openai SDK's
upload, list, retrieve, content and delete; organisations apart; every bad upload refused with
its documented error and nothing left behind; an upload cut off mid-way leaves nothing."""

from __future__ import annotations

import io
import os
import socket
import time

import httpx
import openai
import pytest

from stacks import TestStack

LINES = b"".join(
    b'{"custom_id": "r%d", "method": "POST", "url": "/v1/chat/completions", '
    b'"body": {"model": "qwen", "messages": [{"role": "user", "content": "hi"}]}}\n' % i
    for i in range(50))
BATCH = ["batch"]


@pytest.fixture(scope="module")
def fstack(tmp_path_factory):
    stack = TestStack("sim", tmp_path_factory.mktemp("files"), workers=2,
                      env={"FILES_MAX_BYTES": "1048576", "FILES_ORG_MAX_BYTES": "3145728"}).start()
    yield stack
    stack.stop()


def _org(stack: TestStack, scopes=BATCH) -> dict:
    return stack.create_org(key={"name": "k", "scopes": scopes})


def _client(stack: TestStack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key=key, max_retries=0)


def _stored(stack: TestStack) -> list[str]:
    root = stack.cfg.state_dir / "data" / "files"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_upload_list_retrieve_content_delete_with_the_sdk(fstack):
    client = _client(fstack, _org(fstack)["api_key"])
    before = int(time.time())
    up = client.files.create(file=("requests.jsonl", io.BytesIO(LINES)), purpose="batch")
    assert up.id.startswith("file-") and up.bytes == len(LINES) and up.purpose == "batch"
    assert up.filename == "requests.jsonl" and up.status == "processed"
    assert before <= up.created_at <= time.time() + 1 and up.expires_at is None
    assert client.files.retrieve(up.id).model_dump() == up.model_dump()
    assert client.files.content(up.id).content == LINES
    second = client.files.create(file=("b.jsonl", b"{}\n"), purpose="batch",
                                 expires_after={"anchor": "created_at", "seconds": 3600})
    assert second.expires_at == second.created_at + 3600
    listed = client.files.list()
    assert [f.id for f in listed.data] == [second.id, up.id]  # newest first
    assert [f.id for f in client.files.list(order="asc").data] == [up.id, second.id]
    page = client.files.list(limit=1, order="asc")
    assert [f.id for f in page.data] == [up.id] and page.has_more
    assert [f.id for f in client.files.list(limit=1, order="asc", after=up.id).data] == [second.id]
    assert [f.id for f in client.files.list(purpose="batch_output").data] == []
    deleted = client.files.delete(up.id)
    assert deleted.id == up.id and deleted.deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(up.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(up.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(up.id)
    assert [f.id for f in client.files.list().data] == [second.id]


def test_another_organisations_file_is_not_found(fstack):
    mine, theirs = _client(fstack, _org(fstack)["api_key"]), _client(fstack, _org(fstack)["api_key"])
    up = mine.files.create(file=("a.jsonl", LINES), purpose="batch")
    for call in (theirs.files.retrieve, theirs.files.content, theirs.files.delete):
        with pytest.raises(openai.NotFoundError) as err:
            call(up.id)
        assert err.value.body["message"] == f"No such File object: {up.id}"
    assert theirs.files.list().data == []
    assert mine.files.content(up.id).content == LINES  # untouched by their delete


def test_the_batch_scope_is_needed(fstack):
    chat_only = _client(fstack, _org(fstack, ["chat"])["api_key"])
    with pytest.raises(openai.PermissionDeniedError):
        chat_only.files.create(file=("a.jsonl", LINES), purpose="batch")
    with pytest.raises(openai.PermissionDeniedError):
        chat_only.files.list()
    with pytest.raises(openai.AuthenticationError):
        _client(fstack, "sk-wrong").files.list()


def _post(stack, key, **kw) -> httpx.Response:
    return httpx.post(stack.base_url + "/v1/files", headers={"Authorization": f"Bearer {key}"},
                      timeout=30, **kw)


@pytest.mark.parametrize("kw, status, param", [
    ({"files": {"file": ("a.jsonl", LINES)}, "data": {"purpose": "fine-tune"}}, 400, "purpose"),
    ({"files": {"file": ("a.jsonl", LINES)}}, 400, "purpose"),
    ({"data": {"purpose": "batch"}, "files": {"other": ("a", b"x")}}, 400, "file"),
    ({"files": {"file": ("a.jsonl", LINES)},
      "data": {"purpose": "batch", "expires_after[anchor]": "created_at",
               "expires_after[seconds]": "60"}}, 400, "expires_after[seconds]"),
    ({"files": {"file": ("a.jsonl", LINES)},
      "data": {"purpose": "batch", "expires_after[anchor]": "now",
               "expires_after[seconds]": "3600"}}, 400, "expires_after[anchor]"),
    ({"files": {"file": ("big.jsonl", b"x" * (1048576 + 1))}, "data": {"purpose": "batch"}},
     413, "file"),
    ({"json": {"purpose": "batch"}}, 415, None),
    ({"content": b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc",
      "headers": {"Content-Type": "multipart/form-data; boundary=b"}}, 400, None),
    ({"content": b"not multipart at all",
      "headers": {"Content-Type": "multipart/form-data; boundary=b"}}, 400, None),
    ({"content": b"x", "headers": {"Content-Type": "multipart/form-data"}}, 400, None),
])
def test_a_bad_upload_gets_its_error_and_leaves_nothing(fstack, kw, status, param):
    key = _org(fstack)["api_key"]
    headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
    before = _stored(fstack)
    resp = httpx.post(fstack.base_url + "/v1/files", headers=headers, timeout=30, **kw)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    assert _stored(fstack) == before  # no partial upload, no stored file


def test_the_organisations_storage_quota_holds(fstack):
    key = _org(fstack)["api_key"]
    client = _client(fstack, key)
    body = b"y" * 1_000_000
    kept = [client.files.create(file=("a.jsonl", body), purpose="batch") for _ in range(3)]
    resp = _post(fstack, key, files={"file": ("a.jsonl", body)}, data={"purpose": "batch"})
    assert resp.status_code == 429 and resp.json()["error"]["code"] == "file_storage_quota_exceeded"
    assert "retry-after" not in resp.headers
    client.files.delete(kept[0].id)  # deleting makes room again
    assert client.files.create(file=("a.jsonl", body), purpose="batch").bytes == len(body)


def test_an_upload_cut_off_midway_leaves_nothing(fstack):
    key = _org(fstack)["api_key"]
    before = _stored(fstack)
    head = (b"--bnd\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            b"--bnd\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n")
    port = int(fstack.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
                     + b"\r\nContent-Type: multipart/form-data; boundary=bnd\r\n"
                     b"Content-Length: 900000\r\n\r\n" + head + LINES * 20)
        time.sleep(0.5)  # the gateway is writing the part file now
    deadline = time.monotonic() + 10
    while _stored(fstack) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _stored(fstack) == before
    assert _client(fstack, key).files.list().data == []


def test_contents_are_on_disk_under_the_data_dir_and_not_in_redis(fstack):
    client = _client(fstack, _org(fstack)["api_key"])
    up = client.files.create(file=("a.jsonl", LINES), purpose="batch")
    stored = [p for p in _stored(fstack) if p.endswith(up.id)]
    assert len(stored) == 1 and stored[0].startswith("org_")
    path = fstack.cfg.state_dir / "data" / "files" / stored[0]
    assert path.read_bytes() == LINES and oct(os.stat(path).st_mode & 0o777) == "0o640"


def test_deleting_the_organisation_deletes_its_files(fstack):
    org = _org(fstack)
    up = _client(fstack, org["api_key"]).files.create(file=("a.jsonl", LINES), purpose="batch")
    assert any(p.endswith(up.id) for p in _stored(fstack))
    with fstack.admin() as admin:
        assert admin.delete(f"/admin/orgs/{org['org']['id']}").status_code == 200
    assert not any(p.endswith(up.id) for p in _stored(fstack))
    assert not any(p.startswith(org["org"]["id"]) for p in _stored(fstack))
