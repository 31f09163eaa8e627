"""The unit of work every service shares: the store, the topology and control caches, and
the one recompute that keeps effective controls true inside a write's transaction.

Each write is one transaction: validate, store, recompute the effective controls it
affects, store the notices the outcome calls for, and write the outbox rows that announce
it. Only after the commit does anyone hear "accepted"; only the outbox relay publishes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.bindings import BindingRules
from gateway.coordination.engine import Coordinator
from gateway.coordination.topology import Topology
from gateway.domain import Resource, utcnow
from gateway.events import Topic
from gateway.jsonform import to_json
from gateway.store import repo
from gateway.store.engine import Database


class UnitOfWork:
    def __init__(self, db: Database, coordinator: Coordinator | None = None,
                 on_commit: Callable[[], None] | None = None,
                 bindings: BindingRules | None = None) -> None:
        self.db = db
        self.bindings = bindings or BindingRules.installed()
        self.coordinator = coordinator or Coordinator()
        self._on_commit = on_commit or (lambda: None)  # wakes the outbox relay
        self._topology: Topology | None = None
        self._topology_generation = 0  # bumped by every invalidation
        self._versions: dict[str, str] | None = None  # each DER's stored control version
        self._pending_versions: dict[str, str] = {}
        # Several processes may write: the store counts changes of what is cached here
        # (GenerationRow); a cache is good while its count is the store's.
        self._topology_count = -1  # the store's topology count when the cache was loaded
        self._controls_count = -1  # ... the control versions' count
        self._pending_controls_count: int | None = None
        self._maybe_stale = False  # another process may have changed the topology
        self._loading = asyncio.Lock()
        self.last_topology_count = 0  # the count the last topology write made
        # The topology as the write in progress leaves it, when known without reading the
        # store (see added_resources); the cache once that write commits.
        self._provisional: Topology | None = None

    def committed(self) -> None:
        """A write with outbox rows committed: wake the relay."""
        self._on_commit()

    @asynccontextmanager
    async def write(self, *, topology: bool = False) -> AsyncIterator[AsyncSession]:
        """A write transaction that keeps the version cache true to what was committed;
        `topology`: it changes participants, connection points or DERs (counted, so other
        processes know their cached topology is stale)."""
        try:
            async with self.db.write() as session:
                self._pending_versions = {}
                self._pending_controls_count = None
                if topology:
                    self.last_topology_count = await repo.bump_generation(session, "topology")
                yield session
        except BaseException:
            self._versions = None  # unknown: reload from the store next time
            raise
        finally:
            pending, self._pending_versions = self._pending_versions, {}
            count, self._pending_controls_count = self._pending_controls_count, None
            provisional, self._provisional = self._provisional, None
        if self._versions is not None:
            self._versions.update(pending)
        if count is not None:
            self._controls_count = count
        if provisional is not None:  # committed: the cache is what this write left
            self._topology, self._topology_count = provisional, self.last_topology_count
            self._topology_generation += 1  # (a load in flight must not overwrite it)

    # -- the topology cache ----------------------------------------------------------------

    async def topology(self, session: AsyncSession | None = None) -> Topology:
        if session is not None and self._provisional is not None:
            return self._provisional
        cached = self._topology
        if cached is not None and not self._maybe_stale:
            return cached
        if session is not None:  # inside a write: read with it (its own changes included)
            return await self._load_or_check(session)
        # One load or check at a time: thousands of callers arriving while the cache is
        # being filled wait for it rather than each reading the whole topology.
        async with self._loading:
            cached = self._topology
            if cached is not None and not self._maybe_stale:
                return cached
            async with self.db.read() as s:
                return await self._load_or_check(s)

    async def _load_or_check(self, session: AsyncSession) -> Topology:
        cached = self._topology
        if cached is not None:  # another process wrote: is the cache still the store's?
            self._maybe_stale = False
            if await repo.generation(session, "topology") == self._topology_count:
                return cached
            self.invalidate()
        generation = self._topology_generation
        count = await repo.generation(session, "topology")
        parts = {p.id: p for p in await repo.participants(session)}
        cps = {c.id: c for c in await repo.connection_points(session)}
        res = {r.id: r for r in await repo.resources(session)}
        loaded = Topology(parts, cps, res)
        # A write that committed (and invalidated) while this was read may be missing from
        # it: keep it only if nothing was invalidated meanwhile, or a stale topology would
        # outlive the write (a new LDC "not found" right after it was registered).
        if generation == self._topology_generation:
            self._topology, self._topology_count = loaded, count
        return loaded

    def added_resources(self, resources: Sequence[Resource]) -> None:
        """Inside a topology write (its count already taken): these DERs were added. If the
        cache was the store's just before this write, the write's recompute and the cache
        after it take them in place; otherwise the topology is read again. (A registration of
        100,000 DERs in batches read every DER stored so far, twice per batch.)"""
        self._in_place(lambda topo: topo.with_resources(resources))

    def flags_changed(self, flags: dict[str, bool]) -> None:
        """Inside a topology write: these DERs' online flags changed (as added_resources).
        A device flipping between reachable and not reloaded all 100,000 DERs inside the
        write, seconds each, while every other write waited."""
        self._in_place(lambda topo: topo.with_online(flags))

    def unchanged(self) -> None:
        """Inside a topology write that changed nothing after all: the cache stays the
        store's (its count moved on; without this the next reader re-read every DER)."""
        self._in_place(lambda topo: topo)

    def _in_place(self, change: Callable[[Topology], Topology]) -> None:
        cached = self._provisional or self._topology
        # (the count, not the event log's hints, says whether anybody else wrote between)
        if cached is not None and self.last_topology_count == self._topology_count + 1:
            self._provisional = change(cached)
        else:
            self.invalidate()

    def others_changed_topology(self) -> None:
        """The event log says the topology changed (maybe by another process): check the
        store's count before the cached topology is used again."""
        self._maybe_stale = True

    def invalidate(self) -> None:
        self._topology = None
        self._topology_generation += 1

    def forget_control(self, resource_id: str) -> None:
        if self._versions is not None:
            self._versions.pop(resource_id, None)

    # -- the recompute ---------------------------------------------------------------------

    async def recompute(self, session: AsyncSession, ldc_ids: Iterable[str],
                        now: datetime | None = None) -> list[str]:
        """Recompute the LDC trees touched; store what changed; announce it. Same transaction."""
        now = now or utcnow()
        # One recompute at a time across processes (each reads the live instructions and
        # writes the controls: two at once would each miss the other's instruction).
        await repo.lock(session, "coordination")
        self._maybe_stale = True  # (under the lock: see every committed topology change)
        topo = await self.topology(session)
        scope = topo.component(ldc_ids)
        if not scope:
            return []
        live = await repo.instructions(session, live_at=now)
        result = self.coordinator.coordinate(topo, live, now=now, scope=scope,
                                             refusals=await repo.refusals(session))
        count = await repo.generation(session, "controls")
        if self._versions is None or count != self._controls_count:
            self._versions = await repo.control_versions(session)
            self._controls_count = count
        changed = []
        memo: dict[tuple[int, int, int], tuple[str, dict[str, Any]]] = {}
        for control in result.controls.values():
            version, body = repo.control_version(control, memo)
            if self._versions.get(control.resource_id) != version:
                changed.append((control, version, body))
        await repo.put_controls(session, changed, now)
        if changed:
            self._pending_controls_count = await repo.bump_generation(session, "controls")
        events: list[tuple[str, dict[str, Any]]] = [
            (Topic.EFFECTIVE_CONTROL_CHANGED,
             {"resource_id": c.resource_id,
              "protocol": topo.resources[c.resource_id].binding.protocol})
            for c, _, _ in changed]
        for notice_id, notice in await repo.add_notices(session, result.notices, now):
            events.append((Topic.NOTICE, {"id": notice_id, **to_json(notice)}))
        await repo.add_outbox_many(session, events)
        # These versions become true only when the caller's transaction commits (write()).
        self._pending_versions.update({c.resource_id: v for c, v, _ in changed})
        return [c.resource_id for c, _, _ in changed]
