"""OPC UA server adapter: the LDC's SCADA browses, subscribes to and steers the DER fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.opcua.adapter import OpcUaAdapter
    from gateway.adapters import AdapterContext


def create_adapter(ctx: AdapterContext) -> OpcUaAdapter:
    from adapters.opcua.adapter import create

    return create(ctx)
