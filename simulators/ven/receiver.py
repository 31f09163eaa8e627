"""The VEN's webhook receiver: the VTN POSTs notifications here, with our bearer token.

Plain HTTP on loopback (the gateway accepts that in dev mode only). A request without the
right bearer token is refused with 401 and ignored.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], Awaitable[None]]
MAX_BODY = 1024 * 1024


@asynccontextmanager
async def receiving(on_note: Handler, secret: str, host: str = "127.0.0.1"
                    ) -> AsyncIterator[str]:
    """Listen on an ephemeral port; yield the callback URL."""
    expected = f"Bearer {secret}"

    async def hook(request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
            return web.json_response({"title": "unauthorised"}, status=401)
        try:
            note = await request.json()
        except ValueError:
            return web.json_response({"title": "not JSON"}, status=400)
        if not isinstance(note, dict):
            return web.json_response({"title": "not an object"}, status=400)
        await on_note(note)
        return web.json_response({})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://{host}:{port}/hook"
    finally:
        await runner.cleanup()
