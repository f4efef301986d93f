"""Schemas of the Responses API as the gateway accepts and documents them; vLLM validates the
items further and its 400s are relayed."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictStr, field_validator

from ..protocol import Number, PositiveInt, OpenSchema


class ResponsesRequest(OpenSchema):
    model: StrictStr | None = Field(None, description="Public model name or alias (see GET /v1/models).")
    input: Annotated[StrictStr, Field(min_length=1)] | Annotated[list[dict[str, Any]], Field(min_length=1)]
    instructions: StrictStr | None = None
    previous_response_id: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    store: StrictBool | None = Field(None, description="Keep the response (default true) for "
                                     "GET and for a later turn's previous_response_id.")
    stream: StrictBool = False
    background: StrictBool | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: Annotated[Number, Field(ge=0, le=2)] | None = None
    top_p: Annotated[Number, Field(gt=0, le=1)] | None = None
    tools: list[dict[str, Any]] | None = None
    metadata: dict[str, StrictStr] | None = None
    user: StrictStr | None = None

    @field_validator("background")
    @classmethod
    def _not_background(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("background responses are not supported: send the request and "
                             "wait for it, or stream it")
        return value


class ResponseObject(OpenSchema):
    id: str
    object: str
    created_at: float
    model: str
    status: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None = None
    previous_response_id: str | None = None
    store: bool | None = None


class DeletedResponse(OpenSchema):
    id: str
    object: str = "response"
    deleted: bool = True
