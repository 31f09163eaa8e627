"""The gateway process: store, bus, outbox relay, deliveries, platform API, adapters.

Everything is entered as a stacked async context and left in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway import heap
from gateway.adapters import Adapter, AdapterContext, InstalledAdapter, PkiPaths, discover
from gateway.api.app import make_platform_app
from gateway.background import background
from gateway.bindings import BindingRules
from gateway.body import BodyReader
from gateway.bus import Event, InProcessBus
from gateway.coordination.engine import Coordinator
from gateway.delivery import DeliveryQueue
from gateway.domain import Participant, Role
from gateway.leases import Leases
from gateway.metrics import GatewayMetrics
from gateway.outbound import OutboundGuard
from gateway.outbox import OutboxHistory, OutboxRelay
from gateway.ports import (
    Access,
    DeliveryChanged,
    PlatformRoute,
    Topic,
    TypedEvent,
    follow,
)
from gateway.records import AdapterRecords
from gateway.retention import Retention
from gateway.services import GatewayServices
from gateway.settings import Settings
from gateway.store.deliveries import PROCESS_LEASES
from gateway.store.engine import Database
from pki.devpki import DevPki, load_pair
from pki.identity import sha256_hex
from pki.tls import server_context

log = logging.getLogger(__name__)
ADMIN_ID = "admin"


@dataclass
class Gateway:
    settings: Settings
    db: Database
    bus: InProcessBus
    services: GatewayServices
    relay: OutboxRelay
    deliveries: DeliveryQueue
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    adapters: dict[str, Adapter] = field(default_factory=dict)
    listeners: dict[str, list[str]] = field(default_factory=dict)
    ready: bool = False  # every adapter has started
    starting: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    platform_app: web.Application | None = None  # (its route table: the authorisation test)
    leases: Leases | None = None

    def readiness(self) -> dict[str, str]:
        """Each adapter's state: "ready" once its lifespan started and it says it is ready
        (an adapter may fill in behind an open listener: its optional `ready` flag),
        "starting" before, "failed" if its start failed."""
        states: dict[str, str] = {}
        for name, adapter in self.adapters.items():
            future = self.starting.get(name)
            if future is None or not future.done():
                states[name] = "starting"
            elif future.cancelled() or future.exception() is not None:
                states[name] = "failed"
            else:
                states[name] = "ready" if getattr(adapter, "ready", True) else "starting"
        return states

    async def status(self) -> dict[str, Any]:
        topo = await self.services.topology()
        controls = await self.services.effective_controls()
        counts = await self.services.counts()
        by_protocol: dict[str, int] = {}
        for res in topo.resources.values():
            protocol = str(res.binding.protocol)
            by_protocol[protocol] = by_protocol.get(protocol, 0) + 1
        return {
            "ready": self.ready,
            "listeners": self.listeners,
            "ders": {"total": len(topo.resources), "by_protocol": by_protocol,
                     "online": sum(1 for r in topo.resources.values() if r.online)},
            "effective_controls": {"ders_with_intervals": sum(1 for c in controls.values()
                                                              if c.intervals)},
            "acknowledgements": counts["acknowledgements"],
            "readings": counts["readings"],
            "outbox_pending": counts["outbox_pending"],
            "deliveries": await self.deliveries.stats(),
        }


async def ensure_admin(services: GatewayServices, settings: Settings) -> None:
    """The platform operator's participant, bound to the dev admin certificate if there is one."""
    admin_cert = settings.pki_dir / "platform/clients/admin.pem"
    fingerprint = sha256_hex(load_pair(admin_cert)[0]) if admin_cert.exists() else None
    await services.ensure_participant(Participant(ADMIN_ID, Role.ADMIN, "platform operator",
                                                  cert_sha256=fingerprint))


@asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """Start everything; yield the running gateway; stop everything in reverse order."""
    if settings.dev_mode and not DevPki(settings.pki_dir).exists:
        log.info("generating the dev PKI under %s", settings.pki_dir)
        DevPki(settings.pki_dir).init()
    db = Database(settings.effective_database_url)
    await db.upgrade()
    bus = InProcessBus(history=OutboxHistory(db))
    relay = OutboxRelay(db, bus, name=settings.effective_process_name)
    coordinator = Coordinator.from_names(settings.group_cap_rule, settings.disaggregation_rule)
    installed = discover()
    services = GatewayServices(db, coordinator, on_commit=relay.wake, bindings=BindingRules(
        {name: a.address_key for name, a in installed.items()}))
    guard = OutboundGuard.from_settings(dev_mode=settings.dev_mode,
                                        allow=settings.outbound_allow)
    deliveries = DeliveryQueue(db, guard=guard)
    leases = Leases(db, f"{settings.effective_process_name}#{os.getpid()}")
    deliveries.worker_id = leases.holder  # (its claims live while this process's lease does)
    gw = Gateway(settings, db, bus, services, relay, deliveries, leases=leases)
    await ensure_admin(services, settings)
    gw.metrics.watch_database(db)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(db.close)
        # Adapters are built (no I/O; their settings checked) before anything runs, so that
        # a settings mistake stops the start before there is anything to stop.
        adapter_routes = _build_adapters(gw, installed, guard)
        await stack.enter_async_context(gw.metrics.measuring_loop_lag())
        # This process is alive while it renews this lease: others take over its claimed
        # deliveries as soon as it lapses.
        await stack.enter_async_context(leases.holding(f"{PROCESS_LEASES}{leases.holder}"))
        await stack.enter_async_context(relay.running())
        stack.enter_context(_marking_topology(bus, services))
        await stack.enter_async_context(_following_delivery_states(bus, services))
        await stack.enter_async_context(deliveries.running())
        await stack.enter_async_context(Retention(db, settings.retention).running())
        guard.add_own_listeners([settings.platform_listen,
                                 *(u for a in gw.adapters.values() for u in a.listeners())])
        platform = gw.platform_app = make_platform_app(services, bus, db, status=gw.status,
                                     ready=gw.readiness,
                                     max_body_bytes=settings.max_body_bytes,
                                     adapter_routes=adapter_routes, metrics=gw.metrics,
                                     listeners=lambda: gw.listeners,
                                     metrics_allow_loopback=settings.metrics_allow_loopback)
        await stack.enter_async_context(_serve_platform(platform, settings))
        gw.listeners["platform"] = [settings.platform_listen]
        await stack.enter_async_context(_run_adapters(gw))
        gw.ready = True
        yield gw
        log.info("shutting down")


def _following(bus: InProcessBus, topics: set[Topic],
               on_batch: Callable[[list[TypedEvent]], Awaitable[None]],
               resync: Callable[[], Awaitable[None]], name: str
               ) -> AbstractAsyncContextManager[None]:
    """Follow these topics of the event log (maybe written by other processes) while the
    gateway runs."""
    return background(follow(bus, topics, on_batch=on_batch, resync=resync, name=name),
                      name.replace(" ", "-"))


@contextmanager
def _marking_topology(bus: InProcessBus, services: GatewayServices) -> Iterator[None]:
    """Another process may change the topology: its events make this one check its cache
    (one small read, the next time the topology is needed), marked as each event is
    published so that no follower of the same event reads the cache unmarked. Online marks
    do not: they change no structure, and a recompute checks the store's count under its
    lock anyway - thousands of them arrive in a fan-out."""
    def stale(event: Event) -> None:
        if event.topic != Topic.RESOURCE_CHANGED or event.payload.get("online") is None:
            services.uow.others_changed_topology()

    with bus.tapped({Topic.RESOURCE_CHANGED, Topic.PARTICIPANT_CHANGED,
                     Topic.TOPOLOGY_CHANGED}, stale):
        yield


def _following_delivery_states(bus: InProcessBus, services: GatewayServices
                               ) -> AbstractAsyncContextManager[None]:
    """Delivery states another process wrote: a mark this process would skip as a repeat
    of what it last wrote is written again if the store has since been told otherwise."""
    states = services.feedback.delivery

    async def heard(events: list[TypedEvent]) -> None:
        states.heard((e.resource_id, e.state, e.reason or "") for e in events
                     if isinstance(e, DeliveryChanged))

    async def resync() -> None:
        states.forget_all()

    return _following(bus, {Topic.DELIVERY_CHANGED}, heard, resync, "delivery states")


