"""The OPC UA adapter's lifecycle: wiring, lifespan, the event-log follower and the publisher.

The listener opens at once and the model fills in behind it (no other adapter waits for
it); `ready` turns True once the model shows the store. Three tasks run while it lives:
- the follower (`gateway.ports.follow`): readings and acknowledgements become staged values
  (no I/O); control and topology changes only mark DERs dirty (`render.py`); participant
  changes go to the sessions' areas; delivery changes raise or clear alarms. It subscribes
  first and then rebuilds from the store, so no change between the two is lost, and rebuilds
  again whenever it fell behind or failed;
- the renderer (`ControlRenderer.run`): re-reads dirty DERs from the store in batches;
- the publisher: every `flush_interval_ms` writes the staged values and touched aggregates
  into the address space, and renders again controls whose interval began or ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from adapters.opcua.feedback import FeedbackPublisher, OperatorActions
from adapters.opcua.model import node_ids as ids
from adapters.opcua.model.access import AreaAccess
from adapters.opcua.model.addressspace import AddressSpace
from adapters.opcua.model.alarms import AlarmBook, AlarmServer
from adapters.opcua.model.methods import ControlMethods
from adapters.opcua.model.sessions import AreaFollower
from adapters.opcua.model.users import UserDirectory, account_from_doc
from adapters.opcua.platform import UserRoutes
from adapters.opcua.render import ControlRenderer
from adapters.opcua.server import OpcUaServer
from adapters.opcua.settings import Settings
from adapters.opcua.state import AlarmAcks, Fleet, OperatorRecords
from gateway.ports import (
    AcknowledgementRecorded,
    AdapterContext,
    ControlChanged,
    DeliveryChanged,
    Leases,
    ParticipantChanged,
    PlatformRoute,
    ReadingRecorded,
    RecordsChanged,
    ResourceChanged,
    Topic,
    TypedEvent,
    follow,
)

log = logging.getLogger(__name__)

LEASE = "opcua:server"  # one OPC UA server for the whole gateway
_LOG_QUEUE = 100_000  # 10 s of 10,000 readings/s: room for a slow flush
TOPICS = frozenset({Topic.READING, Topic.ACKNOWLEDGEMENT, Topic.EFFECTIVE_CONTROL_CHANGED,
                    Topic.RESOURCE_CHANGED, Topic.PARTICIPANT_CHANGED, Topic.DELIVERY_CHANGED,
                    Topic.RECORDS_CHANGED})


class OpcUaAdapter:
    def __init__(self, ctx: AdapterContext, settings: Settings) -> None:
        self.name = ctx.name
        self.ctx = ctx
        self.settings = settings
        self.users = UserDirectory()
        self.operators = OperatorRecords(ctx.records, self.users)
        self._routes = UserRoutes(ctx, self.users, self.operators)
        self.server = OpcUaServer(settings, ctx.pki.root, self.users, dev_mode=ctx.dev_mode)
        self.fleet = Fleet()
        self.resync_count = 0
        self._ready = asyncio.Event()
        self.standby = False  # another process holds the OPC UA server's lease

    @property
    def ready(self) -> bool:
        """The model shows the store (the listener may be up before); a process standing by
        for the lease is ready as it is."""
        return self.standby or self._ready.is_set()

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """One OPC UA server for the gateway: with several processes (PostgreSQL) the one
        holding the lease `opcua:server` serves, the others stand by and take over within
        the lease's time when it dies. With one process it serves at once (and a start-up
        failure stops the gateway, with its error)."""
        leases = self.ctx.leases
        if leases is None or not self.ctx.settings.is_postgres:
            async with self._serving():
                yield
            return
        self.standby = True
        task = asyncio.create_task(self._serve_while_holding(leases), name="opcua-lease")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _serve_while_holding(self, leases: Leases) -> None:
        while True:
            try:
                async with leases.holding(LEASE) as held:
                    self.standby = False
                    log.info("OPC UA: this process serves (lease %s)", LEASE)
                    async with self._serving():
                        await held.lost.wait()
                    log.warning("OPC UA: the lease was lost; this process stops serving")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("OPC UA server failed; standing by to try again")
                await asyncio.sleep(5)
            finally:
                self.standby = True
                self._ready.clear()

    @asynccontextmanager
    async def _serving(self) -> AsyncIterator[None]:
        for user in self.settings.users:  # hashing happens here, not in create_adapter
            self.users.add(account_from_doc(user.model_dump(exclude_none=True)), fixed=True)
        await self.operators.load()
        server, iserver = await self.server.build()
        space = AddressSpace(server, self.server.ns, self.fleet,
                             capacity=self.settings.cached_nodes)
        iserver.access = AreaAccess(self.ctx.gateway, space)  # before any client connects
        areas = AreaFollower(self.ctx.gateway, iserver, self.users)
        aggregates = self.fleet.aggregates
        self.acks = acks = AlarmAcks(self.ctx.records)
        await acks.load()
        self.alarms = AlarmServer(AlarmBook(), self.server.ns,
                                  lambda: iserver.subscription_service.subscriptions, acks)
        iserver.condition_methods = self.alarms.handlers()
        feedback = FeedbackPublisher(self.ctx.gateway, space, self.fleet, aggregates,
                                     self.alarms)
        renderer = ControlRenderer(self.ctx.gateway, space, self.fleet, aggregates,
                                   on_topology=areas.topology_changed,
                                   on_online=feedback.online_changed,
                                   on_dropped=feedback.dropped)
        methods = ControlMethods(OperatorActions(self.ctx.gateway), self.server.ns,
                                 self._resource_of_node)
        await space.build_base(methods.handlers())
        self.space, self.renderer, self.feedback = space, renderer, feedback
        self.aggregates = aggregates
        handlers: dict[type, Callable[[Any], None]] = {
            ReadingRecorded: lambda e: feedback.reading(e.reading),
            AcknowledgementRecorded: lambda e: feedback.acknowledgement(e.acknowledgement),
            ControlChanged: lambda e: renderer.control_changed(e.resource_id),
            ResourceChanged: lambda e: renderer.resource_changed(e.resource_id),
            ParticipantChanged: lambda e: renderer.participant_changed(),
            DeliveryChanged: lambda e: feedback.delivery_changed(e.resource_id, e.state,
                                                                 e.reason or ""),
        }

        async def on_batch(events: list[TypedEvent]) -> None:
            for event in events:
                handler = handlers.get(type(event))
                if handler is not None:
                    handler(event)
                elif isinstance(event, RecordsChanged):
                    await self._records_changed(event)

        async with areas.running(), asyncio.TaskGroup() as group:
            tasks = [group.create_task(follow(self.ctx.bus, TOPICS, on_batch=on_batch,
                                              resync=self._rebuild, name="opcua-model",
                                              maxsize=_LOG_QUEUE), name="opcua-follow"),
                     group.create_task(renderer.run(), name="opcua-render"),
                     group.create_task(self._publish(), name="opcua-publish")]
            try:
                async with self.server.serving():
                    yield
            finally:
                for task in tasks:
                    task.cancel()

    async def _records_changed(self, event: RecordsChanged) -> None:
        """Another process wrote our records (an operator provisioned through its platform
        API, an alarm acknowledged there): what this process keeps of them follows."""
        if event.adapter != self.name or event.by == self.ctx.settings.effective_process_name:
            return
        for kind, keys in event.changes.items():
            await self.operators.refresh(kind, keys)
            await self.acks.refresh(kind, keys)

    def _resource_of_node(self, identifier: object) -> str | None:
        if isinstance(identifier, str) and identifier.startswith("der/"):
            rid = identifier[4:]
            return rid if rid in self.fleet.ders else None
        return None

    async def _rebuild(self) -> None:
        """The model from the store again (first at start-up, then after any gap)."""
        if self._ready.is_set():
            self.resync_count += 1
        await self.renderer.rebuild()
        await self.feedback.restore(self.settings.restore_window_s)
        await self._flush()
        self._ready.set()

    async def _publish(self) -> None:
        loop = asyncio.get_running_loop()
        next_totals = loop.time()
        while True:
            await asyncio.sleep(self.settings.flush_interval)
            try:
                await self.renderer.rerender_due()
                totals = loop.time() >= next_totals
                if totals:  # sums over thousands of DERs: at their own, slower pace
                    next_totals = loop.time() + self.settings.aggregates_interval
                await self._flush(totals=totals)
                self.space.sweep()
            except Exception:  # one bad write must not stop the server following the log
                log.exception("opcua: publishing values failed")

    async def _flush(self, *, totals: bool = True) -> int:
        for group, sums in (self.aggregates.take_dirty() if totals else {}).items():
            self.space.stage_group(ids.member(group, "Aggregates"), sums)
        written = await self.space.flush()
        await self.alarms.publish()
        return written

    def listeners(self) -> list[str]:
        return [self.settings.listen]

    def platform_routes(self) -> list[PlatformRoute]:
        return self._routes.routes()
