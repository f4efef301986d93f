"""Request bodies of the admin API, validated strictly: unknown fields are refused."""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, WithJsonSchema
from pydantic_core import PydanticCustomError

from .limits import PROFILES, WHOLE, Limits
from .model_access import ModelPatterns
from .records import INFERENCE_SCOPES, KeyScope

# A display name: any printable text (pages and tools show it as text, never as markup), but
# no control characters, and no space at either end.
OrgName = Annotated[StrictStr, Field(pattern=r"^[^\x00-\x20\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]{0,62}[^\x00-\x20\x7f-\x9f])?$",
                                     description="1-64 characters of printable text, no space at either end")]
ProfileName = Literal[tuple(PROFILES)]  # type: ignore[valid-type]
MAX_GRACE_SECS = 30 * 86400
# The zones this host's tz database has: the document lists them, so what it allows is what
# is accepted (any string was documented, and an unknown one refused with a 400).
TIME_ZONES = frozenset(zoneinfo.available_timezones())


def _check_timezone(value: str) -> str:
    if value not in TIME_ZONES:
        raise PydanticCustomError("time_zone", "unknown time zone {zone}", {"zone": repr(value[:64])})
    return value


TimeZone = Annotated[StrictStr, AfterValidator(_check_timezone), WithJsonSchema(
    {"type": "string", "enum": sorted(TIME_ZONES),
     "description": "An IANA time zone, for the calendar days and months of quotas."})]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[StrictStr, Field(max_length=128)] | None = None
    scopes: list[KeyScope] = Field(default_factory=lambda: list(INFERENCE_SCOPES), min_length=1)
    expires_in_secs: Annotated[StrictInt, Field(gt=0, le=10 * 365 * 86400), WHOLE] | None = None
    limits: Limits = Field(default_factory=Limits)
    models: ModelPatterns | None = Field(None, description=(
        "The models this key may use, within its organisation's: names, aliases, * patterns. "
        "Absent or null: all its organisation may use."))


class OrgCreate(Limits):
    """Limit fields at the top level (seed 000's shape), plus the organisation's own fields."""
    name: OrgName
    profile: ProfileName | None = None
    timezone: TimeZone = "UTC"
    models: ModelPatterns | None = Field(None, description=(
        "The models the organisation's keys may use: names, aliases, * patterns. Absent or "
        "null: every model."))
    key: KeyCreate = Field(default_factory=KeyCreate, description="The first API key.")

    def limits(self) -> Limits:
        return Limits(**{n: getattr(self, n) for n in Limits.model_fields if getattr(self, n) is not None})


class OrgPatch(Limits):
    """A limit field set to null goes back to the platform default; `profile` resets all limits
    to the profile's values before the fields given here are applied on top."""
    profile: ProfileName | None = None
    status: Literal["active", "suspended"] | None = None
    timezone: TimeZone | None = None
    models: ModelPatterns | None = Field(None, description=(
        "Replace the list of models its keys may use; null: every model."))

    def limit_changes(self) -> dict[str, int | None]:
        return {n: getattr(self, n) for n in Limits.model_fields if n in self.model_fields_set}


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_secs: Annotated[StrictInt, Field(ge=0, le=MAX_GRACE_SECS), WHOLE] = 3600
