"""The adapter object the core loads: wiring, lifespan (the guarded TLS listener, the event-log
follower, the periodic refresh and the reach watch) and platform routes."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

from adapters.ieee2030_5.feedback import Feedback
from adapters.ieee2030_5.function_sets import programs
from adapters.ieee2030_5.function_sets.end_devices import EndDeviceRegistry
from adapters.ieee2030_5.function_sets.listener import GuardedListener, Limits
from adapters.ieee2030_5.function_sets.pubsub import Notifier
from adapters.ieee2030_5.function_sets.reach import ReachTracker
from adapters.ieee2030_5.function_sets.scope import identity_of
from adapters.ieee2030_5.function_sets.tree import ControlSource, ResourceTree
from adapters.ieee2030_5.platform import PlatformRoutes
from adapters.ieee2030_5.render import ControlPublisher, PublishOptions, Renderer
from adapters.ieee2030_5.server import Parts, create_app
from adapters.ieee2030_5.settings import NotificationTls, Settings
from adapters.ieee2030_5.state import AdapterState
from gateway.ports import (
    AdapterContext,
    ControlChanged,
    GatewayPort,
    PlatformRoute,
    RecordsChanged,
    RecordsPort,
    ResourceChanged,
    Topic,
    TypedEvent,
    follow,
)
from pki.devpki import DevPki
from pki.tls import client_context, ieee2030_5_server_context

log = logging.getLogger(__name__)
TLS_NAME = "ieee2030_5"  # the notification client's TLS context, as deliveries name it
TOPICS = {Topic.EFFECTIVE_CONTROL_CHANGED, Topic.RESOURCE_CHANGED}
FLUSH_S = 1.0  # fetches are told to the core this often, off the requests' path


def assemble(name: str, gateway: GatewayPort, records: RecordsPort, settings: Settings, *,
             pen: int, horizon_s: int, check_url: Callable[[str], Awaitable[None]]) -> Parts:
    """The adapter's function sets, wired (no I/O): what the routes call."""
    state = AdapterState(records)
    registry = EndDeviceRegistry(gateway, state, settings, name)
    notifier = Notifier(state, TLS_NAME, check_url)
    publisher = ControlPublisher(gateway, state, PublishOptions(
        pen=pen, horizon_s=horizon_s, protocol=name, dispatch_as=settings.dispatch_as))
    layout = programs.parse(settings.programs) if settings.programs else \
        programs.single(settings.primacy)
    tree = ResourceTree(registry, state, ControlSource(publisher.published, publisher.effective),
                        layout, pen)
    renderer = Renderer(gateway, state, registry, tree, notifier, publisher, name)
    feedback = Feedback(gateway, state, registry, name, settings.responses_kept,
                        publisher.published)
    reach = ReachTracker(gateway, registry, notifier, publisher.published,
                         lambda: float(tree.poll_rate("DERProgramList")), settings.missed_polls)
    return Parts(settings, state, registry, tree, renderer, notifier, feedback, reach)


async def load(parts: Parts) -> None:
    """Read the adapter's records (EndDevices, client access, subscriptions, settings)."""
    await parts.registry.load()
    await parts.notifier.load()
    await parts.tree.load()


RELOADED = frozenset({"client", "settings", "program"})  # read whole by load()


