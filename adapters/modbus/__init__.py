"""SunSpec Modbus TCP adapter: the gateway as Modbus client of SCADA-connected inverters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.ports import Adapter, AdapterContext


def create_adapter(ctx: AdapterContext) -> Adapter:
    """The adapter, its settings checked (an unknown or bad key stops the start, named)."""
    # Imported here so that the codec (shared with the simulators) does not pull in the core.
    from adapters.modbus.adapter import ModbusAdapter
    from adapters.modbus.settings import load

    return ModbusAdapter(ctx, load(ctx.config, f"adapters.{ctx.name}"))


def address_key(address: dict[str, Any]) -> str:
    """A Modbus DER is bound by host, port and unit id (TLS and options are not identity)."""
    # (imported here: the codec, shared with the simulators, must not pull in the core)
    from gateway.errors import InvalidInput
    from gateway.ports import canonical_address_key, require_keys

    require_keys(address, "host", "port", "unit_id")
    port, unit = address["port"], address["unit_id"]
    if not (isinstance(port, int) and 0 < port < 65536):
        raise InvalidInput("port must be an integer 1..65535")
    if not (isinstance(unit, int) and 0 <= unit <= 247):
        raise InvalidInput("unit_id must be an integer 0..247")
    return canonical_address_key(address, ignore={"settings", "tls"})
