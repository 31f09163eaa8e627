"""OPC UA server adapter: the LDC's SCADA browses, subscribes to and steers the DER fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.opcua.settings import Settings

if TYPE_CHECKING:
    from adapters.opcua.adapter import OpcUaAdapter
    from gateway.adapters import AdapterContext


def create_adapter(ctx: AdapterContext) -> OpcUaAdapter:
    """The adapter, with its settings checked (an unknown key or a bad value stops here)."""
    settings = Settings.model_validate(ctx.config)
    from adapters.opcua.adapter import OpcUaAdapter  # asyncua loads only if the adapter is used

    return OpcUaAdapter(ctx, settings)
