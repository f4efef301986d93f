"""A thin synchronous client of the admin API; errors come back as AdminError with the server's message."""

from __future__ import annotations

import httpx


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class AdminClient:
    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, *, json: dict | None = None,
             params: dict | None = None) -> dict:
        try:
            resp = self._http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise AdminError(0, f"cannot reach {self._http.base_url}: {exc}") from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code >= 400:
            err = body.get("error", {}) if isinstance(body, dict) else {}
            raise AdminError(resp.status_code, err.get("message") or resp.text[:300])
        return body
