"""A small HTTPS client for the platform API, used by the CLI (`send`, `status`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from gateway.settings import Settings
from pki.tls import client_context


class PlatformClient:
    def __init__(self, settings: Settings, *, cert: Path | None = None,
                 token: str | None = None) -> None:
        pki = settings.pki_dir / "platform"
        self.base = settings.platform_listen.rstrip("/")
        cert = cert if cert or token else pki / "clients/admin.pem"
        self._ssl = client_context(pki / "ca.pem", cert, cert.with_suffix(".key") if cert else None)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def request(self, method: str, path: str, body: Any = None,
                      headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession(headers=self._headers) as http, http.request(
            method, self.base + path, json=body, ssl=self._ssl, headers=headers
        ) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text) if text else None
            except ValueError:
                return resp.status, text
