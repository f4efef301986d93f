"""The Batch API's request and line shapes: what POST /v1/batches and an input line accept."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llmgw.batches.protocol import BATCH_ENDPOINTS, BatchCreate, InputLine

GOOD = {"input_file_id": "file-1", "endpoint": "/v1/chat/completions", "completion_window": "24h"}


def test_a_batch_names_a_known_endpoint_and_the_24h_window():
    created = BatchCreate.model_validate(GOOD)
    assert created.priority == 0 and created.metadata is None
    for endpoint in BATCH_ENDPOINTS:
        assert BatchCreate.model_validate({**GOOD, "endpoint": endpoint}).endpoint == endpoint


@pytest.mark.parametrize("change,field", [
    ({"endpoint": "/v1/models"}, "endpoint"),
    ({"completion_window": "48h"}, "completion_window"),
    ({"priority": 1001}, "priority"),
    ({"priority": -1001}, "priority"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"metadata": {"k" * 65: "v"}}, "metadata"),
    ({"metadata": {"k": "v" * 513}}, "metadata"),
    ({"input_file_id": "f" * 65}, "input_file_id"),
    ({"output_expires_after": {"anchor": "created_at", "seconds": 3599}}, "output_expires_after"),
    ({"output_expires_after": {"anchor": "completed_at", "seconds": 3600}}, "output_expires_after"),
    ({"unknown": 1}, "unknown"),
])
def test_what_a_batch_request_may_not_say(change, field):
    with pytest.raises(ValidationError) as exc:
        BatchCreate.model_validate({**GOOD, **change})
    assert exc.value.errors()[0]["loc"][0] == field


def test_the_bounds_themselves_are_allowed():
    created = BatchCreate.model_validate({
        **GOOD, "priority": -1000, "metadata": {f"k{i}": "v" * 512 for i in range(16)},
        "output_expires_after": {"anchor": "created_at", "seconds": 30 * 86400}})
    assert created.priority == -1000 and len(created.metadata) == 16


@pytest.mark.parametrize("line,ok", [
    ({"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}, True),
    ({"custom_id": "", "method": "POST", "url": "/v1/embeddings", "body": {}}, False),
    ({"custom_id": "a" * 513, "method": "POST", "url": "/v1/embeddings", "body": {}}, False),
    ({"custom_id": "a", "method": "GET", "url": "/v1/embeddings", "body": {}}, False),
    ({"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": []}, False),
    ({"custom_id": "a", "method": "POST", "url": "/v1/embeddings"}, False),
])
def test_an_input_line(line, ok):
    if ok:
        assert InputLine.model_validate(line).custom_id == "a"
    else:
        with pytest.raises(ValidationError):
            InputLine.model_validate(line)
