"""What a random secret looks like when a client sends it where an identifier belongs."""

from __future__ import annotations

import re

# 16 characters of base64url carry 96 random bits: a piece that long is worth hiding (an API
# key's random part is 43, tenancy/apikeys.py; the admin token at least 16, settings.py).
WIDTH = 16
# What the request id alphabet adds to letters and digits. Dropped before looking, so a secret
# cut into pieces ("AbCd.EfGh:...") is seen whole; "-" and "_" also come from base64url itself.
SEPARATORS = b"._:-"
# A run of characters that may hold a secret in a path: anything but a URI delimiter.
_RUN = re.compile(r"[^/?&=;,\s]{16,}")


def letters_and_digits(value: bytes) -> bytes:
    """value without its separators (the request id alphabet's only non-alphanumerics)."""
    return value.translate(None, SEPARATORS)


def mixed_case(text: bytes) -> bool:
    """Whether WIDTH characters in a row hold two uppercase and two lowercase letters.

    Every base64url (or base62) secret does, almost surely: in 16 of its characters about six
    are of each case. Ordinary ids are one case: hex (UUIDs, trace ids, W3C traceparent) is
    lowercase, ULIDs uppercase; a timestamp's "T...Z" gives two capitals but no lowercase near.
    """
    if len(text) < WIDTH or text.lower() == text or text.upper() == text:
        return False  # the common id, settled by two scans in C
    upper = lower = 0
    for i, byte in enumerate(text):
        upper += 65 <= byte <= 90
        lower += 97 <= byte <= 122
        if i >= WIDTH:  # the character leaving the window
            gone = text[i - WIDTH]
            upper -= 65 <= gone <= 90
            lower -= 97 <= gone <= 122
        if upper >= 2 and lower >= 2 and i >= WIDTH - 1:
            return True
    return False


def pieces(secret: str) -> frozenset[bytes]:
    """Every WIDTH-long piece of a secret's letters and digits, to look for in an id."""
    text = re.sub(rb"[^A-Za-z0-9]", b"", secret.encode("utf-8", "replace"))
    return frozenset(text[i:i + WIDTH] for i in range(len(text) - WIDTH + 1))


def holds_piece(text: bytes, secret_pieces: frozenset[bytes]) -> bool:
    """Whether text (letters and digits) holds one of secret_pieces."""
    return bool(secret_pieces) and any(text[i:i + WIDTH] in secret_pieces
                                       for i in range(len(text) - WIDTH + 1))


def mask_random_runs(text: str, mask: str) -> str:
    """text with each run between URI delimiters that holds a mixed-case stretch replaced."""
    if text.lower() == text or text.upper() == text:
        return text  # routes, hex ids, uuids: no regex pass at all
    return _RUN.sub(lambda m: mask if _random_run(m.group()) else m.group(), text)


def _random_run(run: str) -> bool:
    raw = run.encode("utf-8", "replace")
    return mixed_case(re.sub(rb"[^A-Za-z0-9]", b"", raw))
