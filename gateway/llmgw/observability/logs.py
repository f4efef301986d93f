"""Structured JSON logs (structlog), every line of them (stdlib loggers too) passed through
the Redactor."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

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
                if key == "path":
                    event[key] = redactor.path(value)
                else:
                    event[key] = (redactor.secrets(value) if key in _IDENTIFIERS
                                  else redactor.free_text(value))
        return event
    return redact


def mask_log_records(redactor: Redactor) -> None:
    """Mask secrets where every stdlib LogRecord is made: gunicorn's, uvicorn's and our own
    loggers write through their own handlers. Secrets only: these are operational lines, where
    the personal-data patterns would take addresses like 127.0.0.1 for phone numbers. The
    factory in place (OpenTelemetry's, say) is wrapped, not replaced."""
    previous = logging.getLogRecordFactory()
    previous = getattr(previous, "masks_for", previous)  # configured twice: wrap once
    formatter = logging.Formatter()

    def make(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _mask(record, redactor)
        if record.exc_info:
            record.exc_text = redactor.secrets(formatter.formatException(record.exc_info))
        return record
    make.masks_for = previous
    logging.setLogRecordFactory(make)


def _mask(record: logging.LogRecord, redactor: Redactor) -> None:
    """Mask in place, keeping `args` and their types where that suffices (uvicorn's access
    formatter reads them, not the message): the format string and each str arg on their own.
    Only a secret across them, or inside another type's str, collapses the message into msg."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format call: logging must not raise on it
        record.msg, record.args = redactor.secrets(f"{record.msg} {record.args!r}"), ()
        return
    masked = redactor.secrets(message)
    if masked == message:
        return  # the common case: nothing to hide, the record untouched
    if isinstance(record.msg, str):
        record.msg = redactor.secrets(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(redactor.secrets(a) if isinstance(a, str) else a for a in record.args)
    elif isinstance(record.args, Mapping):
        record.args = {k: redactor.secrets(v) if isinstance(v, str) else v
                       for k, v in record.args.items()}
    try:
        again = record.getMessage()
    except (TypeError, ValueError):  # masking took a format directive with it
        again = message
    if redactor.secrets(again) != again:
        record.msg, record.args = masked, ()


def configure(level: str, secrets: tuple[str, ...] = ()) -> None:
    """JSON lines on stdout, written off the event loop; `secrets` (admin token, backend key)
    are masked wherever they appear, in any log line."""
    redactor = Redactor(secrets)
    mask_log_records(redactor)
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level.upper())
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, _structlog_redactor(redactor),
                    structlog.processors.JSONRenderer(
                        serializer=lambda o, **_: orjson.dumps(o).decode())],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(QueuedWriter(sys.stdout)),
        cache_logger_on_first_use=True)
