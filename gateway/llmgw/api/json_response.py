"""The response class of every route that returns data: serialised by orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    """FastAPI's own `ORJSONResponse`, which FastAPI now deprecates (it warned on every worker's
    start). Kept because the admin routes return plain dicts (usage, audit pages): orjson
    renders those several times faster than the standard library's json."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
