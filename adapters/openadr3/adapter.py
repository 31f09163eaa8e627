"""The OpenADR 3 adapter: wires the layers together and runs the VTN listener."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from adapters.openadr3.feedback import Feedback
from adapters.openadr3.platform import PLATFORM_OPENAPI, CredentialRoutes
from adapters.openadr3.render import Renderer
from adapters.openadr3.server import ProblemAppRunner, VtnServer
from adapters.openadr3.state import ObjectStore
from adapters.openadr3.vtn.auth import Credentials
from adapters.openadr3.vtn.instructions import BlInstructions
from adapters.openadr3.vtn.mqtt import BrokerAccess, MqttConfig, MqttPublisher
from adapters.openadr3.vtn.notifier import Notifier, WebhookChannel
from adapters.openadr3.vtn.notifiers import MqttNotifierRoutes
from adapters.openadr3.vtn.ownership import Ownership
from adapters.openadr3.vtn.service import VtnService
from adapters.openadr3.vtn.throttle import ThrottleSettings, TokenThrottle
from gateway.adapters import AdapterContext
from gateway.bus import Event, Topic
from gateway.domain import Protocol
from gateway.settings import split_listen
from pki.tls import server_context

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "listen": "https://127.0.0.1:8444",
    "token_ttl_s": 3600,
    # aiohttp refuses request lines and header fields over 8190 bytes with text/plain; long
    # target queries are legitimate, so allow more (and answer anything longer with a problem).
    "max_line_size": 65536,
    "max_field_size": 65536,
    "max_reports_per_ven": 1000,
    "max_subscriptions_per_ven": 100,
    # Token endpoint (docs/openadr3.md, "Throttling"): per source address and client id.
    "token_rate_per_s": 5.0,
    "token_burst": 20,
    "token_lockout_after": 5,
    "token_lockout_after_per_address": 20,
    "token_lockout_s": 60.0,
    "token_lockout_max_s": 900.0,
}


WEBHOOK_TLS = "openadr3-webhooks"
RENDER_BATCH = 500  # DERs rendered per batch (one write of their events)


class OpenAdr3Adapter:
    """VTN for OpenADR 3.1.0 and 3.0.1 on its own TLS listener."""

    def __init__(self, ctx: AdapterContext) -> None:
        self.ctx = ctx
        self.name = ctx.name
        self.config = {**DEFAULTS, **ctx.config}
        self.store = ObjectStore(ctx.records)
        self.credentials = Credentials(ctx.records, int(self.config["token_ttl_s"]))
        ownership = Ownership(self.store, self.credentials)
        self.service = VtnService(self.store, ownership, hooks=[])
        self.service.max_reports = int(self.config["max_reports_per_ven"])
        self.service.max_subscriptions = int(self.config["max_subscriptions_per_ven"])
        self.renderer = Renderer(self.service, ctx.gateway, self.name)
        self.mqtt = _mqtt_config(self.config)  # None: MQTT off (no broker configured)
        self.publisher = MqttPublisher(self.mqtt, ctx.records) if self.mqtt else None
        notifier = Notifier(
            self.service,
            WebhookChannel(ctx.deliveries, ctx.dev_mode, self._webhook_tls()),
            ctx.dev_mode,
            self.publisher,
        )
        self.service.hooks.extend([
            notifier,
            BlInstructions(self.service, ctx.gateway),
            self.renderer,
            Feedback(self.service, ctx.gateway, ctx.records, self.name),
        ])
        self.listen = str(self.config["listen"])
        self.server = VtnServer(
            self.service,
            self.credentials,
            str(self.config.get("public_url", self.listen)),
            ctx.settings.max_body_bytes,
            TokenThrottle(ThrottleSettings(
                rate_per_s=float(self.config["token_rate_per_s"]),
                burst=int(self.config["token_burst"]),
                client_failures=int(self.config["token_lockout_after"]),
                address_failures=int(self.config["token_lockout_after_per_address"]),
                lockout_s=float(self.config["token_lockout_s"]),
                lockout_max_s=float(self.config["token_lockout_max_s"]),
            )),
            MqttNotifierRoutes(self.mqtt, BrokerAccess(self.publisher), self.service)
            if self.mqtt and self.publisher else None,
        )
        self.platform = CredentialRoutes(self.credentials, self.service, self.renderer)
        self.port: int | None = None  # the bound port, once listening

    def _webhook_tls(self) -> str | None:
        """The name of the webhooks' delivery TLS context when a trust store is configured
        (registered in lifespan(): no I/O here)."""
        return WEBHOOK_TLS if self.config.get("webhook_ca_file") else None

    def _register_webhook_tls(self) -> None:
        """The CAs in `webhook_ca_file` only (not the system's), host names checked."""
        ca_file = self.config.get("webhook_ca_file")
        if ca_file:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
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
            max_line_size=int(self.config["max_line_size"]),
            max_field_size=int(self.config["max_field_size"]),
        )
        await runner.setup()
        try:
            host, port = split_listen(self.listen)
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


def _mqtt_config(config: dict[str, Any]) -> MqttConfig | None:
    url = config.get("mqtt_url")
    if not url:
        return None
    uris = config.get("mqtt_public_uris") or ()
    return MqttConfig(
        url=str(url),
        username=config.get("mqtt_username"),
        password=config.get("mqtt_password"),
        public_uris=tuple(str(u) for u in ([uris] if isinstance(uris, str) else uris)),
        ca_file=config.get("mqtt_ca_file"),
        max_age_s=float(config.get("mqtt_max_age_s", 3600.0)),
    )


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
