"""The cache key of a request and the rule for which requests may be cached at all."""

from __future__ import annotations

import hashlib

import orjson

from ..endpoints import EndpointSpec

# Fields that change how an answer is delivered or attributed, never what it says.
DELIVERY_FIELDS = frozenset(("stream", "stream_options", "user", "model"))


def is_deterministic(endpoint: EndpointSpec, body: dict) -> bool:
    """Embeddings and rerank always; generations only when greedy (temperature 0) or seeded,
    and with one choice. An absent temperature means the model's default (sampling): not
    deterministic."""
    if endpoint.cache != "deterministic":
        return endpoint.cache == "always"
    n = body.get("n")
    if n is not None and n != 1:
        return False
    return body.get("temperature") == 0 or body.get("seed") is not None


def normalised(body: dict) -> dict:
    """The request as far as it decides the answer: delivery fields and nulls dropped (null
    means "the default", as absence does), n=1 dropped (the default), numbers made floats so
    temperature 0 and 0.0 share a key."""
    out = {}
    for name, value in body.items():
        if name in DELIVERY_FIELDS or value is None or (name == "n" and value == 1):
            continue
        if isinstance(value, int) and not isinstance(value, bool) and name in ("temperature", "top_p"):
            value = float(value)
        out[name] = value
    return out


def cache_key(org_id: str, endpoint: EndpointSpec, model: str, body: dict) -> str:
    """A digest of organisation, endpoint, public model (after alias resolution) and the
    normalised request. The organisation is inside the digest, so two organisations sending
    the same request never share an entry."""
    material = orjson.dumps([org_id, endpoint.name, model, normalised(body)],
                            option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(material, digest_size=16).hexdigest()
