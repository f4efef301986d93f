"""Structured JSON logs (structlog), with redaction of secrets and personal data in free text."""

from __future__ import annotations

import logging
import re
import sys

import orjson
import structlog

from .log_writer import QueuedWriter

# Order matters: keys and tokens before the looser number patterns.
_PATTERNS = [
    (re.compile(r"sk-[A-Za-z0-9_-]{8,}"), "[REDACTED_KEY]"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), "Bearer [REDACTED_TOKEN]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[REDACTED_EMAIL]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[REDACTED_CARD]"),
    (re.compile(r"(?<![\w.])\+?\d[\d ().-]{7,}\d(?![\w.])"), "[REDACTED_PHONE]"),
]
# Fields that are identifiers by construction and never carry free text.
_TRUSTED = frozenset(("request_id", "org", "key_id", "route", "model", "backend", "path",
                      "method", "status", "error", "event", "level", "timestamp", "logger",
                      "cache"))


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED_SECRET]")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redactor(secrets: tuple[str, ...]):
    def redact(_logger, _name, event: dict) -> dict:
        for key, value in event.items():
            if isinstance(value, str) and key not in _TRUSTED:
                event[key] = redact_text(value, secrets)
        return event
    return redact


def configure(level: str, secrets: tuple[str, ...] = ()) -> None:
    """JSON lines on stdout, written off the event loop; `secrets` (admin token, backend key)
    are masked wherever they appear."""
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level.upper())
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, _redactor(secrets),
                    structlog.processors.JSONRenderer(serializer=lambda o, **_: orjson.dumps(o).decode())],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(QueuedWriter(sys.stdout)),
        cache_logger_on_first_use=True)
