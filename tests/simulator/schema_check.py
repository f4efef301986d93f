"""A small JSON-schema checker for tool-call arguments (jsonschema is not installed in the venv).

Covers the keywords the simulator's argument generator promises to honour; returns the list of
problems (empty: the value conforms).
"""

from __future__ import annotations

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def problems(value, schema: dict, root: dict | None = None, where: str = "$") -> list[str]:
    root = schema if root is None else root
    if "$ref" in schema:
        node = root
        for part in filter(None, schema["$ref"][1:].split("/")):
            node = node[part]
        return problems(value, node, root, where)
    out = []
    for sub in schema.get("allOf", []):
        out += problems(value, sub, root, where)
    for key in ("anyOf", "oneOf"):
        if key in schema and not any(not problems(value, s, root, where) for s in schema[key]):
            out.append(f"{where}: matches no {key} branch")
    if "const" in schema and value != schema["const"]:
        out.append(f"{where}: != const")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in enum")
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds and not any(_TYPES[k](value) for k in kinds):
        return out + [f"{where}: {value!r} is not {kinds}"]
    out += _object(value, schema, root, where) + _array(value, schema, root, where)
    return out + _scalar(value, schema, where)


def _object(value, schema, root, where) -> list[str]:
    if not isinstance(value, dict):
        return []
    out = [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]
    props = schema.get("properties", {})
    for key, item in value.items():
        if key in props:
            out += problems(item, props[key], root, f"{where}.{key}")
        elif schema.get("additionalProperties") is False:
            out.append(f"{where}: unexpected {key}")
    return out


def _array(value, schema, root, where) -> list[str]:
    if not isinstance(value, list):
        return []
    out = []
    if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
        out.append(f"{where}: {len(value)} items out of bounds")
    if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
        out.append(f"{where}: items not unique")
    prefix = schema.get("prefixItems", [])
    for i, item in enumerate(value):
        sub = prefix[i] if i < len(prefix) else schema.get("items", {})
        out += problems(item, sub, root, f"{where}[{i}]")
    return out


def _scalar(value, schema, where) -> list[str]:
    out = []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            out.append(f"{where}: {value} outside [minimum, maximum]")
        if value <= schema.get("exclusiveMinimum", value - 1) or value >= schema.get("exclusiveMaximum", value + 1):
            out.append(f"{where}: {value} outside the exclusive bounds")
        if "multipleOf" in schema and value % schema["multipleOf"]:
            out.append(f"{where}: {value} is not a multiple of {schema['multipleOf']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            out.append(f"{where}: length {len(value)} out of bounds")
    return out
