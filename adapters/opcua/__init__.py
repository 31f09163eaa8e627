"""OPC UA server adapter: the LDC's SCADA browses, subscribes to and steers the DER fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.opcua.adapter import OpcUaAdapter
    from gateway.adapters import AdapterContext


def create_adapter(ctx: AdapterContext) -> OpcUaAdapter:
    from adapters.opcua.adapter import create

    return create(ctx)


def address_key(address: dict[str, Any]) -> str:
    """A DER published over OPC UA only: its address is whatever names its point."""
    # (imported here: the codec, shared with the simulators, must not pull in the core)
    from gateway.ports import canonical_address_key

    return canonical_address_key(address, ignore={"settings", "tls"})
