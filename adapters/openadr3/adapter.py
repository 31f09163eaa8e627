"""The OpenADR 3 adapter: wires the layers together and runs the VTN listener."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from adapters.openadr3.feedback import Feedback
from adapters.openadr3.platform import CredentialRoutes
from adapters.openadr3.render import Renderer
from adapters.openadr3.server import ProblemAppRunner, VtnServer
from adapters.openadr3.settings import Settings
from adapters.openadr3.state import ObjectStore
from adapters.openadr3.vtn.auth import Credentials
from adapters.openadr3.vtn.instructions import BlInstructions
from adapters.openadr3.vtn.mqtt import BrokerAccess, MqttPublisher
from adapters.openadr3.vtn.notifier import Notifier
from adapters.openadr3.vtn.notifiers import MqttNotifierRoutes
from adapters.openadr3.vtn.ownership import Ownership
from adapters.openadr3.vtn.service import VtnService
from adapters.openadr3.vtn.throttle import TokenThrottle
from gateway.ports import (
    AdapterContext,
    ControlChanged,
    PlatformRoute,
    ResourceChanged,
    Topic,
    TypedEvent,
    follow,
)
from pki.tls import server_context

log = logging.getLogger(__name__)

WEBHOOK_TLS = "openadr3-webhooks"
RENDER_BATCH = 500  # DERs rendered per batch (one write of their events)


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
        mqtt = settings.mqtt()  # None: MQTT off (no broker configured)
        self.publisher = MqttPublisher(mqtt, ctx.records) if mqtt else None
        self.broker = BrokerAccess(self.publisher) if self.publisher else None
        notifier = Notifier(
            self.service,
            ctx.outbound,
            WEBHOOK_TLS if settings.webhook_ca_file else None,
            self.publisher,
        )
        self.service.announcer = notifier
        self.service.hooks.extend([
            notifier,
            BlInstructions(self.service, ctx.gateway),
            self.renderer,
            Feedback(self.service, ctx.gateway, ctx.records, self.name),
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
        self.ctx.deliveries.on_outcomes(self.renderer.webhooks_failed)
        await self.store.load()
        await self.store.align_sequence()
        await self.credentials.load()
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
            follower = asyncio.create_task(self._follow_controls(), name="openadr3-controls")
            follower.add_done_callback(_report_crash)
            tasks = [follower]
            if self.publisher is not None:
                publisher = asyncio.create_task(self.publisher.run(), name="openadr3-mqtt")
                publisher.add_done_callback(_report_crash)
                tasks.append(publisher)
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await runner.cleanup()

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


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("OpenADR 3 task %s stopped", task.get_name(), exc_info=task.exception())
