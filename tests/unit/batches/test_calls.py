"""A batch line's call through the gateway and what its answer means: a result for the output
or error file (with its usage), a retry later (busy or not), or a pause for a spent quota.
`call` runs against a real local HTTP server standing in for the gateway."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from llmgw.backend_http import BackendHTTP, Origin
from llmgw.batches.calls import Gateway, Later, Paused, Result, call, judge
from llmgw.batches.item import BATCH_ITEM_HEADER, BATCH_KEY_HEADER, BatchItem
from stacks import free_port

ITEM = BatchItem("org_ab", "batch_" + "0" * 28, 7)


def _error(code: str) -> bytes:
    return orjson.dumps({"error": {"message": "m", "type": "t", "code": code}})


@pytest.mark.parametrize("status,headers,code,outcome", [
    (429, {"retry-after": "30"}, "quota_tokens_day", Paused(30_000)),
    (429, {}, "quota_requests_month", Paused(60_000)),
    (429, {"retry-after": "9"}, "limit_concurrent", Later(250, busy=True)),
    (429, {}, "limit_global_concurrent", Later(250, busy=True)),
    (429, {"retry-after": "2.5"}, "limit_rpm", Later(2500)),
    (429, {"retry-after": "0"}, "limit_rpm", Later(100)),      # never sooner than 100 ms
    (429, {"retry-after": "soon"}, "limit_rpm", Later(500)),   # unreadable: the default
    (503, {}, "no_spare_capacity", Later(500, busy=True)),
    (503, {"retry-after": "1"}, "preempted", Later(1000, busy=True)),
    (503, {}, "draining", Later(500)),
    (503, {}, "limiter_unavailable", Later(500)),
])
def test_refusals_that_mean_not_now_are_retried_or_pause(status, headers, code, outcome):
    assert judge(status, headers, _error(code), "c1") == outcome


def test_a_success_is_an_output_line_with_its_usage():
    answer = {"id": "x", "usage": {"prompt_tokens": 11, "completion_tokens": 5,
                                   "prompt_tokens_details": {"cached_tokens": 4},
                                   "completion_tokens_details": {"reasoning_tokens": 2}}}
    outcome = judge(200, {"x-request-id": "rid-1"}, orjson.dumps(answer), "c1")
    assert isinstance(outcome, Result) and not outcome.error
    assert outcome.usage == (11, 5, 4, 2)
    line = outcome.output
    assert line["id"].startswith("batch_req_") and len(line["id"]) == len("batch_req_") + 32
    assert line["custom_id"] == "c1" and line["error"] is None
    assert line["response"] == {"status_code": 200, "request_id": "rid-1", "body": answer}


@pytest.mark.parametrize("usage,expected", [
    ({"input_tokens": 3, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 1},
      "output_tokens_details": {"reasoning_tokens": 1}}, (3, 2, 1, 1)),   # the Responses shape
    ({"total_tokens": 9}, (9, 0, 0, 0)),                                    # embeddings
    ({"prompt_tokens": "many"}, (0, 0, 0, 0)),
    (None, (0, 0, 0, 0)),
])
def test_usage_in_each_shape(usage, expected):
    assert judge(200, {}, orjson.dumps({"usage": usage}), "c").usage == expected


@pytest.mark.parametrize("status,content", [
    (400, _error("invalid_request")), (503, _error("something_else")), (500, b"<html>oops</html>"),
    (502, b"not json"),
])
def test_other_failures_are_error_lines_without_usage(status, content):
    outcome = judge(status, {}, content, "c2")
    assert isinstance(outcome, Result) and outcome.error and outcome.usage == (0, 0, 0, 0)
    body = outcome.output["response"]["body"]
    assert outcome.output["response"]["status_code"] == status
    if content.startswith(b"{"):
        assert body == orjson.loads(content)
    else:  # what is not JSON is kept as the message of a server error
        assert body == {"error": {"message": content.decode(), "type": "server_error", "code": None}}


def test_a_line_is_sent_with_the_runners_token_and_its_item_and_key():
    seen = {}

    async def serve(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        seen["request"] = lines[0]
        seen["headers"] = {k.lower(): v for k, v in (h.split(": ", 1) for h in lines[1:] if h)}
        seen["body"] = await reader.readexactly(int(seen["headers"]["content-length"]))
        body = orjson.dumps({"usage": {"prompt_tokens": 2, "completion_tokens": 1}})
        writer.write(b"HTTP/1.1 200 OK\r\nX-Request-ID: gw-1\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        http = BackendHTTP(max_connections=4, max_idle=2, keepalive_secs=5, connect_timeout=1,
                           keep_headers=True)
        gateway = Gateway(http, Origin.from_url(f"http://127.0.0.1:{port}"), "tok-1", 5.0)
        try:
            return await call(gateway, ITEM, "digest-1", "/v1/chat/completions", "c9", b'{"a":1}')
        finally:
            await http.aclose()
            server.close()
    outcome = asyncio.run(main())
    assert seen["request"] == "POST /v1/chat/completions HTTP/1.1"
    assert seen["headers"]["authorization"] == "Bearer tok-1"
    assert seen["headers"][BATCH_ITEM_HEADER] == ITEM.header()
    assert seen["headers"][BATCH_KEY_HEADER] == "digest-1"
    assert seen["body"] == b'{"a":1}'
    assert outcome.usage == (2, 1, 0, 0) and outcome.output["response"]["request_id"] == "gw-1"


def test_an_unreachable_gateway_is_a_retry_in_a_second():
    async def main():
        http = BackendHTTP(max_connections=4, max_idle=2, keepalive_secs=5, connect_timeout=1,
                           keep_headers=True)
        gateway = Gateway(http, Origin.from_url(f"http://127.0.0.1:{free_port()}"), "t", 5.0)
        return await call(gateway, ITEM, "d", "/v1/chat/completions", "c", b"{}")
    assert asyncio.run(main()) == Later(1000)
