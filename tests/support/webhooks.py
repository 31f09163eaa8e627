"""A webhook receiver on loopback, for tests that subscribe to the gateway's webhooks."""

from __future__ import annotations

from collections import Counter
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.support.gateway import free_port


class WebhookReceiver:
    """Answers every POST to `url` with `status` and keeps, in order of arrival, what each
    carried: its Authorization header and JSON body.

        async with WebhookReceiver() as hooks:
            ... subscribe with hooks.url ...; await until(lambda: hooks.bodies)
    """

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[str | None, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    @property
    def bodies(self) -> list[Any]:
        return [body for _, body in self.posts]

    def operations(self) -> Counter[str]:
        """How often each `<operation>:<object id>` came (an OpenADR 3 notification's)."""
        return Counter(f"{b['operation']}:{b['object']['id']}" for b in self.bodies)

    async def start(self) -> WebhookReceiver:
        async def hook(request: web.Request) -> web.Response:
            self.posts.append((request.headers.get("Authorization"), await request.json()))
            return web.json_response({}, status=self.status)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookReceiver:
        return await self.start()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
