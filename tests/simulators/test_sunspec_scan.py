"""pysunspec2's own client scans our simulated inverters over real sockets.

It must find every model, and read model 1, 701 and 704 values with the right scale factors;
a write through it must reach the DER physics.
"""

import asyncio

import pytest
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from simulators.der import Rating
from simulators.sunspec.inverter import InverterSpec, SunSpecInverter
from simulators.sunspec.server import PortServer

SMALL = Rating(w_max=10_000.0)
LARGE_BATTERY = Rating(w_max=100_000.0, w_cha_max=50_000.0, wh_max=200_000.0)  # W_SF = 1


@pytest.fixture
async def served():
    inverters = {
        1: SunSpecInverter(InverterSpec("SCAN-1", SMALL, ramp_pct_s=0.0)),
        7: SunSpecInverter(InverterSpec("SCAN-7", LARGE_BATTERY, ramp_pct_s=0.0)),
    }
    for inv in inverters.values():
        inv.step(1.0)
    server = PortServer("127.0.0.1", 0, inverters)
    await server.start()
    try:
        yield server, inverters
    finally:
        await server.stop()


def scan(port: int, unit: int) -> SunSpecModbusClientDeviceTCP:
    device = SunSpecModbusClientDeviceTCP(slave_id=unit, ipaddr="127.0.0.1", ipport=port,
                                          timeout=5)
    device.scan()
    return device


async def test_pysunspec2_scans_models_and_reads_scaled_values(served):
    server, inverters = served
    big = inverters[7]
    # A 704 value with a negative scale factor, set through the register path.
    block = big.image.block(704)
    at = big.image.base + block.start + block.layout.point("WMaxLimPct").offset
    big.write(at, [3750])  # WMaxLimPct_SF = -2: 37.50 %

    device = await asyncio.to_thread(scan, server.bound_port, 7)
    try:
        ids = sorted(mid for mid in device.models if isinstance(mid, int))
        assert ids == [1, 701, 702, 703, 704, 705, 706, 711, 712, 713]
        common = device.common[0]
        assert (common.Mn.value, common.SN.value) == ("der-gateway", "SCAN-7")
        meas = device.DERMeasureAC[0]
        expected = big.model.measurement()
        assert meas.W_SF.value == 1
        assert meas.W.value == round(expected.w / 10)
        assert meas.W.cvalue == pytest.approx(expected.w, abs=10)
        assert meas.W.cvalue == pytest.approx(80_000.0)
        assert meas.Hz.value == 6000 and meas.Hz.cvalue == pytest.approx(60.0)
        assert meas.LNV.cvalue == pytest.approx(240.0)
        assert meas.PF.cvalue == pytest.approx(1.0)
        ctl = device.DERCtlAC[0]
        assert ctl.WMaxLimPct.value == 3750 and ctl.WMaxLimPct.cvalue == pytest.approx(37.5)
        assert ctl.PFWInj.PF.cvalue == pytest.approx(1.0)
        assert device.DERStorageCapacity[0].SoC.cvalue == pytest.approx(big.model.soc_pct, abs=0.1)
        assert device.DERCapacity[0].WMaxRtg.cvalue == pytest.approx(100_000.0)
        volt_watt = device.DERVoltWatt[0].Crv[0]
        assert (volt_watt.Pt[1].V.cvalue, volt_watt.Pt[1].W.cvalue) == (110.0, 0.0)
        watt_var = device.DERWattVar[0].Crv[0]
        assert watt_var.Pt[2].Var.cvalue == pytest.approx(-100.0)
    finally:
        device.disconnect()


async def test_pysunspec2_write_drives_the_physics(served):
    server, inverters = served
    small = inverters[1]

    def limit_to_forty_percent() -> None:
        device = scan(server.bound_port, 1)
        try:
            ctl = device.DERCtlAC[0]
            ctl.WMaxLimPct.cvalue = 40
            ctl.WMaxLimPctEna.value = 1
            ctl.write()
        finally:
            device.disconnect()

    await asyncio.to_thread(limit_to_forty_percent)
    small.step(1.0)
    assert small.model.w_max_lim.enabled
    assert small.model.measurement().w == pytest.approx(4_000.0)
    assert small.image.value(701, "W") == pytest.approx(4_000.0)


async def test_unknown_unit_and_base_address_probe(served):
    server, _ = served

    def probe() -> tuple[int | None, dict]:
        device = SunSpecModbusClientDeviceTCP(slave_id=42, ipaddr="127.0.0.1",
                                              ipport=server.bound_port, timeout=2)
        try:
            device.scan()
        except Exception as exc:  # pysunspec2 reports "not a SunSpec device"
            return device.base_addr, {"error": str(exc)}
        finally:
            device.disconnect()
        return device.base_addr, {}

    base, info = await asyncio.to_thread(probe)
    assert base is None and "error" in info
