"""What must never reach a log line, and masking it: secrets in any field, personal data in
free text."""

from __future__ import annotations

import re

from ..secret_shape import mask_random_runs

# The platform's keys (`sk-<16 hex>-<43 base64url>`, tenancy/apikeys.py) wherever they are,
# even glued to a prefix or cut short; other vendors' `sk-...` keys only at the start of a
# word, so `task-12345678` or `risk-assessment` in a path or request id stay readable.
_KEY = (re.compile(r"sk-[0-9a-f]{16}-[A-Za-z0-9_-]{8,}|(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{8,}"),
        "[REDACTED_KEY]")
_BEARER = (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), "Bearer [REDACTED_TOKEN]")
# Order matters: keys and tokens are masked before these looser number patterns run.
_PERSONAL = [
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[REDACTED_EMAIL]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[REDACTED_CARD]"),
    (re.compile(r"(?<![\w.])\+?\d[\d ().-]{7,}\d(?![\w.])"), "[REDACTED_PHONE]"),
]


class Redactor:
    """Masks the configured secrets (admin token, backend key) and anything shaped like an
    API key or a bearer token wherever it appears; in free text, personal data as well."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def secrets(self, text: str) -> str:
        """Every field goes through here, a dozen per access line: substring checks first,
        so the common value (a uuid, a route path) costs no regex pass at all."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[REDACTED_SECRET]")
        if "sk-" in text:
            text = _KEY[0].sub(_KEY[1], text)
        # Any spelling of "bearer" holds an r: most identifiers (hex ids, uuids, most routes)
        # have none, and skip the lowercased copy. "earer"/"EARER" alone would be cheaper
        # still, but would miss mixed-case spellings.
        if ("r" in text or "R" in text) and "bearer" in text.lower():
            text = _BEARER[0].sub(_BEARER[1], text)
        return text

    def path(self, text: str) -> str:
        """A path also loses any run shaped like a random secret (the random part of a key sent
        alone, say): the gateway knows no key but by its digest, so it goes by shape."""
        return mask_random_runs(self.secrets(text), "[REDACTED_SECRET]")

    def free_text(self, text: str) -> str:
        text = self.secrets(text)
        for pattern, replacement in _PERSONAL:
            text = pattern.sub(replacement, text)
        return text
