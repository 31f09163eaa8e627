"""The OpenADR 3 adapter: wires the layers together and runs the VTN listener.

With several gateway processes on one database (docs/deployment.md) each runs this adapter:
every one serves VTN requests (the listener shares the port) and follows the event log's
`records.changed` to keep its caches true (objects, credentials, tokens, acknowledgements);
one renders controls into events (lease `<name>:render`, which also sweeps expired tokens)
and one publishes to the MQTT broker (lease `<name>:mqtt`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from adapters.openadr3.feedback import ACK, Feedback
from adapters.openadr3.platform import CredentialRoutes
from adapters.openadr3.render import Renderer
from adapters.openadr3.server import ProblemAppRunner, VtnServer
from adapters.openadr3.settings import Settings
from adapters.openadr3.state import OBJECT_KINDS, ObjectStore
from adapters.openadr3.vtn.auth import CREDENTIAL, ISSUED, Credentials
from adapters.openadr3.vtn.instructions import BlInstructions
from adapters.openadr3.vtn.mqtt import OUTBOX, BrokerAccess, MqttPublisher
from adapters.openadr3.vtn.notifier import Notifier
from adapters.openadr3.vtn.notifiers import MqttNotifierRoutes
from adapters.openadr3.vtn.ownership import Ownership
from adapters.openadr3.vtn.service import VtnService
from adapters.openadr3.vtn.throttle import TokenThrottle
from gateway.ports import (
    AdapterContext,
    ControlChanged,
    PlatformRoute,
    RecordsChanged,
    ResourceChanged,
    Topic,
    TypedEvent,
    follow,
)
from pki.tls import server_context

log = logging.getLogger(__name__)

WEBHOOK_TLS = "openadr3-webhooks"
RENDER_BATCH = 500  # DERs rendered per batch (one write of their events)
SWEEP_S = 600.0  # expired tokens' records are deleted this often (by the render lease holder)


class OpenAdr3Adapter:
    """VTN for OpenADR 3.1.0 and 3.0.1 on its own TLS listener."""

    def __init__(self, ctx: AdapterContext, settings: Settings) -> None:
        self.ctx = ctx
        self.name = ctx.name
        self.settings = settings
        self.store = ObjectStore(ctx.records)
        self.credentials = Credentials(ctx.records, settings.token_ttl_s)
        ownership = Ownership(self.store, self.credentials)
        self.service = VtnService(self.store, ownership, hooks=[])
        self.service.max_reports = settings.max_reports_per_ven
        self.service.max_subscriptions = settings.max_subscriptions_per_ven
        self.renderer = Renderer(self.service, ctx.gateway, self.name)
        self.renderer.renders = ctx.leases is None  # (else: while holding the render lease)
        mqtt = settings.mqtt()  # None: MQTT off (no broker configured)
        publishing = asyncio.Event()  # set while holding the MQTT lease
        if ctx.leases is None:
            publishing.set()
        self.publisher = MqttPublisher(mqtt, ctx.records, publishing) if mqtt else None
        self.broker = BrokerAccess(self.publisher) if self.publisher else None
        notifier = Notifier(
            self.service,
            ctx.outbound,
            WEBHOOK_TLS if settings.webhook_ca_file else None,
            self.publisher,
        )
        self.service.announcer = notifier
        self.feedback = Feedback(self.service, ctx.gateway, ctx.records, self.name)
        self.service.hooks.extend([
            notifier,
            BlInstructions(self.service, ctx.gateway),
            self.renderer,
            self.feedback,
        ])
        self.listen = settings.listen
        self.server = VtnServer(
            self.service,
            self.credentials,
            settings.origin,
            ctx.settings.max_body_bytes,
            TokenThrottle(settings.throttle()),
            ctx.body,
            MqttNotifierRoutes(mqtt, self.broker, self.service)
            if mqtt and self.broker else None,
            (ctx.metrics.http_middleware(ctx.name),),
        )
        self.platform = CredentialRoutes(self.credentials, self.service, self.renderer, ctx.body)
        self.platform.on_revoked.append(self._revoked)
        self.server.fetched = self.renderer.fetched
        self.port: int | None = None  # the bound port, once listening
        # VENs whose DERs the render lease holder renders again (another process wrote
        # their ven object or credential).
        self._vens_to_render: set[str] = set()
        self._render_wanted = asyncio.Event()

    def _register_webhook_tls(self) -> None:
        """The CAs in `webhook_ca_file` only (not the system's), host names checked."""
        if self.settings.webhook_ca_file:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=self.settings.webhook_ca_file
            )
            self.ctx.deliveries.register_tls(WEBHOOK_TLS, context)

    async def _revoked(self, client_id: str, cred: dict[str, Any], whole: bool) -> None:
        """A revoked VEN's DERs are rendered again (so the platform learns they cannot be
        reached); its broker login goes with its tokens."""
        if self.broker is not None:
            try:
                await self.broker.revoke(client_id)
            except (OSError, TimeoutError, RuntimeError, ConnectionError) as exc:
                log.warning("broker login of %s not removed: %s", client_id, exc)
        if whole and cred.get("role") == "ven" and cred.get("ven_name"):
            await self.renderer.render_ven(str(cred["ven_name"]))

    def listeners(self) -> list[str]:
        return [self.listen]

    def platform_routes(self) -> list[PlatformRoute]:
        return self.platform.routes()

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        self._register_webhook_tls()
        self.ctx.deliveries.on_outcomes(self.renderer.on_outcomes)
        await self.reload()
        await self.store.align_sequence()
        runner = ProblemAppRunner(
            self.server.app(),
            access_log=None,
            shutdown_timeout=5.0,  # in-flight requests get this long at shutdown
            max_line_size=self.settings.max_line_size,
            max_field_size=self.settings.max_field_size,
        )
        await runner.setup()
        try:
            host, port = _host_port(self.listen)
            pki = self.ctx.pki
            tls = server_context(
                pki.path("platform", "server.pem"), pki.path("platform", "server.key"), None
            )
            # Several processes of one gateway share the port (the kernel spreads the
            # connections over them): SO_REUSEPORT when the core says so.
            site = web.TCPSite(runner, host, port, ssl_context=tls,
                               reuse_port=self.ctx.reuse_port or None)
            await site.start()
            self.port = _bound_port(site)
            log.info("OpenADR 3 VTN listening on %s (port %s)", self.listen, self.port)
            tasks = [
                _task(follow(self.ctx.bus, {Topic.RECORDS_CHANGED}, on_batch=self._on_records,
                             resync=self.reload, name=f"{self.name}-records"),
                      f"{self.name}-records"),
                _task(self._render_role(), f"{self.name}-render"),
            ]
            if self.publisher is not None:
                tasks += [_task(self.publisher.run(), f"{self.name}-mqtt"),
                          _task(self._mqtt_role(), f"{self.name}-mqtt-lease")]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await runner.cleanup()

    async def reload(self) -> None:
        """Read the adapter's records afresh: at start-up, and when the follower of the
        event log fell behind (another process's changes may have been missed)."""
        await self.store.load()
        await self.credentials.load()
        await self.feedback.load()

    async def _on_records(self, events: list[TypedEvent]) -> None:
        """Another process wrote this adapter's records: refresh what is kept in memory of
        them; the render lease holder renders again the DERs of VENs whose ven object or
        credential changed (what that process left to it)."""
        me = self.ctx.settings.effective_process_name
        changes: dict[str, tuple[str, ...] | None] = {}
        for e in events:
            if not isinstance(e, RecordsChanged) or e.adapter != self.name or e.by == me:
                continue
            for kind, keys in e.changes.items():
                known = changes.get(kind, ())
                changes[kind] = None if keys is None or known is None else (*known, *keys)
        vens: set[str] = set()
        for kind, keys in changes.items():
            unique = None if keys is None else tuple(dict.fromkeys(keys))
            if kind in OBJECT_KINDS:
                found = await self.store.refresh(kind, unique)
                vens.update(str(o.body.get("venName")) for o in found if o.kind == "ven")
            elif kind in (CREDENTIAL, ISSUED):
                creds = await self.credentials.refresh(kind, unique)
                vens.update(str(c["ven_name"]) for c in creds
                            if c.get("role") == "ven" and c.get("ven_name"))
            elif kind == ACK:
                if unique is None:
                    await self.feedback.load()
                else:
                    self.feedback.forget(unique)
            elif kind == OUTBOX and self.publisher is not None:
                self.publisher.wake()
        if vens and self.renderer.renders:
            self._vens_to_render |= vens
            self._render_wanted.set()

    # -- work one process does -------------------------------------------------------------

    @asynccontextmanager
    async def _lease(self, name: str) -> AsyncIterator[asyncio.Event]:
        """Hold lease `name`; yields the event set if it is lost (never, without leases)."""
        if self.ctx.leases is None:  # (a hand-built context: one process)
            yield asyncio.Event()
            return
        async with self.ctx.leases.holding(name) as held:
            yield held.lost

    async def _render_role(self) -> None:
        """Rendering controls into events (and their webhooks) is done by one process, the
        holder of `<name>:render`: it follows the controls, renders again what others
        left to it, and sweeps expired tokens. Should the lease be lost, the work stops and
        the process queues for it again; a new holder starts by rendering every DER."""
        while True:
            async with self._lease(f"{self.name}:render") as lost:
                self.renderer.renders = True
                work = [
                    _task(self._follow_controls(), f"{self.name}-controls"),
                    _task(self._render_vens(), f"{self.name}-vens"),
                    _task(_every(SWEEP_S, self._sweep_tokens, "sweeping expired tokens"),
                          f"{self.name}-sweep"),
                ]
                try:
                    await lost.wait()
                    log.warning("%s: the render lease was lost; waiting to hold it again",
                                self.name)
                finally:
                    self.renderer.renders = self.ctx.leases is None
                    for task in work:
                        task.cancel()
                    for task in work:
                        with suppress(asyncio.CancelledError):
                            await task
            # A write stopped half-way may be committed and not indexed here (this
            # process's own writes are not announced to it): read everything again.
            try:
                await self.reload()
            except Exception:  # the records follower's next resync reads it all too
                log.exception("%s: reading the records again after the lost lease failed",
                              self.name)

    async def _render_vens(self) -> None:
        while True:
            await self._render_wanted.wait()
            self._render_wanted.clear()
            names, self._vens_to_render = sorted(self._vens_to_render), set()
            for name in names:
                try:
                    await self.renderer.render_ven(name)
                except Exception:  # the others still render; the next change tries again
                    log.exception("rendering the DERs of VEN %s failed", name)

    async def _sweep_tokens(self) -> None:
        swept = await self.credentials.sweep_expired()
        if swept:
            log.info("deleted %d expired OpenADR access tokens", swept)

    async def _mqtt_role(self) -> None:
        """Every process connects to the broker (broker logins); the holder of
        `<name>:mqtt` sends the pending publications."""
        assert self.publisher is not None
        while True:
            async with self._lease(f"{self.name}:mqtt") as lost:
                self.publisher.publishing.set()
                self.publisher.wake()
                try:
                    await lost.wait()
                    log.warning("%s: the MQTT lease was lost; waiting to hold it again",
                                self.name)
                finally:
                    if self.ctx.leases is not None:
                        self.publisher.publishing.clear()

    async def rebuild(self) -> None:
        """Render every OpenADR-bound DER from the store (start-up and after a bus overflow)."""
        ids = [r.id for r in await self.ctx.gateway.resources(protocol=self.name)]
        for start in range(0, len(ids), RENDER_BATCH):
            await self._render_safely(ids[start:start + RENDER_BATCH])

    async def _render_safely(self, resource_ids: list[str]) -> None:
        try:
            await self.renderer.render_many(resource_ids)
            return
        except Exception:  # one bad DER must not stop the others: render them one by one
            log.exception("rendering %d DERs' controls as OpenADR events failed; one by one",
                          len(resource_ids))
        for rid in resource_ids:
            try:
                await self.renderer.render(rid)
            except Exception:
                log.exception("rendering the control of %s as an OpenADR event failed", rid)

    async def _follow_controls(self) -> None:
        await follow(
            self.ctx.bus,
            {Topic.EFFECTIVE_CONTROL_CHANGED, Topic.RESOURCE_CHANGED},
            on_batch=self._render_events,
            resync=self.rebuild,
            name="openadr3-controls",
            batch=RENDER_BATCH,
        )

    async def _render_events(self, events: list[TypedEvent]) -> None:
        """What queued up meanwhile is rendered together, once per DER."""
        ids = list(dict.fromkeys(r for e in events if (r := _to_render(e, self.name))))
        for start in range(0, len(ids), RENDER_BATCH):
            await self._render_safely(ids[start:start + RENDER_BATCH])


