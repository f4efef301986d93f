"""Limit fields of organisations and keys: names, ranges, defaults and seed 000's profiles."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt


def _whole_number(value):
    """2117.0 as 2117: JSON has one number type, and JSON Schema (so the OpenAPI document's
    `integer`) counts a whole-number float as an integer, as pydantic's lax mode and OpenAI's
    API do. Anything else (2117.5, "2117", true) is left to StrictInt to refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# After an integer field's bounds (before them, pydantic would publish the bounds under
# their Python names, not as JSON Schema's minimum and maximum).
WHOLE = BeforeValidator(_whole_number)
Count = Annotated[StrictInt, Field(ge=0, le=10**12), WHOLE]


class Limits(BaseModel):
    """Every limit an organisation (or, narrowed, a key) can have. None means "not set here"."""

    model_config = ConfigDict(extra="forbid")

    rps: Annotated[StrictInt, Field(ge=1, le=100_000), WHOLE] | None = None
    burst: Annotated[StrictInt, Field(ge=1, le=1_000_000), WHOLE] | None = None
    rpm_limit: Annotated[StrictInt, Field(ge=1, le=10_000_000), WHOLE] | None = None
    tpm_limit: Annotated[StrictInt, Field(ge=1, le=10**10), WHOLE] | None = None
    max_concurrent: Annotated[StrictInt, Field(ge=1, le=100_000), WHOLE] | None = None
    daily_token_limit: Count | None = None
    daily_request_limit: Count | None = None
    monthly_token_limit: Count | None = None
    max_context_tokens: Annotated[StrictInt, Field(ge=1, le=10_000_000), WHOLE] | None = None
    max_output_tokens: Annotated[StrictInt, Field(ge=1, le=10_000_000), WHOLE] | None = None

    def explicit(self) -> dict[str, int]:
        return self.model_dump(exclude_none=True)

    def over(self, base: "Limits") -> "Limits":
        """These values where set, `base` elsewhere."""
        return base.model_copy(update=self.explicit())

    def narrowed_by(self, other: "Limits") -> "Limits":
        """Field by field, the lower of the two where both are set (a key narrows its org)."""
        merged = self.explicit()
        for name, value in other.explicit().items():
            merged[name] = min(value, merged[name]) if name in merged else value
        return Limits(**merged)

    def exceeding(self, ceiling: "Limits") -> list[str]:
        """Fields set here above the ceiling's value (a key may only be stricter than its org)."""
        return [name for name, value in self.explicit().items()
                if getattr(ceiling, name) is not None and value > getattr(ceiling, name)]


LIMIT_FIELDS = tuple(Limits.model_fields)

# Seed 000's profiles; fields a profile leaves out keep the platform defaults.
PROFILES: dict[str, Limits] = {
    "conservative": Limits(max_concurrent=1, rpm_limit=60, tpm_limit=30_000,
                           max_context_tokens=4096, max_output_tokens=256),
    "standard": Limits(max_concurrent=2, rpm_limit=180, tpm_limit=120_000,
                       max_context_tokens=8192, max_output_tokens=512),
    "pro": Limits(max_concurrent=4, rpm_limit=600, tpm_limit=400_000,
                  max_context_tokens=16384, max_output_tokens=1024),
}
