"""GET /v1/models: the public model names, their aliases and the endpoints each serves."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import ServicesDep
from ..protocol import ModelCard, ModelList

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList, summary="List the models this gateway serves")
async def list_models(services: ServicesDep) -> ModelList:
    started = services.routing_loaded_at
    return ModelList(data=[
        ModelCard(id=m.name, created=started, owned_by=m.owned_by, aliases=list(m.aliases),
                  endpoints=sorted(e.value for e in m.endpoints))
        for m in services.routing.models])
