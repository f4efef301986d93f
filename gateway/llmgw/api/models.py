"""GET /v1/models: the public model names, their aliases and the endpoints each serves."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ..deps import PrincipalDep, ServicesDep
from ..openapi import error_responses
from ..protocol import ModelCard, ModelList
from ..endpoints import SCOPE_OF

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList, responses=error_responses(401, 403, 503),
            summary="List the models this API key may use")
async def list_models(services: ServicesDep, principal: PrincipalDep, response: Response) -> ModelList:
    started = services.routing_loaded_at
    cards = []
    for m in services.routing.models:
        allowed = sorted(e.value for e in m.endpoints if SCOPE_OF[e] in principal.scopes)
        if allowed:
            cards.append(ModelCard(id=m.name, created=started, owned_by=m.owned_by,
                                   aliases=list(m.aliases), endpoints=allowed))
    response.headers.update(await services.admission.peek_headers(principal))
    return ModelList(data=cards)
