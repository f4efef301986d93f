"""/classify and /pooling: a one-label classifier's deterministic probabilities, and the pooling
output of the model's own task (an embed server's vectors, a rerank server's probabilities).

vLLM 0.32 serves /classify on a model whose pooling task is classify (a cross-encoder is a
one-label classifier: label LABEL_0, a sigmoid probability), and /pooling on every pooling
model, answering with its default task's output.
"""

from __future__ import annotations

import hashlib
import math
import time
from array import array

import orjson

from . import openai_shapes as shapes
from .pooling import check_lengths, embed_vector, encode, encoding_format, pooled_inputs, request_id
from .validate import bad_request, check_model, get_bool, invalid

# Each server kind's pooling tasks, its default first (what /pooling runs without `task`).
TASKS = {"embed": ("embed", "token_embed"), "rerank": ("classify", "token_classify")}
ALL_TASKS = ("embed", "classify", "token_embed", "token_classify", "plugin", "embed&token_classify")
LABEL = "LABEL_0"  # transformers' name for a one-label head without id2label


def probabilities(key: str, activation: bool = True) -> array:
    """One logit from a hash of the input, through a sigmoid unless `use_activation` is false."""
    h = hashlib.blake2b(key.encode(), digest_size=4).digest()
    logit = (int.from_bytes(h, "little") / 2**32 - 0.5) * 4
    return array("f", [1 / (1 + math.exp(-logit)) if activation else logit])


def classify(body: dict, headers: dict, cfg) -> tuple[bytes, int]:
    items = pooled_inputs(body)
    activation = get_bool(body, "use_activation", True)
    check_model(body, cfg.served_model_names, pooling=True)
    check_lengths(items, cfg)
    data = []
    for i, (key, _) in enumerate(items):
        probs = probabilities(key, activation).tolist()
        data.append({"index": i, "label": LABEL, "probs": probs, "num_classes": len(probs)})
    total = sum(c for _, c in items)
    resp = {"id": request_id("classify-", body, headers), "object": "list", "created": int(time.time()),
            "model": cfg.model_name, "data": data, "usage": shapes.usage(total)}
    return orjson.dumps(resp), total


def _check_task(body: dict, kind: str) -> None:
    task, supported = body.get("task"), TASKS[kind]
    if task is None or task == supported[0]:
        return
    if task not in ALL_TASKS:
        raise invalid("literal_error", "task", "Input should be " + ", ".join(f"'{t}'" for t in ALL_TASKS[:-1])
                      + f" or '{ALL_TASKS[-1]}'", task)
    if task in supported:
        raise bad_request(f"Try switching the model's pooling_task via --pooler-config.task {task}.", "task")
    raise bad_request(f"Unsupported task: {task!r} Supported tasks: {list(supported)}", "task")


def pool(body: dict, headers: dict, cfg) -> tuple[bytes, int]:
    """vLLM's /pooling: per input, the default task's output as an object "pooling" item."""
    _check_task(body, cfg.kind)
    if body.get("dimensions") is not None:
        raise bad_request("dimensions is currently not supported", "dimensions")
    if "input" not in body and "messages" not in body and "data" in body:
        raise bad_request("No IOProcessor plugin installed. Please refer to the documentation and to the "
                          "'prithvi_geospatial_mae_io_processor' offline inference example for more details.",
                          "task")
    items = pooled_inputs(body)
    fmt = encoding_format(body)
    activation = get_bool(body, "use_activation", True)
    check_model(body, cfg.served_model_names, pooling=True)
    check_lengths(items, cfg)
    vectors = [embed_vector(key, cfg.embed_dim) if cfg.kind == "embed" else probabilities(key, activation)
               for key, _ in items]
    data = [{"index": i, "object": "pooling", "data": encode(v, fmt)} for i, v in enumerate(vectors)]
    total = sum(c for _, c in items)
    resp = {"id": request_id("pooling-", body, headers), "object": "list", "created": int(time.time()),
            "model": cfg.model_name, "data": data, "usage": shapes.usage(total)}
    return orjson.dumps(resp), total
