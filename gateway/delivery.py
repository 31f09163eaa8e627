"""Durable outbound notifications: commit first, then POST with retries and back-off.

Used by adapters for 2030.5 notifications and OpenADR webhooks. A delivery is a row written
in the same transaction as the change it announces (`gateway.records.RecordWrite`); a
receiver that is down gets exponential back-off (1 s doubling to at most 5 min) for
`max_attempts` tries - by default about an hour, so a receiver away for a maintenance window
still gets what was committed for it. Every connection passes the one outbound guard
(`gateway.outbound`): IP literals are checked before the POST, names by the resolver, so
what was allowed at subscription time cannot be turned against the gateway's own network
later. Deleting what a delivery was for (its `subject`) cancels what is still pending.

With several processes on one database, a worker claims the rows it sends for a while
(`claimed_by`, `claim_until`; `FOR UPDATE SKIP LOCKED` on PostgreSQL): a row is sent by one
process, and taken over by another when its claim lapses (its process died).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.background import background
from gateway.domain import utcnow
from gateway.errors import InvalidInput
from gateway.outbound import OutboundGuard
from gateway.store import deliveries as store
from gateway.store.engine import Database

# 1+2+...+256 s, then 300 s apart: the last try is about an hour after the first.
DEFAULT_ATTEMPTS = 20
# A worker's hold on the rows it is sending; another takes them after it, or as soon as the
# claimer's process lease (PROCESS_LEASES) lapses (~6 s).
CLAIM_S = 60.0

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One notification to POST. `tls` names a client TLS context registered with
    `register_tls`; `subject` names what it is for (e.g. "sub:12"), so deleting that
    cancels it while it is still pending."""

    url: str
    body: bytes
    content_type: str
    headers: dict[str, str] | None = None
    tls: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What became of one delivery attempt, for the adapter that enqueued it."""

    delivery_id: int
    subject: str | None
    delivered: bool
    error: str | None
    final: bool  # delivered, or failed for good


OutcomeListener = Callable[[list[DeliveryOutcome]], Awaitable[None]]


async def add_deliveries(session: AsyncSession, adapter: str, items: Sequence[Outgoing],
                         max_attempts: int = DEFAULT_ATTEMPTS) -> list[int]:
    """Store deliveries in the caller's transaction; their ids, in order."""
    return await store.add(session, adapter, [
        store.NewDelivery(i.url, i.body, i.content_type, i.headers, i.tls, i.subject)
        for i in items], max_attempts, utcnow())


