"""Tool-call arguments: a JSON object that satisfies a tool's `parameters` JSON schema.

Values are drawn from a seeded PRNG, so one request always gets the same arguments. Covered:
type (or a list of types), enum, const, properties/required, items/prefixItems, min/max bounds
(minimum, maximum, exclusive*, minLength, maxLength, minItems, maxItems, multipleOf for
integers), uniqueItems, common string formats, anyOf/oneOf (first non-null branch), allOf
(merged) and local $ref ("#/$defs/..", "#/definitions/.."). Not covered: pattern,
patternProperties, if/then/else, not, dependencies.
"""

from __future__ import annotations

import random

from .generate import VOCAB

_MAX_DEPTH = 8  # deeper (or recursive) schemas get empty containers instead of recursing forever
_FORMATS = {
    "date": lambda r: f"20{r.randint(20, 29)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "date-time": lambda r: (f"20{r.randint(20, 29)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
                            f"T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00Z"),
    "time": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00",
    "email": lambda r: f"{r.choice(VOCAB)}@example.com",
    "uri": lambda r: f"https://example.com/{r.choice(VOCAB)}",
    "url": lambda r: f"https://example.com/{r.choice(VOCAB)}",
    "uuid": lambda r: "%08x-%04x-4%03x-8%03x-%012x" % (r.getrandbits(32), r.getrandbits(16), r.getrandbits(12),
                                                       r.getrandbits(12), r.getrandbits(48)),
}


def arguments(schema, rng: random.Random) -> dict:
    """Arguments object for a tool's `parameters` (None or {} give {})."""
    if not isinstance(schema, dict) or not schema:
        return {}
    value = _Gen(schema, rng).value(schema, 0)
    return value if isinstance(value, dict) else {}


class _Gen:
    def __init__(self, root: dict, rng: random.Random):
        self.root, self.rng = root, rng

    def value(self, schema, depth: int):
        schema = self._resolve(schema, depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rng.choice(schema["enum"])
        kind = self._type(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind in ("integer", "number"):
            return self._number(schema, kind == "integer")
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema)

    def _resolve(self, schema, depth: int) -> dict:
        """Follow $ref, pick the first non-null anyOf/oneOf branch and merge allOf, until plain."""
        for _ in range(_MAX_DEPTH):
            if not isinstance(schema, dict):
                return {}
            if isinstance(schema.get("$ref"), str):
                schema = self._ref(schema["$ref"])
            elif isinstance(schema.get("anyOf") or schema.get("oneOf"), list):
                branches = [b for b in schema.get("anyOf") or schema["oneOf"] if isinstance(b, dict)]
                usable = [b for b in branches if b.get("type") != "null"] or branches or [{}]
                rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
                schema = {**rest, **usable[0]}
            elif isinstance(schema.get("allOf"), list):
                parts = [self._resolve(part, depth) for part in schema["allOf"]]
                schema = _merge({**schema, "allOf": parts})
            else:
                return schema
        return {}

    def _ref(self, ref: str) -> dict:
        """A local JSON pointer ("#", "#/$defs/Name"); remote refs resolve to {} (any value)."""
        if not ref.startswith("#"):
            return {}
        node = self.root
        for part in filter(None, ref[1:].split("/")):
            node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else {}

    @staticmethod
    def _type(schema: dict) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
        if isinstance(kind, str):
            return kind
        if "properties" in schema or "required" in schema:
            return "object"
        return "array" if "items" in schema or "prefixItems" in schema else "string"

    def _object(self, schema: dict, depth: int) -> dict:
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        out = {}
        if depth >= _MAX_DEPTH:
            return out
        for name, sub in props.items():
            # Every required property; each optional one on a coin flip, so both shapes occur.
            if name in required or self.rng.random() < 0.5:
                out[name] = self.value(sub, depth + 1)
        for name in required:
            if name not in out:
                out[name] = self._string({})  # required but undeclared: any value is valid
        return out

    def _array(self, schema: dict, depth: int) -> list:
        low = max(_int(schema.get("minItems"), 0), 0)
        high = max(_int(schema.get("maxItems"), max(low, 3)), low)
        if depth >= _MAX_DEPTH:
            return []
        first = max(low, min(1, high))  # one to three items unless the bounds say otherwise
        count = self.rng.randint(first, max(first, min(high, 3)))
        prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        out, seen = [], set()
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items
            for _ in range(10 if schema.get("uniqueItems") else 1):
                value = self.value(sub, depth + 1)
                key = repr(value)
                if key not in seen:
                    break
            if schema.get("uniqueItems") and key in seen and len(out) >= low:
                break  # a small enum ran out of distinct values
            seen.add(key)
            out.append(value)
        return out

    def _number(self, schema: dict, integer: bool):
        low, high = _bounds(schema, integer)
        if integer:
            step = schema.get("multipleOf")
            if isinstance(step, int) and not isinstance(step, bool) and step > 0:
                first, last = -(-low // step), high // step
                return self.rng.randint(first, last) * step if first <= last else low
            return self.rng.randint(low, high)
        value = round(self.rng.uniform(low, high), 2)
        return min(max(value, low), high)

    def _string(self, schema: dict) -> str:
        make = _FORMATS.get(schema.get("format"))
        text = make(self.rng) if make else " ".join(self.rng.choices(VOCAB, k=self.rng.randint(1, 3)))
        low, high = _int(schema.get("minLength"), 0), _int(schema.get("maxLength"), None)
        while len(text) < low:
            text += " " + self.rng.choice(VOCAB)
        return text[:high] if high is not None else text


def _int(value, default):
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _bounds(schema: dict, integer: bool) -> tuple:
    """Inclusive [low, high] from minimum/maximum and both spellings of exclusive bounds."""
    num = (int, float)
    low, high = schema.get("minimum"), schema.get("maximum")
    low = low if isinstance(low, num) and not isinstance(low, bool) else None
    high = high if isinstance(high, num) and not isinstance(high, bool) else None
    gap = 1 if integer else 0.01
    xmin, xmax = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(xmin, num) and not isinstance(xmin, bool):  # draft 6+: a number
        low = xmin + gap if low is None else max(low, xmin + gap)
    elif xmin is True and low is not None:  # draft 4: a flag on minimum
        low += gap
    if isinstance(xmax, num) and not isinstance(xmax, bool):
        high = xmax - gap if high is None else min(high, xmax - gap)
    elif xmax is True and high is not None:
        high -= gap
    if low is None:
        low = 0 if high is None or high >= 0 else high - 100
    if high is None or high < low:
        high = max(low, 0) + 100 if high is None else low
    if integer:
        low, high = int(-(-low // 1)), int(high // 1)
        high = max(high, low)
    return low, high


def _merge(schema: dict) -> dict:
    """allOf folded into one schema: properties and required united, other keys overlaid."""
    out = {k: v for k, v in schema.items() if k != "allOf"}
    props, required = dict(out.get("properties") or {}), list(out.get("required") or [])
    for part in schema["allOf"]:
        if not isinstance(part, dict):
            continue
        props.update(part.get("properties") or {})
        required += [r for r in part.get("required") or [] if r not in required]
        out.update({k: v for k, v in part.items() if k not in ("properties", "required")})
    if props:
        out["properties"] = props
    if required:
        out["required"] = required
    return out
