"""The interactive API pages, /docs (Swagger UI) and /redoc, served with their assets from here.

FastAPI's own pages load Swagger UI, ReDoc, a favicon and fonts from CDNs: blank behind a
firewall or offline, and a third party sees who reads the docs. The assets come from the pinned
`fastapi-standalone-docs` package and are served under /docs/assets and /redoc/assets.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_standalone_docs
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

ASSETS = Path(fastapi_standalone_docs.__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add the two pages and their assets; the app must be built with docs_url=redoc_url=None."""
    title = f"{app.title} - API reference"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=root + app.openapi_url, title=title,
                                   swagger_js_url=root + "/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url=root + "/docs/assets/swagger-ui.css",
                                   swagger_favicon_url=root + "/docs/favicon/favicon.png")

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=root + app.openapi_url, title=title,
                              redoc_js_url=root + "/redoc/assets/redoc.standalone.js",
                              redoc_favicon_url=root + "/docs/favicon/favicon.png",
                              with_google_fonts=False)

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
    app.mount("/docs/assets", StaticFiles(directory=ASSETS / "swagger"), name="swagger-ui")
    app.mount("/docs/favicon", StaticFiles(directory=ASSETS / "fastapi"), name="docs-favicon")
    app.mount("/redoc/assets", StaticFiles(directory=ASSETS / "redoc"), name="redoc")
