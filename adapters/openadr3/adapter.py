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
from adapters.openadr3.platform import PLATFORM_OPENAPI, CredentialRoutes
from adapters.openadr3.render import Renderer
from adapters.openadr3.server import ProblemAppRunner, VtnServer
from adapters.openadr3.settings import Settings
from adapters.openadr3.state import ObjectStore
from adapters.openadr3.vtn.auth import Credentials
from adapters.openadr3.vtn.instructions import BlInstructions
from adapters.openadr3.vtn.mqtt import BrokerAccess, MqttPublisher
from adapters.openadr3.vtn.notifier import Notifier, WebhookChannel
from adapters.openadr3.vtn.notifiers import MqttNotifierRoutes
from adapters.openadr3.vtn.ownership import Ownership
from adapters.openadr3.vtn.service import VtnService
from adapters.openadr3.vtn.throttle import TokenThrottle
from gateway.adapters import AdapterContext
from gateway.bus import Event, Topic
from gateway.domain import Protocol
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
        webhooks = WebhookChannel(
            ctx.deliveries, ctx.dev_mode, WEBHOOK_TLS if settings.webhook_ca_file else None
        )
        self.service.hooks.extend([
            Notifier(self.service, webhooks, ctx.dev_mode, self.publisher),
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
            MqttNotifierRoutes(mqtt, BrokerAccess(self.publisher), self.service)
            if mqtt and self.publisher else None,
        )
        self.platform = CredentialRoutes(self.credentials, self.service, self.renderer)
        self.port: int | None = None  # the bound port, once listening

    def _register_webhook_tls(self) -> None:
        """The CAs in `webhook_ca_file` only (not the system's), host names checked."""
        if self.settings.webhook_ca_file:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=self.settings.webhook_ca_file
            )
            self.ctx.deliveries.register_ssl(WEBHOOK_TLS, context)

    def listeners(self) -> list[str]:
        return [self.listen]

    def platform_routes(self) -> list[web.RouteDef]:
        return self.platform.routes()

    def platform_openapi(self) -> dict[str, Any]:
        return PLATFORM_OPENAPI

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        self._register_webhook_tls()
        await self.store.load()
        await self.credentials.load()
        runner = ProblemAppRunner(
            self.server.app(),
            access_log=None,
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
            site = web.TCPSite(runner, host, port, ssl_context=tls)
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
        ids = [r.id for r in await self.ctx.gateway.resources(protocol=Protocol(self.name))]
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
        topics = (Topic.EFFECTIVE_CONTROL_CHANGED, Topic.RESOURCE_CHANGED)
        while True:
            try:
                async with self.ctx.bus.subscription(*topics) as sub:
                    await self.rebuild()
                    async for event in sub:
                        # What queued up meanwhile is rendered together, once per DER.
                        batch = [event]
                        while len(batch) < RENDER_BATCH and not sub.queue.empty():
                            batch.append(sub.queue.get_nowait())
                        ids = [rid for rid in dict.fromkeys(_to_render(e, self.name) for e in batch)
                               if rid is not None]
                        if ids:
                            await self._render_safely(ids)
                log.warning("OpenADR 3 control follower fell behind; rebuilding from the store")
            except Exception:  # the core was unavailable: retry rather than stop following
                log.exception("OpenADR 3 control follower failed; retrying")
                await asyncio.sleep(1.0)


def _host_port(url: str) -> tuple[str, int]:
    """'https://127.0.0.1:8444' -> ('127.0.0.1', 8444)."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 443


def _to_render(event: Event, name: str) -> str | None:
    """The DER an event asks to re-render, if it may concern OpenADR. A DER's online mark
    does not: the control it changes comes as its own event."""
    payload = event.payload
    if event.topic == Topic.RESOURCE_CHANGED and "online" in payload:
        return None
    if payload.get("protocol") not in (None, name):
        return None
    return str(payload["resource_id"])


def _bound_port(site: web.TCPSite) -> int | None:
    server = site._server  # aiohttp exposes no public accessor for the bound socket
    sockets = getattr(server, "sockets", None) or ()
    return int(sockets[0].getsockname()[1]) if sockets else None


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("OpenADR 3 task %s stopped", task.get_name(), exc_info=task.exception())
