"""The VEN's HTTP edge: OAuth client-credentials token, JSON over TLS, re-token on 401."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from pki.tls import client_context

TIMEOUT = aiohttp.ClientTimeout(total=30)


class VtnError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {str(body)[:200]}")
        self.status = status
        self.body = body

    @property
    def retryable(self) -> bool:
        """Worth sending again later: the VTN is busy (429) or failing (5xx), or our token
        was refused again right after a fresh one (a restart racing the token)."""
        return self.status in (401, 429) or self.status >= 500


class VtnClient:
    def __init__(self, base_url: str, ca: Path, client_id: str, client_secret: str,
                 connections: int = 8) -> None:
        self.base = base_url.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._ca = ca
        self._connections = connections
        self._token: str | None = None
        self.http: aiohttp.ClientSession | None = None
        self.requests = 0

    async def __aenter__(self) -> VtnClient:
        self.http = aiohttp.ClientSession(timeout=TIMEOUT, connector=aiohttp.TCPConnector(
            ssl=client_context(self._ca), limit=self._connections))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.close()

    async def token(self) -> str:
        assert self.http is not None
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self._secret}
        async with self.http.post(f"{self.base}/auth/token", data=form) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise VtnError(resp.status, body)
        self._token = str(body["access_token"])
        return self._token

    async def call(self, method: str, path: str, body: Any = None,
                   params: list[tuple[str, str]] | None = None) -> Any:
        """One request; a 401 fetches a fresh token and tries once more."""
        assert self.http is not None
        for attempt in (0, 1):
            if self._token is None:
                await self.token()
            self.requests += 1
            async with self.http.request(method, self.base + path, json=body, params=params,
                                         headers={"Authorization": f"Bearer {self._token}"}
                                         ) as resp:
                payload = await resp.json(content_type=None) if resp.content_length != 0 else None
                if resp.status == 401 and attempt == 0:
                    self._token = None
                    continue
                if resp.status >= 400:
                    raise VtnError(resp.status, payload)
                return payload
        raise VtnError(401, "unauthorised after a fresh token")

    async def search(self, path: str, params: list[tuple[str, str]], page: int = 50
                     ) -> list[dict[str, Any]]:
        """Every object of a paged search (skip, limit <= 50)."""
        out: list[dict[str, Any]] = []
        while True:
            got = await self.call("GET", path, params=[*params, ("skip", str(len(out))),
                                                       ("limit", str(page))])
            out.extend(got or [])
            if not got or len(got) < page:
                return out