async def cancel_pending(session: AsyncSession, adapter: str, subjects: Iterable[str]) -> int:
    """Cancel what is still pending for these subjects, in the caller's transaction."""
    return await store.cancel_pending(session, adapter, subjects, utcnow())


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp does, then drops addresses the outbound guard refuses.
    Connections are made only to what this returns. (aiohttp does not ask a resolver for
    IP-literal hosts: the worker checks those itself before connecting.)"""

    def __init__(self, guard: OutboundGuard) -> None:
        self._inner = DefaultResolver()
        self._guard = guard

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if self._guard.refusal_for_address(
            ipaddress.ip_address(r["host"]), port) is None]
        if not allowed:
            raise OSError(f"{host} resolves only to addresses callbacks may not reach")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class DeliveryQueue:
    """The worker (one per process) and, through `for_adapter`, each adapter's view."""

    def __init__(self, db: Database, adapter: str = "", *, concurrency: int = 100,
                 timeout_s: float = 15.0, shared: DeliveryQueue | None = None,
                 dev_mode: bool = False, guard: OutboundGuard | None = None) -> None:
        self._db = db
        self.adapter = adapter
        self._shared = shared
        self.guard: OutboundGuard = (shared.guard if shared is not None
                                     else guard or OutboundGuard(dev_mode=dev_mode))
        self.dev_mode = self.guard.dev_mode
        self._tls: dict[str, ssl.SSLContext] = {} if shared is None else shared._tls
        self._listeners: dict[str, OutcomeListener] = ({} if shared is None
                                                       else shared._listeners)
        self._wake: asyncio.Event = asyncio.Event() if shared is None else shared._wake
        self._concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.worker_id = f"{socket.gethostname()[:40]}:{os.getpid()}"
        self.base_backoff_s = 1.0
        self.max_backoff_s = 300.0

    def for_adapter(self, adapter: str) -> DeliveryQueue:
        """A view that stamps deliveries with the adapter's name and shares the worker."""
        return DeliveryQueue(self._db, adapter, shared=self)

    # -- the adapter's port ----------------------------------------------------------------

    def register_tls(self, name: str, context: ssl.SSLContext) -> None:
        """A client TLS context that deliveries name with `Outgoing.tls`."""
        self._tls[name] = context

    register_ssl = register_tls  # the name adapters used before the seam

    def on_outcomes(self, listener: OutcomeListener) -> None:
        """Tell this adapter what became of its deliveries (after each batch is recorded)."""
        self._listeners[self.adapter] = listener

    def wake(self) -> None:
        self._wake.set()

    async def enqueue(self, url: str, body: bytes, *, content_type: str,
                      headers: dict[str, str] | None = None, ssl_name: str | None = None,
                      max_attempts: int = DEFAULT_ATTEMPTS) -> int:
        (row_id,) = await self.enqueue_many(
            [Outgoing(url, body, content_type, headers, ssl_name)], max_attempts=max_attempts)
        return row_id

    async def enqueue_many(self, items: Sequence[Outgoing], *,
                           max_attempts: int = DEFAULT_ATTEMPTS) -> list[int]:
        """Commit deliveries that announce nothing else (otherwise use RecordWrite)."""
        async with self._db.write() as session:
            ids = await add_deliveries(session, self.adapter, items, max_attempts)
        self._wake.set()
        return ids

    async def cancel(self, subjects: Iterable[str]) -> int:
        async with self._db.write() as session:
            return await cancel_pending(session, self.adapter, subjects)

    async def stats(self) -> dict[str, Any]:
        """Counts by state, and the age of the oldest pending delivery (seconds)."""
        async with self._db.read() as session:
            return await store.counts(session, utcnow())

    # -- the worker ------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the delivery worker for the duration of the context."""
        connector = aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=self._concurrency,
                                         resolver=GuardedResolver(self.guard))
        async with aiohttp.ClientSession(connector=connector, timeout=self._timeout) as http, \
                background(self._work(http), "delivery-worker"):
            yield

    async def _work(self, http: aiohttp.ClientSession) -> None:
        while True:
            try:
                due = await self._claim(self._concurrency * 4)
                if due:
                    await self._deliver_batch(http, due)
                    continue
            except Exception:  # the worker must outlive any one bad batch
                log.exception("delivery worker error; retrying shortly")
            self._wake.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    async def _claim(self, limit: int) -> list[store.Claimed]:
        """Due rows nobody holds, claimed for this worker in one transaction."""
        async with self._db.write() as session:
            return await store.claim_due(session, self.worker_id, limit, utcnow(), CLAIM_S)

    async def _deliver_batch(self, http: aiohttp.ClientSession, rows: list[store.Claimed]
                             ) -> None:
        limiter = asyncio.Semaphore(self._concurrency)

        async def one(row: store.Claimed) -> tuple[store.Claimed, str | None]:
            async with limiter:
                return row, await self._post(http, row)

        results = await asyncio.gather(*(one(r) for r in rows))
        outcomes = await self._record(results)
        await self._tell(outcomes)

    async def _record(self, results: list[tuple[store.Claimed, str | None]]
                      ) -> list[tuple[str, DeliveryOutcome]]:
        now = utcnow()
        outcomes: list[tuple[str, DeliveryOutcome]] = []
        async with self._db.write() as session:
            await store.delivered(session, [r.id for r, err in results if err is None],
                                  now)
            for row, err in results:
                if err is None:
                    outcomes.append((row.adapter, DeliveryOutcome(
                        row.id, row.subject, True, None, True)))
                    continue
                attempts = row.attempts + 1
                final = attempts >= row.max_attempts or err.startswith("refused")
                retry_at = None
                if final:
                    log.warning("delivery %s to %s failed for good: %s", row.id,
                                urlsplit(row.url).netloc, err)
                else:
                    backoff = min(self.max_backoff_s, self.base_backoff_s * 2 ** (attempts - 1))
                    retry_at = now + timedelta(seconds=backoff)
                await store.attempt_failed(session, row.id, attempts, err,
                                           now if final else None, retry_at)
                outcomes.append((row.adapter, DeliveryOutcome(
                    row.id, row.subject, False, err, final)))
        return outcomes

    async def _tell(self, outcomes: list[tuple[str, DeliveryOutcome]]) -> None:
        by_adapter: dict[str, list[DeliveryOutcome]] = {}
        for adapter, outcome in outcomes:
            by_adapter.setdefault(adapter, []).append(outcome)
        for adapter, items in by_adapter.items():
            listener = self._listeners.get(adapter)
            if listener is None:
                continue
            try:
                await listener(items)
            except Exception:  # an adapter's bookkeeping must not stop deliveries
                log.exception("the %s adapter failed to take its delivery outcomes", adapter)

    async def _post(self, http: aiohttp.ClientSession, row: store.Claimed) -> str | None:
        try:
            _host, address, port = self.guard.check_syntax(row.url)
        except InvalidInput as exc:
            return f"refused: {exc.detail}"
        if address is not None:  # a literal: aiohttp would connect without a resolver
            reason = self.guard.refusal_for_address(address, port)
            if reason:
                return f"refused: {reason}"
        if row.ssl_name and row.ssl_name not in self._tls:
            return f"refused: no TLS context named {row.ssl_name!r} is registered"
        context: ssl.SSLContext | bool = self._tls[row.ssl_name] if row.ssl_name else True
        headers = {"Content-Type": row.content_type, **row.headers}
        try:
            async with http.post(row.url, data=row.body, headers=headers, ssl=context,
                                 allow_redirects=False) as resp:
                await resp.read()
                return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"


async def check_callback_url(url: str, *, dev_mode: bool) -> None:
    """Registration-time check with the default policy (adapters: use `ctx.outbound`)."""
    await OutboundGuard(dev_mode=dev_mode).check(url)



