"""Structured JSON logs (structlog), every line of them (stdlib loggers too) passed through the Redactor."""

from __future__ import annotations

import logging
import sys

import orjson
import structlog

from .log_writer import QueuedWriter
from .redaction import Redactor

# Fields filled from the gateway's own constants and clock (and the method from httptools'
# fixed list), never with a client's text: skipped, as the access line is on the hot path.
_OWN = frozenset(("event", "level", "timestamp", "logger", "status", "route", "method", "error",
                  "cache"))
# Identifiers (no free text, so no personal-data patterns), but a client can send a secret as
# one (a key as X-Request-ID, a token in the path): secrets are masked there too.
_IDENTIFIERS = frozenset(("request_id", "path", "org", "key_id", "model", "backend"))


def _structlog_redactor(redactor: Redactor):
    def redact(_logger, _name, event: dict) -> dict:
        for key, value in event.items():
            if isinstance(value, str) and key not in _OWN:
                event[key] = redactor.secrets(value) if key in _IDENTIFIERS else redactor.free_text(value)
        return event
    return redact


def _redacting_records(redactor: Redactor):
    """A LogRecord factory: gunicorn's, uvicorn's and our stdlib loggers write through their
    own handlers, so the message and traceback are masked where every record is made. Secrets
    only: these are operational lines, where the personal-data patterns would take addresses
    like 127.0.0.1 for phone numbers."""
    formatter = logging.Formatter()

    def make(*args, **kwargs) -> logging.LogRecord:
        record = logging.LogRecord(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format call: logging must not raise on it
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redactor.secrets(message), ()
        if record.exc_info:
            record.exc_text = redactor.secrets(formatter.formatException(record.exc_info))
        return record
    return make


def configure(level: str, secrets: tuple[str, ...] = ()) -> None:
    """JSON lines on stdout, written off the event loop; `secrets` (admin token, backend key)
    are masked wherever they appear, in any log line."""
    redactor = Redactor(secrets)
    logging.setLogRecordFactory(_redacting_records(redactor))
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level.upper())
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, _structlog_redactor(redactor),
                    structlog.processors.JSONRenderer(serializer=lambda o, **_: orjson.dumps(o).decode())],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(QueuedWriter(sys.stdout)),
        cache_logger_on_first_use=True)
