"""A 2030.5 client's HTTP edge: mutual TLS (TLS 1.2, ECDHE-ECDSA-AES128-CCM8), XML in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from pki.tls import client_context
from simulators.ieee2030_5_client import wire

TIMEOUT = aiohttp.ClientTimeout(total=30)


class ServerError(Exception):
    """The server answered with an error status (its <Error> body kept as text)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail[:200]}")
        self.status = status


def tls_session(url: str, pki: Path, name: str, connections: int = 8) -> aiohttp.ClientSession:
    """One keep-alive session presenting the client certificate `name` from the dev PKI."""
    base = pki / "ieee2030_5"
    ctx = client_context(base / "ca-chain.pem", base / f"clients/{name}-chain.pem",
                         base / f"clients/{name}.key", ieee2030_5=True)
    return aiohttp.ClientSession(url, timeout=TIMEOUT, connector=aiohttp.TCPConnector(
        ssl=ctx, limit=connections))


class Sep:
    """GET, POST and PUT of wire models against one server."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.requests = 0
        self.last = ""  # the request most recently started, for diagnostics

    async def get(self, href: str, expect: type | None = None) -> Any:
        self.requests += 1
        self.last = f"GET {href}"
        async with self.http.get(href) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise ServerError(resp.status, data.decode(errors="replace"))
        return wire.read(data, expect)

    async def send(self, method: str, href: str, model: Any) -> str | None:
        """POST or PUT a document; the answer's Location (if any)."""
        self.requests += 1
        self.last = f"{method} {href}"
        async with self.http.request(method, href, data=wire.serialize(model),
                                     headers={"Content-Type": wire.MEDIA_TYPE}) as resp:
            if resp.status not in (200, 201, 204):
                raise ServerError(resp.status, (await resp.read()).decode(errors="replace"))
            return resp.headers.get("Location")

    async def get_all(self, href: str, expect: type, field: str, page: int = 255) -> list[Any]:
        """Every item of a paged list (s, l)."""
        return (await self.get_list(href, expect, field, page))[1]

    async def get_list(self, href: str, expect: type, field: str, page: int = 255
                       ) -> tuple[Any, list[Any]]:
        """A paged list's first page (for the list's own attributes, e.g. pollRate) and
        every item of it."""
        items: list[Any] = []
        first = None
        while True:
            sep = "&" if "?" in href else "?"
            doc = await self.get(f"{href}{sep}s={len(items)}&l={page}", expect)
            first = first or doc
            got = getattr(doc, field)
            items.extend(got)
            if not got or len(items) >= (doc.all or 0):
                return first, items