@asynccontextmanager
async def _run_adapters(gw: Gateway) -> AsyncIterator[None]:
    """Start every adapter at once, each in its own task, so that no listener waits for
    another adapter's start-up; leave them all on exit. An adapter that fails to start
    stops the gateway (with its error), rather than leaving a half-served fleet."""
    stop = asyncio.Event()
    started: dict[str, asyncio.Future[None]] = {}
    tasks: list[asyncio.Task[None]] = []

    async def hold(name: str, adapter: Adapter, ready: asyncio.Future[None]) -> None:
        try:
            async with adapter.lifespan():
                gw.listeners[name] = adapter.listeners()
                log.info("adapter %s started: %s", name, ", ".join(gw.listeners[name]) or "-")
                ready.set_result(None)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    loop = asyncio.get_running_loop()
    for name, adapter in gw.adapters.items():
        started[name] = loop.create_future()
        gw.starting[name] = started[name]
        tasks.append(asyncio.create_task(hold(name, adapter, started[name]),
                                         name=f"adapter-{name}"))
    try:
        await asyncio.gather(*started.values())
        yield
    finally:
        stop.set()
        for task in reversed(tasks):  # (each leaves its lifespan; a failed one is reported)
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("adapter %s failed while stopping", task.get_name())


def _build_adapters(gw: Gateway, installed: dict[str, InstalledAdapter],
                    guard: OutboundGuard) -> dict[str, list[PlatformRoute]]:
    routes: dict[str, list[PlatformRoute]] = {}
    body = BodyReader(max_bytes=gw.settings.max_body_bytes)
    for name, entry in sorted(installed.items()):
        config = gw.settings.adapter_config(name)
        if not config.get("enabled", True):
            log.info("adapter %s disabled by settings", name)
            continue
        ctx = AdapterContext(name=name, settings=gw.settings, config=config,
                             gateway=gw.services, bus=gw.bus,
                             deliveries=gw.deliveries.for_adapter(name),
                             records=AdapterRecords(
                                 gw.db, name, on_deliveries=gw.deliveries.wake,
                                 announce_as=(gw.settings.effective_process_name
                                              if gw.settings.is_postgres else None),
                                 on_commit=gw.relay.wake),
                             pki=PkiPaths(gw.settings.pki_dir), outbound=guard, body=body,
                             metrics=gw.metrics, leases=gw.leases)
        adapter = entry.create(ctx)
        gw.adapters[name] = adapter
        if hasattr(adapter, "platform_routes"):
            routes[name] = [_platform_route(name, r) for r in adapter.platform_routes()]
    return routes


def _platform_route(adapter: str, route: object) -> PlatformRoute:
    """An adapter's route as the core mounts it. (A bare aiohttp route from an adapter not
    yet on the seam keeps its own checks, behind authentication, until it declares Access.)"""
    if isinstance(route, PlatformRoute):
        return route
    assert isinstance(route, web.RouteDef), f"{adapter}: not a platform route: {route!r}"
    log.warning("adapter %s: route %s %s declares no Access", adapter, route.method,
                route.path)
    return PlatformRoute(route.method, route.path, route.handler,
                         f"{adapter} route", Access(frozenset(Role)))


@asynccontextmanager
async def _serve_platform(app: web.Application, settings: Settings) -> AsyncIterator[None]:
    pki = settings.pki_dir / "platform"
    ssl_ctx = server_context(pki / "server.pem", pki / "server.key", pki / "ca.pem",
                             require_client_cert=False)  # bearer tokens need no certificate
    host, port = settings.platform_host_port
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx,
                       reuse_port=settings.reuse_port or None)
    await site.start()
    log.info("platform API on %s", settings.platform_listen)
    try:
        yield
    finally:
        await runner.cleanup()


async def serve_forever(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_gateway(settings) as gw:
        heap.configure()  # start-up's state (asyncua's standard nodes...) stays for good
        print(_banner(gw), flush=True)
        await stop.wait()


def _banner(gw: Gateway) -> str:
    lines = ["der-gateway is running:"]
    for name, urls in gw.listeners.items():
        lines += [f"  {name:<12} {url}" for url in urls] or [f"  {name:<12} (no listener)"]
    lines.append(f"  database     {gw.settings.effective_database_url}")
    lines.append(f"  certificates {gw.settings.pki_dir}/ (admin client: "
                 f"{gw.settings.pki_dir}/platform/clients/admin.pem)")
    lines.append("Stop with Ctrl-C (SIGINT) or SIGTERM.")
    return "\n".join(lines)
