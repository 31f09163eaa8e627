"""OPC UA server adapter: the LDC's SCADA browses, subscribes to and steers the DER fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.opcua.settings import Settings

if TYPE_CHECKING:
    from adapters.opcua.adapter import OpcUaAdapter
    from gateway.ports import AdapterContext


def create_adapter(ctx: AdapterContext) -> OpcUaAdapter:
    """The adapter, with its settings checked (an unknown key or a bad value stops here)."""
    settings = Settings.model_validate(ctx.config)
    from adapters.opcua.adapter import OpcUaAdapter  # asyncua loads only if the adapter is used

    return OpcUaAdapter(ctx, settings)


def address_key(address: dict[str, Any]) -> str:
    """A DER published over OPC UA only: its address is whatever names its point."""
    # (imported here: the codec, shared with the simulators, must not pull in the core)
    from gateway.ports import canonical_address_key

    return canonical_address_key(address, ignore={"settings", "tls"})
