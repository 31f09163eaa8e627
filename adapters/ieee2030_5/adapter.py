"""The adapter object the core loads: lifespan (listener + bus loop) and platform routes."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from aiohttp import web

from adapters.ieee2030_5 import platform
from adapters.ieee2030_5.listener import GuardedListener, Limits
from adapters.ieee2030_5.scope import identity_from_der
from adapters.ieee2030_5.server import create_app
from adapters.ieee2030_5.service import Ieee2030Service
from adapters.ieee2030_5.settings import NotificationTls, Settings
from gateway.adapters import AdapterContext
from gateway.bus import Topic
from gateway.delivery import check_callback_url
from gateway.domain import Protocol
from gateway.settings import split_listen
from pki.devpki import DevPki
from pki.tls import client_context, ieee2030_5_server_context, peer_certificate_der

log = logging.getLogger(__name__)
SSL_NAME = "ieee2030_5"
BATCH = 500  # DERs re-rendered per transaction


class Ieee2030Adapter:
    name = "ieee2030_5"

    def __init__(self, ctx: AdapterContext) -> None:
        self.ctx = ctx
        self.settings = Settings.from_config(ctx.config)
        self.listen = self.settings.listen
        self.service = Ieee2030Service(
            ctx.gateway, ctx.records, ctx.deliveries, self.settings, pen=ctx.settings.iana_pen,
            horizon_s=ctx.settings.horizon_s, check_url=self._check_url, ssl_name=SSL_NAME)
        self.bound_port: int | None = None
        self.refresh_s = self.settings.refresh_s

    def listeners(self) -> list[str]:
        return [self.listen]

    def platform_routes(self) -> list[web.AbstractRouteDef]:
        return platform.routes(self.service)

    def platform_openapi(self) -> dict[str, Any]:
        return platform.OPENAPI

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        pki = self.ctx.pki
        tls = ieee2030_5_server_context(pki.path("ieee2030_5", "server-chain.pem"),
                                        pki.path("ieee2030_5", "server.key"),
                                        pki.path("ieee2030_5", "ca-chain.pem"))
        self.ctx.deliveries.register_ssl(SSL_NAME, self._notification_context())
        await self.service.start()
        host, port = split_listen(self.listen)
        s = self.settings
        listener = GuardedListener(
            create_app(self.service, s.max_body_bytes), tls,
            Limits(s.handshake_timeout_s, s.header_timeout_s, s.max_connections,
                   s.max_connections_per_client),
            client_of, keepalive_timeout_s=s.keepalive_timeout_s)
        self.listener = listener
        self.bound_port = await listener.start(host, port)
        tasks = [asyncio.create_task(self._follow(), name="ieee2030_5-controls"),
                 asyncio.create_task(self._refresh_periodically(), name="ieee2030_5-refresh")]
        try:
            await self._refresh_all()
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError):
                    await task
            await listener.close()

    async def _check_url(self, url: str) -> None:
        """The gateway's one outbound guard for a notificationURI (InvalidInput: refused)."""
        outbound = getattr(self.ctx, "outbound", None)
        if outbound is not None:
            await outbound.check(url)
        else:  # (until the seam's OutboundGuard lands on main)
            await check_callback_url(url, dev_mode=self.ctx.dev_mode)

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

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self._refresh_all()
            except Exception:  # the next round tries again
                log.exception("periodic refresh of 2030.5 controls failed")

    async def _refresh_all(self) -> None:
        """After a start, rebuild every DER's controls from the store (events may be missed)."""
        ids = [r.id for r in await self.ctx.gateway.resources(protocol=Protocol.IEEE2030_5)]
        for start in range(0, len(ids), BATCH):
            await self.service.on_controls_changed(ids[start:start + BATCH])

    async def _follow(self) -> None:
        """Re-render on effective-control changes, in batches of what has queued up; resync
        from the store when the bus says we fell behind."""
        while True:
            async with self.ctx.bus.subscription(Topic.EFFECTIVE_CONTROL_CHANGED,
                                                 Topic.RESOURCE_CHANGED) as events:
                async for event in events:
                    batch = [event]
                    while len(batch) < BATCH and not events.queue.empty():
                        batch.append(events.queue.get_nowait())
                    ids = list(dict.fromkeys(
                        str(e.payload["resource_id"]) for e in batch
                        if "resource_id" in e.payload
                        and e.payload.get("protocol") in (None, Protocol.IEEE2030_5.value)))
                    try:
                        await self.service.on_controls_changed(ids)
                    except Exception:  # a bad batch must not stop the follower
                        log.exception("rendering controls for %d DERs failed", len(ids))
            await self._refresh_all()


def client_of(transport: asyncio.BaseTransport) -> str | None:
    """The LFDI of a connection's client certificate (None: none presented)."""
    cert = peer_certificate_der(transport)
    return identity_from_der(cert).lfdi if cert else None


def create(ctx: AdapterContext) -> Ieee2030Adapter:
    return Ieee2030Adapter(ctx)
