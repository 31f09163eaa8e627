"""Leases: work exactly one process may do, taken over by a survivor when its holder dies.

A lease is a row (`lease`: name, holder, expires_at). Its holder renews it every
`ttl_s / 3`; another process takes it once it has lapsed, so a crashed holder's work moves
within `ttl_s` (default 6 s: a Modbus device is polled again within 10 s). With one process
(SQLite) every lease is simply held.

    async with ctx.leases.holding("opcua:server") as held:   # waits until it holds it
        ...serve...; `held.lost` is set if it is ever lost (the store says another took it)

    share = ctx.leases.share("modbus:bucket", 16)   # this process's fair part of 16 buckets
    share.held -> frozenset of bucket numbers; share.changed -> asyncio.Event
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta

from gateway.domain import utcnow
from gateway.store import repo
from gateway.store.engine import Database

log = logging.getLogger(__name__)
DEFAULT_TTL_S = 6.0


@dataclass
class Held:
    name: str
    lost: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Share:
    """This process's part of `count` numbered leases named `prefix:n`."""

    prefix: str
    count: int
    held: frozenset[int] = frozenset()
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Leases:
    def __init__(self, db: Database, holder: str, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._db = db
        self.holder = holder
        self.ttl_s = ttl_s

    async def try_take(self, name: str) -> bool:
        now = utcnow()
        async with self._db.write_now() as session:
            return await repo.take_lease(session, name, self.holder, now,
                                         now + timedelta(seconds=self.ttl_s))

    async def release(self, name: str) -> None:
        async with self._db.write_now() as session:
            await repo.drop_lease(session, name, self.holder)

    @asynccontextmanager
    async def holding(self, name: str) -> AsyncIterator[Held]:
        """Wait until this process holds `name`; keep it renewed inside the block."""
        # (a lapse is seen only by asking the store: there is nothing to wait on)
        while not await self.try_take(name):  # noqa: ASYNC110
            await asyncio.sleep(self.ttl_s / 3)
        held = Held(name)
        renewer = asyncio.create_task(self._renew(held), name=f"lease:{name}")
        try:
            yield held
        finally:
            renewer.cancel()
            with suppress(asyncio.CancelledError):
                await renewer
            with suppress(Exception):
                await self.release(name)

    async def _renew(self, held: Held) -> None:
        while not held.lost.is_set():
            await asyncio.sleep(self.ttl_s / 3)
            try:
                if not await self.try_take(held.name):
                    log.warning("lease %s was taken by another process", held.name)
                    held.lost.set()
            except Exception:  # the store is away: keep trying until the lease lapses
                log.exception("renewing lease %s failed", held.name)

    @asynccontextmanager
    async def sharing(self, prefix: str, count: int) -> AsyncIterator[Share]:
        """Hold a fair part of `count` leases among the processes that share them: at most
        ceil(count / processes) each, taking lapsed ones over (a dead process's part)."""
        share = Share(prefix, count)
        task = asyncio.create_task(self._balance(share), name=f"leases:{prefix}")
        try:
            yield share
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            for name in [f"{prefix}:{n}" for n in share.held] + [
                    f"{prefix}#member:{self.holder}"]:
                with suppress(Exception):
                    await self.release(name)

    async def _balance(self, share: Share) -> None:
        while True:
            try:
                await self._balance_once(share)
            except Exception:
                log.exception("sharing leases %s failed", share.prefix)
            await asyncio.sleep(self.ttl_s / 3)

    async def _balance_once(self, share: Share) -> None:
        # Each sharer holds a membership lease too: a newcomer holding nothing yet is
        # counted, so the others let go of its part.
        await self.try_take(f"{share.prefix}#member:{self.holder}")
        now = utcnow()
        async with self._db.read() as session:
            holders = await repo.lease_holders(session, f"{share.prefix}:", now)
            members = await repo.lease_holders(session, f"{share.prefix}#member:", now)
        processes = len(set(members.values()) | {self.holder})
        fair = math.ceil(share.count / processes)
        mine = sorted(n for n in range(share.count) if holders.get(f"{share.prefix}:{n}")
                      == self.holder)
        kept = set(mine[:fair])
        for n in mine[fair:]:  # more than our part: let one go for a newcomer
            await self.release(f"{share.prefix}:{n}")
        for n in sorted(kept):  # renew
            if not await self.try_take(f"{share.prefix}:{n}"):
                kept.discard(n)
        for n in range(share.count):
            if len(kept) >= fair:
                break
            if f"{share.prefix}:{n}" not in holders and await self.try_take(
                    f"{share.prefix}:{n}"):
                kept.add(n)
        if frozenset(kept) != share.held:
            share.held = frozenset(kept)
            share.changed.set()
