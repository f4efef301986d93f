"""A backend's error answers, as real vLLM sends them (tests/simulator/vllm_captures), become
the client's errors: 400s relayed faithfully, anything else the gateway's own, user-safe."""

from pathlib import Path

import pytest

from llmgw.backend_errors import relayed_error
from llmgw.errors import BackendUnavailable, BadGateway, UpstreamError
from llmgw.routing import Backend

CAPTURES = Path(__file__).resolve().parents[1] / "simulator" / "vllm_captures"
BACKEND = Backend("chat0", "http://10.0.0.7:8101", 64)


def _capture(name: str) -> tuple[int, bytes]:
    """Status and body of a raw `curl -i` capture."""
    raw = (CAPTURES / f"error_{name}.txt").read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("name,param", [("prompt_too_long", "input_tokens"),
                                        ("max_tokens_0", "max_tokens"),
                                        ("missing_messages", "body.messages")])
def test_a_vllm_400_keeps_status_message_type_and_param_with_a_string_code(name, param):
    status, body = _capture(name)
    err = relayed_error(status, body, BACKEND)
    assert isinstance(err, UpstreamError) and err.status == 400
    sent = err.body()["error"]
    assert sent["param"] == param and sent["message"]
    assert sent["type"] in ("BadRequestError", "Bad Request")
    assert sent["code"] == "invalid_request"  # vLLM's code is the number 400


def test_a_string_code_of_the_backend_is_kept_and_a_bare_body_still_gets_a_message():
    err = relayed_error(400, b'{"error": {"message": "too long", "type": "invalid_request_error",'
                             b' "param": null, "code": "context_length_exceeded"}}', BACKEND)
    assert err.body()["error"] == {"message": "too long", "type": "invalid_request_error",
                                   "param": None, "code": "context_length_exceeded"}
    bare = relayed_error(400, b"<html>bad</html>", BACKEND).body()["error"]
    assert bare["code"] == "invalid_request" and bare["type"] == "invalid_request_error"
    assert "400" in bare["message"]


@pytest.mark.parametrize("name", ["unknown_model", "not_found_route", "wrong_api_key_chat"])
def test_a_4xx_that_is_the_deployments_fault_is_a_502(name):
    # The gateway resolved the model, built the path and sent the key: the client did nothing wrong.
    status, body = _capture(name)
    err = relayed_error(status, body, BACKEND)
    assert isinstance(err, BadGateway) and err.status == 502 and err.code == "bad_gateway"


@pytest.mark.parametrize("status,kind", [(500, BadGateway), (502, BadGateway), (504, BadGateway),
                                         (503, BackendUnavailable)])
def test_a_5xx_says_nothing_of_what_the_backend_wrote(status, kind):
    body = b'{"error": {"message": "CUDA OOM at /srv/vllm/worker.py on 10.0.0.7", "code": 500}}'
    err = relayed_error(status, body, BACKEND)
    assert type(err) is kind and err.type == "server_error"
    text = err.body_bytes().decode()
    assert "CUDA" not in text and "10.0.0.7" not in text and "/srv" not in text


def test_a_backends_422_is_a_400_invalid_request_with_its_message_and_param():
    # FastAPI's status for a schema violation; the gateway's document promises 400, never 422.
    err = relayed_error(422, b'{"error": {"message": "temperature: must be >= 0", '
                             b'"type": "Unprocessable Entity", "param": "temperature", '
                             b'"code": 422}}', BACKEND)
    assert isinstance(err, UpstreamError) and err.status == 400
    assert err.body()["error"] == {"message": "temperature: must be >= 0",
                                   "type": "invalid_request_error", "param": "temperature",
                                   "code": "invalid_request"}
    bare = relayed_error(422, b'{"detail": [{"loc": ["body"]}]}', BACKEND)
    assert bare.status == 400 and bare.body()["error"]["type"] == "invalid_request_error"


def test_a_backends_413_keeps_its_status_and_message():
    err = relayed_error(413, b'{"error": {"message": "too many tokens in the batch", '
                             b'"type": "BadRequestError", "param": null, "code": 413}}', BACKEND)
    assert isinstance(err, UpstreamError) and err.status == 413
    assert err.body()["error"] == {"message": "too many tokens in the batch",
                                   "type": "BadRequestError", "param": None,
                                   "code": "request_too_large"}
