"""Stdlib log records are masked where they are made: the factory in place before is kept,
and formatters that read the record's args (uvicorn's access formatter) still work."""

from __future__ import annotations

import logging

import pytest
from uvicorn.logging import AccessFormatter

from llmgw.observability.logs import mask_log_records
from llmgw.observability.redaction import Redactor
from llmgw.tenancy.apikeys import new_key

KEY = new_key()[1]
TOKEN = "admin-token-0123456789"


@pytest.fixture
def records():
    """Records made through the masking factory, over a factory that tags each record (as
    OpenTelemetry's adds trace ids); the process's factory is restored afterwards."""
    original = logging.getLogRecordFactory()

    def tagging(*args, **kwargs):
        record = original(*args, **kwargs)
        record.trace_id = "t-1"
        return record
    logging.setLogRecordFactory(tagging)
    mask_log_records(Redactor((TOKEN,)))
    mask_log_records(Redactor((TOKEN,)))  # configured twice: still one layer over `tagging`
    made = []
    logger = logging.getLogger("test-log-records")
    handler = logging.Handler()
    handler.emit = made.append
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield logger, made
    finally:
        logger.removeHandler(handler)
        logging.setLogRecordFactory(original)


def test_the_previous_factory_is_wrapped_not_replaced(records):
    logger, made = records
    logger.warning("settlement of %s failed", KEY)
    assert made[0].trace_id == "t-1"
    assert made[0].getMessage() == "settlement of [REDACTED_KEY] failed"
    assert logging.getLogRecordFactory().masks_for.__name__ == "tagging"


def test_uvicorn_access_lines_keep_their_args_and_are_masked(records):
    logger, made = records
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/v1/models/{KEY}", "1.1",
                404)
    line = AccessFormatter(fmt="%(client_addr)s %(request_line)s %(status_code)s",
                           use_colors=False).format(made[0])
    assert line == "127.0.0.1:5000 GET /v1/models/[REDACTED_KEY] HTTP/1.1 404 Not Found"
    assert made[0].args[4] == 404


def test_a_record_without_secrets_is_left_as_it_was(records):
    logger, made = records
    args = ("127.0.0.1:5000", "GET", "/v1/models", "1.1", 200)
    logger.info('%s - "%s %s HTTP/%s" %d', *args)
    assert made[0].args == args and made[0].msg == '%s - "%s %s HTTP/%s" %d'


@pytest.mark.parametrize("call", [
    lambda log: log.info("Authorization: Bearer %s", "abcdefgh12345678"),  # across msg and arg
    lambda log: log.info("failed: %s", ValueError(f"bad key {KEY}")),       # in a non-str arg
    lambda log: log.info("%(who)s sent %(what)s", {"who": "x", "what": TOKEN}),
    lambda log: log.info("too few %s %s", KEY),                             # a bad format call
])
def test_secrets_are_masked_however_the_message_is_built(records, call):
    logger, made = records
    call(logger)
    message = made[0].getMessage()
    assert "[REDACTED_" in message
    assert "abcdefgh12345678" not in message and KEY not in message and TOKEN not in message


def test_tracebacks_are_masked(records):
    logger, made = records
    try:
        raise RuntimeError(f"key {KEY}")
    except RuntimeError:
        logger.exception("boom")
    assert KEY not in logging.Formatter().format(made[0]) and "[REDACTED_KEY]" in made[0].exc_text
