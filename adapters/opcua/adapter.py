"""The OPC UA adapter's lifecycle: wiring, lifespan, the event-log follower and the publisher.

Three tasks run while the adapter lives:
- the follower: readings and acknowledgements become staged values (no I/O); control and
  topology changes only mark DERs dirty (`render.py`); participant changes go to the
  sessions' areas. It subscribes first and then rebuilds from the store, so no change between
  the two is lost; if it falls behind it rebuilds again;
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

from aiohttp import web

from adapters.opcua.feedback import FeedbackPublisher, OperatorActions
from adapters.opcua.model import node_ids as ids
from adapters.opcua.model.access import AreaAccess
from adapters.opcua.model.addressspace import AddressSpace
from adapters.opcua.model.aggregates import Aggregates
from adapters.opcua.model.alarms import AlarmBook, AlarmServer
from adapters.opcua.model.methods import ControlMethods
from adapters.opcua.model.sessions import AreaFollower
from adapters.opcua.model.users import UserDirectory, account_from_doc
from adapters.opcua.platform import UserRoutes, openapi
from adapters.opcua.render import ControlRenderer
from adapters.opcua.server import OpcUaServer
from adapters.opcua.settings import Settings
from adapters.opcua.state import AlarmAcks, Fleet, OperatorRecords
from gateway.adapters import AdapterContext
from gateway.bus import Event, Topic
from gateway.jsonform import ack_from_json, reading_from_json

log = logging.getLogger(__name__)

_BUS_QUEUE = 100_000  # 10 s of 10,000 readings/s: room for a slow flush


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

    @property
    def ready(self) -> bool:
        """The model shows the store (the listener may be up before)."""
        return self._ready.is_set()

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        for user in self.settings.users:  # hashing happens here, not in create_adapter
            self.users.add(account_from_doc(user.model_dump(exclude_none=True)), fixed=True)
        await self.operators.load()
        server, iserver = await self.server.build()
        space = AddressSpace(server, self.server.ns)
        iserver.access = AreaAccess(self.ctx.gateway, space)  # before any client connects
        areas = AreaFollower(self.ctx.gateway, iserver, self.users)
        aggregates = Aggregates()
        acks = AlarmAcks(self.ctx.records)
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
        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            Topic.READING: lambda p: feedback.reading(reading_from_json(p)),
            Topic.ACKNOWLEDGEMENT: lambda p: feedback.acknowledgement(ack_from_json(p)),
            Topic.EFFECTIVE_CONTROL_CHANGED: lambda p: renderer.control_changed(
                str(p["resource_id"])),
            Topic.RESOURCE_CHANGED: lambda p: renderer.resource_changed(str(p["resource_id"])),
            Topic.PARTICIPANT_CHANGED: lambda p: renderer.participant_changed(),
        }
        async with areas.running(), asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._follow(handlers), name="opcua-follow"),
                     group.create_task(renderer.run(), name="opcua-render"),
                     group.create_task(self._publish(), name="opcua-publish")]
            try:
                await self._ready.wait()
                async with self.server.serving():
                    yield
            finally:
                for task in tasks:
                    task.cancel()

    def _resource_of_node(self, identifier: object) -> str | None:
        if isinstance(identifier, str) and identifier.startswith("der/"):
            rid = identifier[4:]
            return rid if rid in self.fleet.resources else None
        return None

    async def _rebuild(self) -> None:
        await self.renderer.rebuild()
        await self.feedback.restore(self.settings.restore_window_s)
        await self._flush()

    async def _follow(self, handlers: dict[str, Callable[[dict[str, Any]], None]]) -> None:
        while True:
            async with self.ctx.bus.subscription(*handlers, maxsize=_BUS_QUEUE) as sub:
                await self._rebuild()
                self._ready.set()
                async for event in sub:
                    _dispatch(handlers, event)
            self.resync_count += 1
            log.warning("opcua: fell behind the event log; rebuilding from the store")

    async def _publish(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval)
            try:
                await self.renderer.rerender_due()
                await self._flush()
            except Exception:  # one bad write must not stop the server following the log
                log.exception("opcua: publishing values failed")

    async def _flush(self) -> int:
        for group, totals in self.aggregates.take_dirty().items():
            self.space.stage_group(ids.member(group, "Aggregates"), dict(totals))
        written = await self.space.flush()
        await self.alarms.publish()
        return written

    def listeners(self) -> list[str]:
        return [self.settings.listen]

    def platform_routes(self) -> list[web.AbstractRouteDef]:
        return self._routes.routes()

    def platform_openapi(self) -> dict[str, Any]:
        return openapi()


def _dispatch(handlers: dict[str, Callable[[dict[str, Any]], None]], event: Event) -> None:
    handler = handlers.get(event.topic)
    if handler is None:
        return
    try:
        handler(event.payload)
    except (KeyError, TypeError, ValueError):
        log.exception("opcua: ignored malformed %s event %s", event.topic, event.id)