async def refresh(parts: Parts, changes: dict[str, set[str] | None]) -> None:
    """Bring the in-memory view up to records another process changed (kind -> keys,
    None: any): published controls by DER, MirrorUsagePoints, the rest by a reload."""
    if "derc" in changes:
        keys = changes["derc"]
        parts.renderer.publisher.forget(keys if keys is not None else
                                        [r.resource_id for r in parts.registry.all_records()
                                         if r.resource_id])
        parts.renderer.invalidate(None if keys is None else
                                  [r.id for k in keys
                                   if (r := parts.registry.by_resource(k)) is not None])
    if "mup" in changes:
        mups = changes["mup"]
        if mups is None:
            parts.feedback.forget_mups()
        else:
            await parts.feedback.reread_mups(mups)
    if "rsp" in changes:
        responses = changes["rsp"]
        if responses is None:
            parts.feedback.forget_responses()
        else:
            await parts.feedback.reread_responses(responses)
    edev_keys = changes.get("edev", set())
    sub_keys = changes.get("sub", set())
    if RELOADED & set(changes) or edev_keys is None or sub_keys is None:
        await load(parts)
        parts.renderer.invalidate()
        return
    if edev_keys:  # a few EndDevices by key, not a reload of every one
        edev_ids = [int(k) for k in edev_keys]
        await parts.registry.reread(edev_ids)
        parts.renderer.invalidate(edev_ids)
    if sub_keys:  # (and Subscriptions: a fleet subscribing at another process)
        await parts.notifier.reread(sub_keys)


