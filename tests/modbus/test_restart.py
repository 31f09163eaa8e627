"""A restarted gateway writes a DER's control to its device again, but does not acknowledge
what it already acknowledged (issue 17, finding 6)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from simulators.sunspec.fleet import FleetConfig, running_fleet
from tests.modbus.test_integration import MODBUS_SETTINGS, eventually, iso
from tests.support.gateway import GatewayProcess
from tests.support.seed import modbus_der, seed_platform

VOLT_VAR = [[94, 40], [99, 0], [101, 0], [106, -40]]
WATT_PF = [[0, 1.0], [100, 0.9]]  # no SunSpec model: refused, cannot_comply


async def _instruct(client: Any, body: dict[str, Any]) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    status, created = await client.post("/v1/instructions", {
        "target": {"kind": "resource", "id": "d1"}, "start": iso(now - timedelta(minutes=1)),
        "reason": "feeder F-A1", **body})
    assert status == 201, created
    return str(created["id"])


async def test_a_restart_does_not_acknowledge_the_same_control_again(tmp_path):
    """Under a limit (completed) and function settings (cannot_comply: no watt-PF curve in
    SunSpec), the gateway is restarted. The restarted gateway rewrites the device, and the
    store still holds exactly one acknowledgement of each instruction and status."""
    async with running_fleet(FleetConfig(count=1, first_port=0, tick_s=0.1,
                                         ramp_pct_s=0.0)) as fleet:
        [inverter] = fleet.inverters
        proc = GatewayProcess(tmp_path, modbus=MODBUS_SETTINGS)
        gw = await proc.start()
        try:
            host, port, unit = fleet.address(0)
            der = modbus_der("d1", "cp-a1", 10_000, unit=unit)
            der["binding"]["address"].update(host=host, port=port)
            clients = await seed_platform(gw, [der])
            admin, ldc = clients["admin"], clients["ldc-a"]
            limit = await _instruct(ldc, {
                "kind": "limit", "end": iso(datetime.now(UTC) + timedelta(hours=1)),
                "limits": {"export_max_w": 4_000}})
            functions = await _instruct(ldc, {
                "kind": "function_settings",
                "settings": {"volt_var": VOLT_VAR, "watt_pf": WATT_PF}})

            async def acknowledgements() -> list[dict[str, Any]]:
                _, acks = await admin.get("/v1/acknowledgements?resource_id=d1&limit=1000")
                return acks

            async def both_acknowledged() -> list[dict[str, Any]]:
                acks = await acknowledgements()
                return acks if {a["instruction_id"] for a in acks} == {limit, functions} else []

            before = await eventually(both_acknowledged)
            assert {(a["instruction_id"], a["status"]) for a in before} == {
                (limit, "completed"), (functions, "cannot_comply")}
            assert await proc.stop() == 0, proc.log()[-3000:]

            limit_of, volt_var = inverter.model.w_max_lim, inverter.model.volt_var
            # With no gateway refreshing them, the device's timers run out: both lapse.
            await eventually(lambda: _true(limit_of.reverted == volt_var.reverted == 1))
            assert not limit_of.enabled and not volt_var.enabled
            restarted_at = datetime.now(UTC)
            await proc.start()

            async def rewritten_and_read_since() -> bool:
                _, rows = await admin.get(
                    f"/v1/readings?resource_id=d1&quantity=W&since={iso(restarted_at)}")
                return bool(rows) and limit_of.enabled and volt_var.enabled

            # Acknowledgements are recorded within the pass, before its readings are taken.
            await eventually(rewritten_and_read_since, timeout=20.0)
            counts = Counter((a["instruction_id"], a["status"]) for a in await acknowledgements())
            assert counts == {(limit, "completed"): 1, (functions, "cannot_comply"): 1}, counts
        finally:
            assert await proc.stop() == 0, proc.log()[-3000:]


async def _true(value: bool) -> bool:
    return value
