"""Through the real gateway: platform API -> coordination -> store -> Modbus adapter ->
simulated SunSpec inverters over TCP, and back: read-back acknowledgements and telemetry in
the platform API. Then the gateway stops and the inverter reverts when its timer runs out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from simulators.sunspec.fleet import FleetConfig, running_fleet
from tests.support.gateway import GatewayProcess
from tests.support.seed import modbus_der, seed_platform

REVERSION_S = 3
MODBUS_SETTINGS = {"reversion_s": REVERSION_S, "poll_interval_s": 0.3,
                   "telemetry_interval_s": 0.5, "refresh_fraction": 0.3, "timeout_s": 1.0,
                   "flush_interval_s": 0.2}


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def eventually(check, timeout: float = 10.0, every: float = 0.2):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout} s: {check.__name__}")
        await asyncio.sleep(every)


async def test_export_limit_reaches_inverter_and_reverts_when_gateway_stops(tmp_path):
    async with running_fleet(FleetConfig(count=2, first_port=0, tick_s=0.1,
                                         ramp_pct_s=25.0)) as fleet:
        limited, other = fleet.inverters
        proc = GatewayProcess(tmp_path, modbus=MODBUS_SETTINGS)  # `der-gateway serve`
        gw = await proc.start()
        try:
            resources = []
            for i, rid in enumerate(("d1", "d2")):
                host, port, unit = fleet.address(i)
                der = modbus_der(rid, "cp-a1", 10_000, unit=unit)
                der["binding"]["address"].update(host=host, port=port)
                resources.append(der)
            clients = await seed_platform(gw, resources)
            admin, ldc = clients["admin"], clients["ldc-a"]

            async def all_online():
                status, body = await admin.get("/v1/resources/d1")
                return status == 200 and body.get("online") is True

            await eventually(all_online)
            await eventually(lambda: _true(limited.model.measurement().w > 7_900))

            now = datetime.now(UTC).replace(microsecond=0)
            status, limit = await ldc.post("/v1/instructions", {
                "kind": "limit", "target": {"kind": "resource", "id": "d1"},
                "start": iso(now - timedelta(minutes=1)), "end": iso(now + timedelta(hours=1)),
                "limits": {"export_max_w": 4_000}, "reason": "feeder F-A1 thermal"})
            assert status == 201, limit

            # 704 writes arrive; the output follows within its ramp (25 %/s: 2.5 kW/s).
            await eventually(lambda: _true(limited.model.w_max_lim.enabled))
            assert limited.image.value(704, "WMaxLimPct") == pytest.approx(40.0)
            assert limited.image.get(704, "WMaxLimPctRvrtTms") == REVERSION_S
            assert limited.model.measurement().w > 4_000  # not a step: it ramps
            await asyncio.sleep(8_000 / 2_500 - 4_000 / 2_500 + 0.3)
            assert limited.model.measurement().w == pytest.approx(4_000.0)
            assert other.model.measurement().w == pytest.approx(8_000.0)  # untouched

            async def acknowledged():
                _, acks = await admin.get(f"/v1/acknowledgements?instruction_id={limit['id']}")
                return [a for a in acks if a["status"] == "completed"]

            [ack] = await eventually(acknowledged)
            assert ack["resource_id"] == "d1" and ack["protocol"] == "modbus"
            assert ack["protocol_status"] == "704 read-back verified"

            async def telemetry_at_limit():
                _, rows = await admin.get("/v1/readings?resource_id=d1&quantity=W&limit=1000")
                return rows and abs(rows[-1]["value"] - 4_000.0) < 1.0

            await eventually(telemetry_at_limit)
            # The reversion timer is refreshed while the gateway runs: it never fires.
            await asyncio.sleep(REVERSION_S + 1)
            assert limited.model.w_max_lim.enabled and limited.model.w_max_lim.reverted == 0

        finally:
            assert await proc.stop() == 0, proc.log()[-3000:]
        # The gateway has stopped: no more refreshes. The inverter falls back on its own.
        await asyncio.sleep(REVERSION_S + 0.5)
        assert limited.model.w_max_lim.reverted == 1 and not limited.model.w_max_lim.enabled
        assert limited.image.get(704, "WMaxLimPctEna") == 0
        await asyncio.sleep(2.0)
        assert limited.model.measurement().w == pytest.approx(8_000.0)


async def _true(value: bool) -> bool:
    return value
