"""Through the real gateway: platform API -> coordination -> store -> Modbus adapter ->
simulated SunSpec inverters over TCP, and back: read-back acknowledgements and telemetry in
the platform API. Then the gateway stops and the inverter reverts when its timer runs out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

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


@asynccontextmanager
async def gateway_polling(tmp_path, fleet: Any) -> AsyncIterator[dict[str, Any]]:
    """`der-gateway serve` polling the fleet's first inverter as d1 on cp-a1, the platform
    seeded; yields the platform clients. The gateway must stop cleanly on leaving."""
    proc = GatewayProcess(tmp_path, modbus=MODBUS_SETTINGS)
    gw = await proc.start()
    try:
        host, port, unit = fleet.address(0)
        der = modbus_der("d1", "cp-a1", 10_000, unit=unit)
        der["binding"]["address"].update(host=host, port=port)
        yield await seed_platform(gw, [der])
    finally:
        assert await proc.stop() == 0, proc.log()[-3000:]

async def settings_acknowledged(clients: dict[str, Any], settings: dict) -> dict:
    """Function settings for d1 from LDC A, in force since a minute ago; its (one)
    acknowledgement, once the platform has it."""
    now = datetime.now(UTC).replace(microsecond=0)
    status, body = await clients["ldc-a"].post("/v1/instructions", {
        "kind": "function_settings", "target": {"kind": "resource", "id": "d1"},
        "start": iso(now - timedelta(minutes=1)), "settings": settings,
        "reason": "IEEE 1547 settings for F-A1"})
    assert status == 201, body

    async def acknowledged():
        _, acks = await clients["admin"].get(f"/v1/acknowledgements?instruction_id={body['id']}")
        return acks

    [ack] = await eventually(acknowledged)
    return ack



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


async def test_function_settings_reach_705_and_711_and_lapse_when_gateway_stops(tmp_path):
    """An LDC's function settings through the platform: a freq_watt curve 711 cannot express
    is acknowledged cannot_comply with its reason; the next settings (freq-droop parameters
    and a volt-var curve) are adopted, verified and acknowledged, the inverter's output
    follows the grid frequency, and both functions stay while the gateway refreshes their
    timers and lapse when it stops."""
    async with running_fleet(FleetConfig(count=1, first_port=0, tick_s=0.1,
                                         ramp_pct_s=0.0)) as fleet:
        [inv] = fleet.inverters
        async with gateway_polling(tmp_path, fleet) as clients:
            def settle(settings: dict) -> Any:
                return settings_acknowledged(clients, settings)

            ack = await settle({"freq_watt": [[60.0, 70], [60.5, 70], [62.0, 0]]})
            assert (ack["status"], ack["protocol_status"]) == ("cannot_comply",
                                                               "not representable")
            assert "a cap belongs in a limit" in ack["detail"], ack
            assert not inv.model.freq_watt.enabled

            ack = await settle({"freq_droop": {"db_of_hz": 0.036, "db_uf_hz": 0.036,
                                               "k_of": 0.05, "k_uf": 0.05, "response_s": 1},
                                "volt_var": [[94, 40], [99, 0], [101, 0], [106, -40]]})
            assert ack["status"] == "completed", ack
            assert ack["protocol_status"] == ("705 adopted, read-back verified; "
                                              "711 adopted, read-back verified")
            fleet.set_grid(240.0, 60.336)  # 0.3 Hz past the dead band: 10 % less
            await asyncio.sleep(2.0)
            assert inv.model.measurement().w == pytest.approx(7_000.0, abs=50.0)
            await asyncio.sleep(REVERSION_S + 1)  # refreshed: the timers never fire
            for setting in (inv.model.volt_var, inv.model.freq_watt):
                assert setting.enabled and setting.reverted == 0
        await asyncio.sleep(REVERSION_S + 0.5)  # the gateway has gone: both lapse
        for setting in (inv.model.volt_var, inv.model.freq_watt):
            assert not setting.enabled and setting.reverted == 1
        await asyncio.sleep(1.0)
        assert inv.model.measurement().w == pytest.approx(8_000.0, abs=50.0)  # no droop


async def test_volt_watt_and_watt_var_reach_706_and_712_through_the_gateway(tmp_path):
    """Function settings with a volt-watt and a watt-var curve, from the platform API: both
    are adopted and verified on the inverter, the acknowledgement is recorded in the
    platform, and the inverter curtails with voltage and absorbs vars with output."""
    async with running_fleet(FleetConfig(count=1, first_port=0, tick_s=0.1,
                                         ramp_pct_s=0.0)) as fleet:
        [inv] = fleet.inverters
        async with gateway_polling(tmp_path, fleet) as clients:
            ack = await settings_acknowledged(clients, {
                "volt_watt": [[104, 100], [108, 20]], "volt_watt_response_s": 0,
                "watt_var": [[50, 0], [100, -44]]})
            assert (ack["status"], ack["protocol"]) == ("completed", "modbus"), ack
            assert ack["protocol_status"] == ("706 adopted, read-back verified; "
                                              "712 adopted, read-back verified")
            assert inv.model.volt_watt.enabled and inv.model.watt_var.enabled
            fleet.set_grid(254.4, 60.0)  # 106 %: 60 % of 10 kW allowed
            await asyncio.sleep(0.5)
            m = inv.model.measurement()
            assert m.w == pytest.approx(6_000.0, abs=5.0)
            # 60 % output: a fifth of the way from 50 % to 100 %, -44 % x 0.2 of 10 kW
            assert m.var == pytest.approx(-880.0, abs=5.0)
        await asyncio.sleep(REVERSION_S + 0.5)  # the gateway has gone: both lapse
        assert not inv.model.volt_watt.enabled and not inv.model.watt_var.enabled
