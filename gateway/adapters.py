"""Finding the installed adapters: how a protocol plugs into the core without the core
knowing it.

An adapter is found through the entry-point group ``der_gateway.adapters``; the entry point
names a factory ``create_adapter(ctx: gateway.ports.AdapterContext) -> Adapter`` in a package
that also defines ``address_key(address) -> str`` (its binding rule, `gateway.bindings`).
The runtime then

1. mounts ``adapter.platform_routes()`` (if any) under ``/v1/adapters/<name>/`` on the
   platform API, each behind the core's authorisation (`gateway.ports.Access`);
2. enters ``adapter.lifespan()`` after the store, bus and outbox relay are up, and leaves it
   (in reverse order of entry) on shutdown.

What adapters get from the core is in `gateway.ports`, and only there.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from gateway.bindings import AddressKey
from gateway.ports import Adapter, AdapterContext, PkiPaths

__all__ = ["ENTRY_POINT_GROUP", "Adapter", "AdapterContext", "AdapterFactory",
           "InstalledAdapter", "PkiPaths", "discover"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "der_gateway.adapters"

AdapterFactory = Callable[[AdapterContext], Adapter]


@dataclass(frozen=True, slots=True)
class InstalledAdapter:
    name: str
    create: AdapterFactory
    address_key: AddressKey


def discover() -> dict[str, InstalledAdapter]:
    """All installed adapters by name (entry-point group ``der_gateway.adapters``)."""
    found: dict[str, InstalledAdapter] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        factory = ep.load()
        package = importlib.import_module(ep.module)
        rule = getattr(package, "address_key", None)
        if rule is None:
            raise RuntimeError(f"adapter {ep.name}: {ep.module} defines no address_key()")
        found[ep.name] = InstalledAdapter(ep.name, factory, rule)
    return found
