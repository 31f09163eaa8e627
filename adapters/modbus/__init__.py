"""SunSpec Modbus TCP adapter: the gateway as Modbus client of SCADA-connected inverters."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.adapters import Adapter, AdapterContext


def create_adapter(ctx: AdapterContext) -> Adapter:
    """The adapter, its settings checked (an unknown or bad key stops the start, named)."""
    # Imported here so that the codec (shared with the simulators) does not pull in the core.
    from adapters.modbus.adapter import ModbusAdapter
    from adapters.modbus.settings import load

    return ModbusAdapter(ctx, load(ctx.config, f"adapters.{ctx.name}"))