class Ieee2030Adapter:
    def __init__(self, ctx: AdapterContext) -> None:
        self.ctx = ctx
        self.name = ctx.name
        self.settings = Settings.from_config(ctx.config)
        self.parts = assemble(ctx.name, ctx.gateway, ctx.records, self.settings,
                              pen=ctx.settings.iana_pen, horizon_s=ctx.settings.horizon_s,
                              check_url=ctx.outbound.check)
        self.bound_port: int | None = None

    def listeners(self) -> list[str]:
        return [self.settings.listen]

    def platform_routes(self) -> list[PlatformRoute]:
        p = self.parts
        return PlatformRoutes(self.name, self.ctx.gateway, self.ctx.body, p.registry, p.tree,
                              p.renderer, p.state).routes()

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        pki, s = self.ctx.pki, self.settings
        tls = ieee2030_5_server_context(pki.path("ieee2030_5", "server-chain.pem"),
                                        pki.path("ieee2030_5", "server.key"),
                                        pki.path("ieee2030_5", "ca-chain.pem"))
        self.ctx.deliveries.register_tls(TLS_NAME, self._notification_context())
        self.ctx.deliveries.on_outcomes(self.parts.reach.on_outcomes)
        await load(self.parts)
        host, port = s.host_port
        listener = GuardedListener(
            create_app(self.parts, s.max_body_bytes,
                       middlewares=[self.ctx.metrics.http_middleware(self.name)]), tls,
            Limits(s.handshake_timeout_s, s.header_timeout_s, s.max_connections,
                   s.max_connections_per_client),
            client_of, keepalive_timeout_s=s.keepalive_timeout_s)
        self.listener = listener
        self.bound_port = await listener.start(host, port, reuse_port=self.ctx.reuse_port)
        tasks = [
            asyncio.create_task(follow(self.ctx.bus, {Topic.RECORDS_CHANGED},
                                       on_batch=self._on_records, resync=self.reload,
                                       name=f"{self.name}-records"),
                                name=f"{self.name}-records"),
            asyncio.create_task(self._render_role(), name=f"{self.name}-render"),
            asyncio.create_task(self._every(lambda: FLUSH_S, self.parts.reach.flush,
                                            "telling the core of fetches"),
                                name=f"{self.name}-fetches"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError):
                    await task
            await listener.close()

    async def _render_role(self) -> None:
        """Rendering writes every DER's controls and notifications: one process does it
        (the holder of the lease `<name>:render`; with one process, this one), following
        the event log, refreshing periodically and watching reach. Should the lease be lost,
        the work stops and the process queues for it again."""
        while True:
            async with self._render_lease() as lost:
                renderer = self.parts.renderer
                work = [
                    asyncio.create_task(follow(self.ctx.bus, TOPICS, on_batch=self._on_events,
                                               resync=renderer.refresh_all,
                                               name=f"{self.name}-controls")),
                    asyncio.create_task(self._every(self._refresh_period, renderer.refresh_all,
                                                    "periodic refresh of 2030.5 controls")),
                    asyncio.create_task(self._every(self._watch_period, self.parts.reach.check,
                                                    "2030.5 reach watch")),
                ]
                try:
                    await lost.wait()
                    log.warning("%s: the render lease was lost; waiting to hold it again",
                                self.name)
                finally:
                    for task in work:
                        task.cancel()
                    for task in work:
                        with suppress(asyncio.CancelledError):
                            await task

    @asynccontextmanager
    async def _render_lease(self) -> AsyncIterator[asyncio.Event]:
        """Holds `<name>:render`; yields the event set if it is lost (never, without leases)."""
        registry = self.parts.registry
        if self.ctx.leases is None:  # (a hand-built context: one process)
            yield asyncio.Event()
            return
        registry.renders = False
        async with self.ctx.leases.holding(f"{self.name}:render") as held:
            registry.renders = True
            try:
                yield held.lost
            finally:
                registry.renders = False

    async def reload(self) -> None:
        """Re-read what another gateway process may have changed - EndDevices, client
        access, Subscriptions, rates and program settings - and render documents afresh
        (after falling behind the event log)."""
        await load(self.parts)
        self.parts.renderer.invalidate()

    async def _on_records(self, events: list[TypedEvent]) -> None:
        """Another process wrote this adapter's records (several processes on PostgreSQL):
        refresh what is kept in memory of them."""
        me = self.ctx.settings.effective_process_name
        changes: dict[str, set[str] | None] = {}
        for e in events:
            if not isinstance(e, RecordsChanged) or e.adapter != self.name or e.by == me:
                continue
            for kind, keys in e.changes.items():
                known = changes.get(kind, set())
                changes[kind] = None if keys is None or known is None else known | set(keys)
        if changes:
            await refresh(self.parts, changes)

    async def _on_events(self, events: list[TypedEvent]) -> None:
        """Re-render the DERs whose effective control or registration changed (one batch);
        a change of only the online flag (this adapter's own marks among them) changes
        nothing a client sees."""
        ids = [e.resource_id for e in events
               if isinstance(e, ControlChanged | ResourceChanged)
               and e.protocol in (None, self.name)
               and not (isinstance(e, ResourceChanged) and e.online is not None
                        and not e.deleted)]
        moved = [e.resource_id for e in events if isinstance(e, ResourceChanged)
                 and e.protocol not in (None, self.name)
                 and self.parts.registry.by_resource(e.resource_id) is not None]
        await self.parts.renderer.on_controls_changed(dict.fromkeys(ids + moved))

    def _refresh_period(self) -> float:
        return self.settings.refresh_s

    def _watch_period(self) -> float:
        """Check reach a few times per poll interval, at least once a minute."""
        return max(1.0, min(60.0, self.parts.tree.poll_rate("DERProgramList") / 2))

    @staticmethod
    async def _every(period: Callable[[], float], work: Callable[[], Awaitable[None]],
                     what: str) -> None:
        """Run `work` every `period()` seconds; the period is read again each second (a
        pollRate the platform shortens takes effect at once)."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, period()))
            if time.monotonic() - last < period():
                continue
            last = time.monotonic()
            try:
                await work()
            except Exception:  # the next round tries again
                log.exception("%s failed", what)

    def _notification_context(self) -> ssl.SSLContext:
        """The TLS client context notifications go out with (see NotificationTls)."""
        tls: NotificationTls = self.settings.notification_tls
        root = self.ctx.pki.root
        if self.ctx.dev_mode and not (root / tls.cert_chain).exists():
            DevPki(root).issue_2030_5_notifier()  # a dev PKI made before the notifier existed
        context = client_context(root / tls.trust_chain, root / tls.cert_chain, root / tls.key,
                                 ieee2030_5=True)
        context.check_hostname = tls.check_hostname
        return context


def client_of(transport: asyncio.BaseTransport) -> str | None:
    """The LFDI of a connection's client certificate (None: none presented)."""
    identity = identity_of(transport)  # (the same per-connection identity the routes use)
    return identity.lfdi if identity else None


def create(ctx: AdapterContext) -> Ieee2030Adapter:
    return Ieee2030Adapter(ctx)