def _host_port(url: str) -> tuple[str, int]:
    """'https://127.0.0.1:8444' -> ('127.0.0.1', 8444)."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 443


def _to_render(event: TypedEvent, name: str) -> str | None:
    """The DER an event asks to re-render, if it may concern OpenADR. A DER's online mark
    does not: the control it changes comes as its own event."""
    if isinstance(event, ResourceChanged):
        if event.online is not None and not event.deleted:
            return None
    elif not isinstance(event, ControlChanged):
        return None
    return event.resource_id if event.protocol in (None, name) else None


def _bound_port(site: web.TCPSite) -> int | None:
    server = site._server  # aiohttp exposes no public accessor for the bound socket
    sockets = getattr(server, "sockets", None) or ()
    return int(sockets[0].getsockname()[1]) if sockets else None


def _task(work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    task = asyncio.create_task(work, name=name)
    task.add_done_callback(_report_crash)
    return task


async def _every(period_s: float, work: Callable[[], Awaitable[None]], what: str) -> None:
    """Run `work` now and then every `period_s` seconds; a failure is logged and the next
    round tries again."""
    while True:
        started = time.monotonic()
        try:
            await work()
        except Exception:
            log.exception("%s failed", what)
        await asyncio.sleep(max(0.0, period_s - (time.monotonic() - started)))


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("OpenADR 3 task %s stopped", task.get_name(), exc_info=task.exception())
