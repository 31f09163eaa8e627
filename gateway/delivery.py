"""Durable outbound notifications: commit first, then POST with retries and back-off.

Used by adapters for 2030.5 notifications and OpenADR webhooks. A delivery survives a
restart (it is a row); a receiver that is down gets exponential back-off (1 s doubling to
at most 5 min) for `max_attempts` tries - by default about an hour, so a receiver that is
away for a maintenance window or a comms loss still gets what was committed for it;
callback URLs are checked against SSRF before they are accepted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from sqlalchemy import select, update

from gateway.domain import utcnow
from gateway.errors import InvalidInput
from gateway.store.engine import Database
from gateway.store.tables import DeliveryRow

# 1+2+...+256 s, then 300 s apart: the last try is about an hour after the first.
DEFAULT_ATTEMPTS = 20

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    url: str
    body: bytes
    content_type: str
    headers: dict[str, str] | None = None
    ssl_name: str | None = None


def address_allowed(address: str, *, dev_mode: bool) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.is_loopback:
        return dev_mode
    return not (ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
                or ip.is_unspecified)


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp does, then drops addresses the policy forbids. Connections are
    made only to what this returns, so a name that re-resolves to an internal address after
    the subscription was checked (DNS rebinding) still cannot be reached."""

    def __init__(self, dev_mode: bool) -> None:
        self._inner = DefaultResolver()
        self._dev_mode = dev_mode

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if address_allowed(r["host"], dev_mode=self._dev_mode)]
        if not allowed:
            raise OSError(f"{host} resolves only to addresses callbacks may not reach")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


