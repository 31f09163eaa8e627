"""The platform API as the scenario's parties use it: one TLS identity per participant (dev
PKI platform client certificates), JSON requests, and the admin's server-sent event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509

from pki.devpki import DevPki
from pki.identity import sha256_hex
from pki.tls import client_context

EventHandler = Callable[[str, dict[str, Any]], Awaitable[None]]


class PlatformError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"platform API answered {status}: {str(body)[:300]}")
        self.status = status
        self.body = body


class Platform:
    def __init__(self, base_url: str, pki: Path) -> None:
        self.base = base_url.rstrip("/")
        self.pki = pki
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def certificate(self, who: str) -> Path:
        path = self.pki / "platform/clients" / f"{who}.pem"
        if not path.exists():
            DevPki(self.pki).issue_platform_client(who)
        return path

    def fingerprint(self, who: str) -> str:
        return sha256_hex(x509.load_pem_x509_certificate(self.certificate(who).read_bytes()))

    def _session(self, who: str) -> aiohttp.ClientSession:
        if who not in self._sessions:
            cert = self.certificate(who)
            ctx = client_context(self.pki / "platform/ca.pem", cert, cert.with_suffix(".key"))
            self._sessions[who] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ctx, limit=16),
                timeout=aiohttp.ClientTimeout(total=120))
        return self._sessions[who]

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def call(self, who: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self._session(who).request(method, self.base + path, json=body) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text) if text else None
            except ValueError:
                return resp.status, text

    async def ok(self, who: str, method: str, path: str, body: Any = None) -> Any:
        status, payload = await self.call(who, method, path, body)
        if status >= 300:
            raise PlatformError(status, payload)
        return payload

    async def follow(self, on_event: EventHandler, ready: Callable[[], None] | None = None,
                     who: str = "admin") -> None:
        """Read the event stream until cancelled, resuming with Last-Event-ID when the
        connection drops (the gateway restarted, or the process serving it died and another
        answers): nothing is missed, nothing is read twice."""
        last: str | None = None
        while True:
            headers = {"Last-Event-ID": last} if last else {}
            timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
            try:
                async with self._session(who).get(self.base + "/v1/events", headers=headers,
                                                  timeout=timeout) as resp:
                    if resp.status != 200:
                        raise PlatformError(resp.status, await resp.text())
                    if ready is not None:
                        ready()
                        ready = None
                    topic, data, pending = "", "", last
                    async for raw in resp.content:
                        line = raw.decode().rstrip("\n")
                        if line.startswith("id:"):
                            pending = line[3:].strip()
                        elif line.startswith("event:"):
                            topic = line[6:].strip()
                        elif line.startswith("data:"):
                            data += line[5:].strip()
                        elif line == "" and topic:
                            await on_event(topic, json.loads(data or "{}"))
                            last = pending  # (only once the event is handled)
                            topic, data = "", ""
            except (aiohttp.ClientError, OSError, TimeoutError):
                await asyncio.sleep(0.5)  # the gateway is away: ask again where it stopped
