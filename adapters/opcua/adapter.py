"""The OPC UA adapter object the core sees: lifespan, listeners, platform routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from adapters.opcua.config import load_config
from adapters.opcua.routes import UserRoutes, openapi
from adapters.opcua.server import OpcUaServer
from adapters.opcua.users import UserDirectory, account_from_doc
from gateway.adapters import AdapterContext


class OpcUaAdapter:
    def __init__(self, ctx: AdapterContext) -> None:
        self.name = ctx.name
        self.ctx = ctx
        self.config = load_config(ctx.config, ctx.pki, dev_mode=ctx.dev_mode)
        self.users = UserDirectory()
        self._routes = UserRoutes(ctx, self.users)
        self.server = OpcUaServer(ctx, self.config, self.users)

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        for doc in self.config.users:  # hashing happens here, not in create_adapter
            self.users.add(account_from_doc(doc), fixed=True)
        await self._routes.load()
        async with self.server.running():
            yield

    def listeners(self) -> list[str]:
        return [self.config.listen]

    def platform_routes(self) -> list[web.AbstractRouteDef]:
        return self._routes.routes()

    def platform_openapi(self) -> dict[str, Any]:
        return openapi()


def create(ctx: AdapterContext) -> OpcUaAdapter:
    return OpcUaAdapter(ctx)