async def check_callback_url(url: str, *, dev_mode: bool) -> None:
    """Refuse callbacks that would make the gateway attack its own network (SSRF).

    HTTPS to a public address is always allowed. Plain HTTP, loopback and private addresses
    are allowed only in dev mode, and then only loopback.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise InvalidInput("callback must be an absolute http(s) URL")
    if parts.username or parts.password:
        raise InvalidInput("callback must not carry credentials")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443)
    except OSError as exc:
        raise InvalidInput(f"callback host does not resolve: {parts.hostname}") from exc
    for info in infos:
        address = str(info[4][0])
        if not address_allowed(address, dev_mode=dev_mode):
            if ipaddress.ip_address(address).is_loopback:
                raise InvalidInput("loopback callbacks are allowed only in development mode")
            raise InvalidInput("callback resolves to a non-public address")
    if parts.scheme == "http" and not dev_mode:
        raise InvalidInput("callbacks must use https")


class DeliveryQueue:
    def __init__(self, db: Database, adapter: str = "", *, concurrency: int = 100,
                 timeout_s: float = 15.0, shared: DeliveryQueue | None = None,
                 dev_mode: bool = False) -> None:
        self._db = db
        self.dev_mode = dev_mode if shared is None else shared.dev_mode
        self.adapter = adapter
        self._shared = shared
        self._ssl: dict[str, ssl.SSLContext] = {} if shared is None else shared._ssl
        self._wake = asyncio.Event() if shared is None else shared._wake
        self._concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.base_backoff_s = 1.0
        self.max_backoff_s = 300.0

    def for_adapter(self, adapter: str) -> DeliveryQueue:
        """A view that stamps deliveries with the adapter's name and shares the worker."""
        return DeliveryQueue(self._db, adapter, shared=self)

    def register_ssl(self, name: str, context: ssl.SSLContext) -> None:
        self._ssl[name] = context

    async def enqueue(self, url: str, body: bytes, *, content_type: str,
                      headers: dict[str, str] | None = None, ssl_name: str | None = None,
                      max_attempts: int = DEFAULT_ATTEMPTS) -> int:
        (row_id,) = await self.enqueue_many(
            [Outgoing(url, body, content_type, headers, ssl_name)], max_attempts=max_attempts)
        return row_id

    async def enqueue_many(self, items: Sequence[Outgoing], *,
                           max_attempts: int = DEFAULT_ATTEMPTS) -> list[int]:
        now = utcnow()
        rows = [DeliveryRow(adapter=self.adapter, url=i.url, body=i.body,
                            content_type=i.content_type, headers=i.headers or {},
                            ssl_name=i.ssl_name, max_attempts=max_attempts, next_attempt_at=now,
                            created_at=now) for i in items]
        async with self._db.write() as session:
            session.add_all(rows)
            await session.flush()
        self._wake.set()
        return [r.id for r in rows]  # type: ignore[misc]

    async def stats(self) -> dict[str, int]:
        async with self._db.read() as session:
            rows = (await session.execute(select(DeliveryRow.delivered_at, DeliveryRow.failed_at)
                                          )).all()
        delivered = sum(1 for d, _ in rows if d is not None)
        failed = sum(1 for d, f in rows if d is None and f is not None)
        return {"delivered": delivered, "failed": failed,
                "pending": len(rows) - delivered - failed}

    # -- the worker ------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the delivery worker for the duration of the context."""
        connector = aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=self._concurrency,
                                         resolver=GuardedResolver(self.dev_mode))
        async with aiohttp.ClientSession(connector=connector, timeout=self._timeout) as http:
            task = asyncio.create_task(self._work(http), name="delivery-worker")
            try:
                yield
            finally:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    async def _work(self, http: aiohttp.ClientSession) -> None:
        while True:
            try:
                due = await self._due(self._concurrency * 4)
                if due:
                    await self._deliver_batch(http, due)
                    continue
            except Exception:  # the worker must outlive any one bad batch
                log.exception("delivery worker error; retrying shortly")
            self._wake.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    async def _due(self, limit: int) -> list[DeliveryRow]:
        async with self._db.read() as session:
            query = (select(DeliveryRow)
                     .where(DeliveryRow.delivered_at.is_(None), DeliveryRow.failed_at.is_(None),  # type: ignore[union-attr]
                            DeliveryRow.next_attempt_at <= utcnow())  # type: ignore[operator]
                     .order_by(DeliveryRow.id).limit(limit))  # type: ignore[arg-type]
            return list((await session.execute(query)).scalars())

    async def _deliver_batch(self, http: aiohttp.ClientSession, rows: list[DeliveryRow]) -> None:
        limiter = asyncio.Semaphore(self._concurrency)

        async def one(row: DeliveryRow) -> tuple[DeliveryRow, str | None]:
            async with limiter:
                return row, await self._post(http, row)

        results = await asyncio.gather(*(one(r) for r in rows))
        now = utcnow()
        async with self._db.write() as session:
            ok = [r.id for r, err in results if err is None]
            if ok:
                await session.execute(update(DeliveryRow).where(DeliveryRow.id.in_(ok))  # type: ignore[union-attr]
                                      .values(delivered_at=now, attempts=DeliveryRow.attempts + 1))
            for row, err in results:
                if err is None:
                    continue
                attempts = row.attempts + 1
                values: dict[str, Any] = {"attempts": attempts, "last_error": err[:500]}
                if attempts >= row.max_attempts:
                    values["failed_at"] = now
                    log.warning("delivery %s to %s failed for good: %s", row.id,
                                urlsplit(row.url).netloc, err)
                else:
                    backoff = min(self.max_backoff_s, self.base_backoff_s * 2 ** (attempts - 1))
                    values["next_attempt_at"] = now + timedelta(seconds=backoff)
                await session.execute(update(DeliveryRow).where(DeliveryRow.id == row.id)
                                      .values(**values))

    async def _post(self, http: aiohttp.ClientSession, row: DeliveryRow) -> str | None:
        if urlsplit(row.url).scheme != "https" and not self.dev_mode:
            return "refused: callbacks must use https"
        context: ssl.SSLContext | bool = self._ssl.get(row.ssl_name, True) if row.ssl_name else True
        headers = {"Content-Type": row.content_type, **row.headers}
        try:
            async with http.post(row.url, data=row.body, headers=headers, ssl=context,
                                 allow_redirects=False) as resp:
                await resp.read()
                return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
