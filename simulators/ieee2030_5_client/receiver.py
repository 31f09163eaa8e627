"""The client's notification receiver: the server POSTs Notifications here (subscriptions).

Plain HTTP on loopback: the gateway allows that in dev mode only; a production client would
listen with TLS. Bodies are bounded; anything unreadable is answered 400 and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from simulators.ieee2030_5_client import wire

log = logging.getLogger(__name__)
Handler = Callable[[str, Any], Awaitable[None]]
MAX_BODY = 4 * 1024 * 1024


@asynccontextmanager
async def receiving(on_notification: Handler, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Listen on an ephemeral port; yield the notification URI."""

    async def notify(request: web.Request) -> web.Response:
        try:
            href, resource = wire.read_notification(await request.read())
        except wire.WireError as exc:
            log.info("notification refused: %s", exc)
            return web.Response(status=400)
        await on_notification(href, resource)
        return web.Response(status=204)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/notify", notify)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://{host}:{port}/notify"
    finally:
        await runner.cleanup()
