"""The adapter interface: how a protocol plugs into the core without the core knowing it.

An adapter is found through the entry-point group ``der_gateway.adapters``; the entry point
names a factory ``create_adapter(ctx: AdapterContext) -> Adapter``. The core then

1. mounts ``adapter.platform_routes()`` (if any) under ``/v1/adapters/<name>/`` on the
   platform API, behind the platform's own authentication (``request[gateway.api.keys.ACTOR]``);
2. enters ``adapter.lifespan()`` after the store, bus and outbox relay are up, and leaves it
   (in reverse order of entry) on shutdown.

Adapters talk to the core only through ``ctx.gateway`` (domain services), ``ctx.bus``
(wake-ups), ``ctx.deliveries`` (durable outbound HTTP notifications) and ``ctx.records``
(their own durable documents). They never import each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.bus import InProcessBus
    from gateway.delivery import DeliveryQueue
    from gateway.records import AdapterRecords
    from gateway.services import GatewayServices
    from gateway.settings import Settings

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "der_gateway.adapters"


@dataclass(frozen=True)
class PkiPaths:
    """Where the dev (or production) PKI files live; see pki.devpki for the layout."""

    root: Path

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


@dataclass
class AdapterContext:
    name: str
    settings: Settings
    config: dict[str, Any]  # this adapter's table, [adapters.<name>] in the settings file
    gateway: GatewayServices
    bus: InProcessBus
    deliveries: DeliveryQueue
    records: AdapterRecords  # already scoped to this adapter
    pki: PkiPaths
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dev_mode(self) -> bool:
        return self.settings.dev_mode


@runtime_checkable
class Adapter(Protocol):
    name: str

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """Start listeners/pollers on enter; stop them, cleanly, on exit."""
        ...

    def listeners(self) -> list[str]:
        """URLs this adapter serves or reaches, for `der-gateway status`."""
        ...


class PlatformRoutes(Protocol):
    def platform_routes(self) -> list[web.AbstractRouteDef]: ...

    def platform_openapi(self) -> dict[str, Any]:
        """OpenAPI path items for the routes above, keyed by path relative to the mount."""
        ...


AdapterFactory = Callable[[AdapterContext], Adapter]


def discover() -> dict[str, AdapterFactory]:
    """All installed adapter factories by name (entry-point group ``der_gateway.adapters``)."""
    found: dict[str, AdapterFactory] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.load()
    return found
