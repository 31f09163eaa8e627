"""OpenADR 3 (3.1.0 and 3.0.1) VTN adapter: events for aggregators' VENs, reports back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.openadr3.adapter import OpenAdr3Adapter
    from gateway.ports import AdapterContext


def create_adapter(ctx: AdapterContext) -> OpenAdr3Adapter:
    """The adapter, its settings checked first (an unknown or wrong key stops the start)."""
    from adapters.openadr3.adapter import OpenAdr3Adapter
    from adapters.openadr3.settings import load

    return OpenAdr3Adapter(ctx, load(dict(ctx.config)))


def address_key(address: dict[str, Any]) -> str:
    """An OpenADR DER is bound by its VEN's name and its resource name there."""
    # (imported here: the codec, shared with the simulators, must not pull in the core)
    from gateway.ports import canonical_address_key, require_keys

    require_keys(address, "ven", "resource")
    return canonical_address_key(address, ignore={"settings", "tls"})
