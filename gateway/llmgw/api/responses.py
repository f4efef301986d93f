"""GET, DELETE and cancel of a stored Responses API response, answered from the gateway's
store (responses/store.py): per organisation, so another organisation's id is not found."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ..responses.store import ResponseStore
from ..tenancy.auth import Principal
from ..deps import AdmissionDep, PrincipalDep, ResponsesDep
from ..errors import InvalidRequest
from ..openapi import error_responses
from ..responses.conversation import RESPONSE_ID, not_found
from ..responses.protocol import DeletedResponse, ResponseObject
from ..tenancy.records import KeyScope

router = APIRouter(tags=["inference"])
ERRORS = error_responses(400, 401, 403, 404, 503)


async def _stored(responses: ResponseStore, principal: Principal, response_id: str):
    principal.require(KeyScope.CHAT)
    stored = await responses.get(principal.org_id, response_id) \
        if RESPONSE_ID.match(response_id) else None
    if stored is None:
        raise not_found(response_id, "response_id")
    return stored


@router.get("/v1/responses/{response_id}", response_model=ResponseObject, responses=ERRORS,
            summary="A stored response, as it was answered")
async def retrieve_response(response_id: str, admission: AdmissionDep, responses: ResponsesDep, principal: PrincipalDep,
                            response: Response) -> dict:
    stored = await _stored(responses, principal, response_id)
    response.headers.update(await admission.peek_headers(principal))
    return stored.response


@router.delete("/v1/responses/{response_id}", response_model=DeletedResponse, responses=ERRORS,
               summary="Delete a stored response (a later turn can no longer continue it)")
async def delete_response(response_id: str, responses: ResponsesDep,
                          principal: PrincipalDep) -> DeletedResponse:
    principal.require(KeyScope.CHAT)
    if not RESPONSE_ID.match(response_id) or \
            not await responses.delete(principal.org_id, response_id):
        raise not_found(response_id, "response_id")
    return DeletedResponse(id=response_id)


@router.post("/v1/responses/{response_id}/cancel", response_model=ResponseObject,
             responses=ERRORS, summary="Cancel a background response (none is: see description)",
             description="The gateway runs no background responses, so a stored response is "
                         "always complete: 400, as vLLM answers for a synchronous response.")
async def cancel_response(response_id: str, responses: ResponsesDep, principal: PrincipalDep) -> dict:
    await _stored(responses, principal, response_id)
    raise InvalidRequest("Cannot cancel a synchronous response.", param="response_id")
