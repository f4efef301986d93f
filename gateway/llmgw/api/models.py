"""GET /v1/models and /v1/models/{id}: the public model names, their aliases and the endpoints
each serves, as far as the caller's key may use them. A LoRA adapter is a model of its own
(adapters.py), with its base model as `parent`; access to one says nothing of the other."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ..deps import AdmissionDep, PrincipalDep, RoutingDep, RoutingLoadedAtDep
from ..openapi import error_responses
from ..protocol import ModelCard, ModelList
from ..routing import Model
from ..tenancy.auth import Principal
from ..endpoints import SCOPE_OF
from ..errors import ModelNotFound

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList, responses=error_responses(401, 403, 503),
            summary="List the models this API key may use")
async def list_models(admission: AdmissionDep, routing: RoutingDep, routing_loaded_at: RoutingLoadedAtDep, principal: PrincipalDep, response: Response) -> ModelList:
    cards = [card for m in routing.models
             if (card := _card(m, principal, routing_loaded_at)) is not None]
    response.headers.update(await admission.peek_headers(principal))
    return ModelList(data=cards)


@router.get("/v1/models/{model_id:path}", response_model=ModelCard,
            responses=error_responses(401, 403, 404, 503),
            summary="One model this API key may use, by its name or an alias")
async def retrieve_model(model_id: str, admission: AdmissionDep, routing: RoutingDep, routing_loaded_at: RoutingLoadedAtDep, principal: PrincipalDep,
                         response: Response) -> ModelCard:
    model = routing.named(model_id)
    card = _card(model, principal, routing_loaded_at) if model is not None else None
    if card is None:  # unknown, or nothing this key may call: the same answer
        raise ModelNotFound(f"The model '{model_id[:200]}' does not exist", param="model")
    response.headers.update(await admission.peek_headers(principal))
    return card


def _card(model: Model, principal: Principal, created: int) -> ModelCard | None:
    """The model's card for this key: the endpoints its scopes open, or None if none or the
    key may not use the model."""
    allowed = sorted(e.value for e in model.endpoints if SCOPE_OF[e] in principal.scopes)
    if not allowed or not principal.may_use((model.name, *model.aliases)):
        return None
    return ModelCard(id=model.name, created=created, owned_by=model.owned_by, root=model.name,
                     parent=model.parent, aliases=list(model.aliases), endpoints=allowed)
