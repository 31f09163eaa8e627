"""SunSpec Modbus TCP adapter: the gateway as Modbus client of SCADA-connected inverters."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.adapters import Adapter, AdapterContext


def create_adapter(ctx: AdapterContext) -> Adapter:
    # Imported here so that the codec (shared with the simulators) does not pull in the core.
    from adapters.modbus.service import ModbusAdapter

    return ModbusAdapter(ctx)
