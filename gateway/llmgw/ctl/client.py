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
        return self._send(method, path, json, params).json()

    def text(self, path: str, *, params: dict | None = None) -> str:
        """A GET answered in text (CSV)."""
        return self._send("GET", path, None, params).text

    def _send(self, method: str, path: str, json: dict | None, params: dict | None) -> httpx.Response:
        try:
            resp = self._http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise AdminError(0, f"cannot reach {self._http.base_url}: {exc}") from None
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            err = body.get("error", {}) if isinstance(body, dict) else {}
            raise AdminError(resp.status_code, err.get("message") or resp.text[:300])
        return resp
