"""The gateway's errors in Anthropic's shape: its error type per status, the gateway's own
code and param kept."""

import orjson
import pytest

from llmgw.errors import (BackendUnavailable, BadInput, BodyTooLarge, GatewayError, InvalidApiKey,
                          ModelNotAllowed, ModelNotFound, RateLimited, UpstreamTimeout)
from llmgw.messages import errors


@pytest.mark.parametrize("error,kind", [
    (BadInput("prompt too long", param="messages"), "invalid_request_error"),
    (InvalidApiKey(), "authentication_error"),
    (ModelNotAllowed("no"), "permission_error"),
    (ModelNotFound("no such model"), "not_found_error"),
    (BodyTooLarge("too big"), "request_too_large"),
    (RateLimited("limit_rpm", 3, {}), "rate_limit_error"),
    (BackendUnavailable("down"), "overloaded_error"),
    (UpstreamTimeout("slow"), "timeout_error"),
    (GatewayError("internal error"), "api_error"),
])
def test_each_status_has_anthropics_error_type(error, kind):
    body = orjson.loads(errors.body_bytes(error))
    assert body == {"type": "error", "error": {"type": kind, "message": error.message,
                                               "code": error.code, "param": error.param}}


def test_other_statuses_fall_back_by_class():
    assert errors.error_type(415) == "invalid_request_error" and errors.error_type(502) == "api_error"
