"""API key strings: making them, checking their shape, and the digest that is all we ever store.

Format: `sk-` + a 16-hex-character public key id + `-` + 43 base64url characters holding
32 random bytes (256 bits of entropy). The public id is safe to log and show; the whole
string is shown once at creation and afterwards exists only as its SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

KEY_ID_HEX = 16
SECRET_BYTES = 32
# Checked before anything else touches the string: ASCII only, fixed lengths, so odd input
# (quotes, NUL bytes, non-ASCII, 10 KB headers) is refused without a Redis round trip.
_KEY_SHAPE = re.compile(r"sk-[0-9a-f]{16}-[A-Za-z0-9_-]{43}")
_KEY_ID_SHAPE = re.compile(r"[0-9a-f]{16}")
MAX_KEY_LENGTH = 3 + KEY_ID_HEX + 1 + 43


def new_key() -> tuple[str, str]:
    """A fresh (key_id, full key string)."""
    key_id = secrets.token_hex(KEY_ID_HEX // 2)
    return key_id, f"sk-{key_id}-{secrets.token_urlsafe(SECRET_BYTES)}"


def well_formed(raw: str) -> bool:
    return len(raw) == MAX_KEY_LENGTH and _KEY_SHAPE.fullmatch(raw) is not None


def is_key_id(value: str) -> bool:
    return len(value) == KEY_ID_HEX and _KEY_ID_SHAPE.fullmatch(value) is not None


def digest(raw: str) -> str:
    """SHA-256 hex of the whole key: the only form in which a key is stored or looked up."""
    return hashlib.sha256(raw.encode("ascii")).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header, or None."""
    if not header or len(header) > 512:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
