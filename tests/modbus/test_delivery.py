"""No silent loss of control (issue 13), Modbus side: the platform learns whether each DER's
control is in force on its device, or why not, through `der-gateway serve`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymodbus.constants import ExcCodes

from simulators.sunspec.fleet import FleetConfig, running_fleet
from tests.modbus.test_integration import MODBUS_SETTINGS, eventually, iso
from tests.support.gateway import GatewayProcess, free_port
from tests.support.seed import modbus_der, seed_platform

SETTINGS = {**MODBUS_SETTINGS, "backoff_initial_s": 0.2, "backoff_max_s": 0.5,
            "offline_after": 2}


async def test_delivered_then_refused_then_unreachable_each_reaches_the_platform(tmp_path):
    """d1's limit is written and read back: delivered. d2's device answers every request
    with an exception code: undeliverable, and the LDC that limited it gets a notice. d3 is
    bound to an address where nothing listens: undeliverable, device unreachable."""
    async with running_fleet(FleetConfig(count=2, first_port=0, tick_s=0.1,
                                         ramp_pct_s=0.0)) as fleet:
        proc = GatewayProcess(tmp_path, modbus=SETTINGS)
        gw = await proc.start()
        try:
            ders = []
            for i, rid in enumerate(("d1", "d2")):
                host, port, unit = fleet.address(i)
                der = modbus_der(rid, "cp-a1", 10_000, unit=unit)
                der["binding"]["address"].update(host=host, port=port)
                ders.append(der)
            nowhere = modbus_der("d3", "cp-a1", 10_000, unit=1)
            nowhere["binding"]["address"]["port"] = free_port()
            clients = await seed_platform(gw, [*ders, nowhere])
            admin, ldc = clients["admin"], clients["ldc-a"]
            now = datetime.now(UTC).replace(microsecond=0)
            status, limit = await ldc.post("/v1/instructions", {
                "kind": "limit", "target": {"kind": "connection_point", "id": "cp-a1"},
                "start": iso(now - timedelta(minutes=1)), "end": iso(now + timedelta(hours=1)),
                "limits": {"export_max_w": 9_000}, "reason": "feeder F-A1 thermal"})
            assert status == 201, limit

            async def delivery(rid: str) -> dict[str, Any] | None:
                _, body = await admin.get(f"/v1/resources/{rid}")
                return body.get("delivery")

            async def state_of(rid: str, state: str) -> dict[str, Any] | None:
                found = await delivery(rid)
                return found if found and found["state"] == state else None

            for rid in ("d1", "d2"):
                assert await eventually(lambda rid=rid: state_of(rid, "delivered"))
            slot, unit = fleet.config.placement(1)
            fleet.servers[slot].faults[unit].exception = ExcCodes.DEVICE_FAILURE
            refused = await eventually(lambda: state_of("d2", "undeliverable"))
            assert refused["reason"].startswith("device refuses requests: "), refused
            assert "0x04 DEVICE_FAILURE" in refused["reason"]
            unreachable = await eventually(lambda: state_of("d3", "undeliverable"))
            assert unreachable["reason"].startswith("device unreachable: "), unreachable
            assert (await delivery("d1"))["state"] == "delivered"  # the others go on

            async def told() -> list[dict[str, Any]]:
                _, notices = await ldc.get("/v1/notices")
                return [n for n in notices if n.get("kind") == "undeliverable"
                        and n["subject"]["id"] in {"d2", "d3"}]

            notices = await eventually(lambda: _all(told, {"d2", "d3"}))
            for notice in notices:  # the issuer of the live limit, and the aggregator
                assert set(notice["recipients"]) == {"ldc-a", "agg-x"}
                assert notice["limiting"][0]["instruction_id"] == limit["id"]

            fleet.servers[slot].faults[unit].exception = None
            assert await eventually(lambda: state_of("d2", "delivered"))  # back, rewritten
        finally:
            assert await proc.stop() == 0, proc.log()[-3000:]


async def _all(told: Any, ids: set[str]) -> list[dict[str, Any]]:
    notices = await told()
    return notices if {n["subject"]["id"] for n in notices} == ids else []
