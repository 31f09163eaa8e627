"""IEEE 1547 function settings on simulated inverters over real sockets (no gateway core):
705 volt-var, 706 volt-watt, 711 freq-droop and 712 watt-var adoption, read-back and
acknowledgement, and the physics following them; ramp rates written to 704/703; reversion
timers refreshed while the pool runs, re-adoption of a curve the device lost, lapse when it
stops; a device without a model answers cannot_comply."""

import asyncio
from dataclasses import replace

import pytest

from adapters.modbus.settings import Settings
from adapters.modbus.sunspec.pool import DevicePool
from gateway.domain import AckStatus, EffectiveControl, InstructionKind, Source
from simulators.der import Rating
from simulators.sunspec.fleet import FleetConfig, running_fleet
from simulators.sunspec.inverter import InverterSpec, SunSpecInverter
from simulators.sunspec.server import PortServer
from tests.modbus.support import RecordingSink, export_limit

DROOP = {"db_of_hz": 0.036, "db_uf_hz": 0.036, "k_of": 0.05, "k_uf": 0.05, "response_s": 1}
VOLT_VAR = [[94.0, 40.0], [99.0, 0.0], [101.0, 0.0], [106.0, -40.0]]
VOLT_WATT = [[104.0, 100.0], [108.0, 20.0]]
WATT_VAR = [[50.0, 0.0], [100.0, -44.0]]  # y in % of max W (2030.5's default yRefType)


@pytest.fixture
async def fleet():
    async with running_fleet(FleetConfig(count=3, first_port=0, units_per_port=3,
                                         tick_s=0.1, ramp_pct_s=0.0)) as running:
        yield running


def make_pool(fleet, sink, **config):
    pool = DevicePool(sink, Settings(**{"timeout_s": 0.5, "backoff_initial_s": 0.1,
                                          "backoff_max_s": 0.5, **config}))
    for i in range(len(fleet.inverters)):
        host, port, unit = fleet.address(i)
        pool.upsert(f"d{i}", {"host": host, "port": port, "unit_id": unit}, 10_000.0)
    return pool


def settings(rid: str, instruction_id: str = "ins-f", base: EffectiveControl | None = None,
             **values) -> EffectiveControl:
    source = Source(instruction_id, "ldc-a", InstructionKind.FUNCTION_SETTINGS, "settings")
    base = base or EffectiveControl(rid, ())
    return replace(base, function_settings=values, function_source=source)


async def test_freq_droop_is_adopted_verified_acknowledged_and_followed(fleet):
    sink = RecordingSink()
    pool = make_pool(fleet, sink, reversion_s=30)
    inv = fleet.inverters[0]
    await asyncio.sleep(0.3)
    assert inv.model.measurement().w == pytest.approx(8_000.0) and not inv.model.freq_watt.enabled
    pool.set_control("d0", settings("d0", freq_droop=DROOP))
    await pool.poll_cycle()
    [ack] = sink.acks
    assert (ack.instruction_id, ack.status) == ("ins-f", AckStatus.COMPLETED)
    assert ack.protocol_status == "711 adopted, read-back verified"
    assert inv.image.get(711, "AdptCtlRslt") == 1 and inv.image.get(711, "Ena") == 1
    assert inv.image.get(711, "RvrtTms") == 30
    assert inv.image.value(711, "Ctl[0].KOf") == pytest.approx(0.05)
    assert inv.image.value(711, "Ctl[0].RspTms") == pytest.approx(1.0)
    droop = inv.model.freq_watt
    assert droop.enabled and droop.value.k_of == pytest.approx(0.05)
    # the physics follows: 60.336 Hz is 0.3 Hz past the 0.036 Hz dead band; 5 % droop on
    # 60 Hz gives 0.3 / 3 = 10 % of 10 kW less, 8 kW -> 7 kW
    fleet.set_grid(240.0, 60.336)
    await asyncio.sleep(2.0)  # 99 % of the way after a 1 s response time
    assert inv.model.measurement().w == pytest.approx(7_000.0, abs=50.0)
    assert fleet.inverters[1].model.measurement().w == pytest.approx(8_000.0)  # no droop
    await pool.poll_cycle()
    assert len(sink.acks) == 1  # unchanged settings are not acknowledged again


async def test_limit_and_functions_are_acknowledged_each_for_itself(fleet):
    sink = RecordingSink()
    pool = make_pool(fleet, sink)
    control = settings("d1", base=export_limit("d1", 3_000.0, "ins-lim"),
                       freq_watt=[[60.0, 80.0], [60.5, 80.0], [62.0, 0.0]],  # a cap: no droop
                       volt_var=VOLT_VAR)
    pool.set_control("d1", control)
    await pool.poll_cycle()
    acks = {a.instruction_id: a for a in sink.acks}
    assert acks["ins-lim"].status is AckStatus.COMPLETED
    assert acks["ins-lim"].protocol_status == "704 read-back verified"
    function = acks["ins-f"]
    assert function.status is AckStatus.CANNOT_COMPLY
    assert function.protocol_status == "not representable"
    assert "freq_watt" in function.detail and "belongs in a limit" in function.detail
    inv = fleet.inverters[1]
    assert inv.model.volt_var.enabled  # the part that can be expressed is in force
    assert not inv.model.freq_watt.enabled and inv.image.get(711, "AdptCtlRslt") == 1


async def test_a_droop_the_device_refuses_to_adopt_is_cannot_comply(fleet):
    sink = RecordingSink()
    pool = make_pool(fleet, sink)
    # k_of 0.5: encodable, but outside what the inverter accepts (0.01..0.1): FAILED
    pool.set_control("d2", settings("d2", freq_droop={**DROOP, "k_of": 0.5}))
    await pool.poll_cycle()
    [ack] = sink.acks
    assert (ack.status, ack.protocol_status) == (AckStatus.CANNOT_COMPLY, "711 adoption failed")
    assert ack.detail == "AdptCtlRslt=2"
    assert not fleet.inverters[2].model.freq_watt.enabled


async def test_curve_reversion_is_refreshed_while_the_pool_runs_and_lapses_after(fleet):
    """A short reversion (2 s): the pool restarts the 705 and 711 timers before they run out,
    re-adopts a curve the device lost meanwhile, and once it stops both functions lapse."""
    sink = RecordingSink()
    pool = make_pool(fleet, sink, reversion_s=2, poll_interval_s=0.2, refresh_fraction=0.3)
    inv = fleet.inverters[0]
    pool.set_control("d0", settings("d0", volt_var=VOLT_VAR, freq_droop=DROOP))
    runner = asyncio.create_task(pool.run())
    try:
        await asyncio.sleep(4.5)  # more than twice the reversion time
        assert inv.image.get(705, "RvrtTms") == 2 and inv.image.get(711, "RvrtTms") == 2
        for setting in (inv.model.volt_var, inv.model.freq_watt):
            assert setting.enabled and setting.reverted == 0
        [ack] = sink.acks
        assert ack.status is AckStatus.COMPLETED
        assert ack.protocol_status == ("705 adopted, read-back verified; "
                                       "711 adopted, read-back verified")
        # another master adopts the default curve (3) in place of ours, volt-var still on
        block = inv.image.block(705)
        inv.write(inv.image.base + block.start + block.layout.point("AdptCrvReq").offset, [3])
        await asyncio.sleep(0.3)
        assert inv.model.volt_var.value.points != tuple(tuple(p) for p in VOLT_VAR)
        await asyncio.sleep(1.2)  # the next refresh finds it and adopts ours again
        assert inv.model.volt_var.enabled
        assert inv.model.volt_var.value.points == tuple(tuple(p) for p in VOLT_VAR)
        assert len(sink.acks) == 1  # a repair, not a new acknowledgement
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    await asyncio.sleep(2.5)  # the gateway is gone: the timers run out
    for setting in (inv.model.volt_var, inv.model.freq_watt):
        assert not setting.enabled and setting.reverted == 1
    assert inv.image.get(705, "Ena") == 0 and inv.image.get(711, "Ena") == 0


async def test_withdrawn_settings_turn_the_function_off_at_once(fleet):
    sink = RecordingSink()
    pool = make_pool(fleet, sink, reversion_s=60)
    inv = fleet.inverters[1]
    pool.set_control("d1", settings("d1", volt_var=VOLT_VAR, freq_droop=DROOP))
    await pool.poll_cycle()
    assert inv.model.volt_var.enabled and inv.model.freq_watt.enabled
    pool.set_control("d1", settings("d1", "ins-g", volt_var=VOLT_VAR))
    await pool.poll_cycle()
    assert inv.model.volt_var.enabled and not inv.model.freq_watt.enabled
    assert inv.image.get(711, "Ena") == 0 and inv.image.get(711, "RvrtTms") == 0
    assert [(a.instruction_id, a.status, a.protocol_status) for a in sink.acks[1:]] == [
        ("ins-g", AckStatus.COMPLETED, "705 in force, read-back verified")]
    pool.set_control("d1", None)
    await pool.poll_cycle()
    assert not inv.model.volt_var.enabled and inv.image.get(705, "Ena") == 0


async def test_volt_watt_and_watt_var_are_adopted_acknowledged_and_followed(fleet):
    sink = RecordingSink()
    pool = make_pool(fleet, sink, reversion_s=30)
    vw, wv, untouched = fleet.inverters
    pool.set_control("d0", settings("d0", volt_watt=VOLT_WATT, volt_watt_response_s=0))
    pool.set_control("d1", settings("d1", "ins-w", watt_var=WATT_VAR))
    await pool.poll_cycle()
    acks = {a.instruction_id: a for a in sink.acks}
    assert (acks["ins-f"].status, acks["ins-f"].protocol_status) == (
        AckStatus.COMPLETED, "706 adopted, read-back verified")
    assert (acks["ins-w"].status, acks["ins-w"].protocol_status) == (
        AckStatus.COMPLETED, "712 adopted, read-back verified")
    assert vw.image.get(706, "Ena") == 1 and vw.image.get(706, "RvrtTms") == 30
    assert vw.image.value(706, "Crv[0].Pt[1].W") == pytest.approx(20.0)
    assert wv.image.get(712, "Ena") == 1 and wv.image.get(712, "Crv[0].DeptRef") == 0
    # the physics: 8 kW is 80 % of 10 kW, 60 % of the way from 50 % to 100 % output, so
    # 60 % of -44 % of 10 kW: 2.64 kvar absorbed
    await asyncio.sleep(0.3)
    assert wv.model.measurement().var == pytest.approx(-2_640.0, abs=5.0)
    assert untouched.model.measurement().var == pytest.approx(0.0)
    # 106 % voltage: the curve allows 60 % of 10 kW; the inverter curtails 8 kW to 6 kW
    fleet.set_grid(254.4, 60.0)
    await asyncio.sleep(0.3)
    assert vw.model.measurement().w == pytest.approx(6_000.0, abs=5.0)
    assert untouched.model.measurement().w == pytest.approx(8_000.0)
    await pool.poll_cycle()
    assert len(sink.acks) == 2  # unchanged settings are not acknowledged again


async def test_ramp_rates_are_written_to_704_and_703_and_ramp_time_is_refused(fleet):
    sink = RecordingSink()
    pool = make_pool(fleet, sink)
    inv = fleet.inverters[2]
    pool.set_control("d2", settings("d2", set_grad_w=1_000, set_soft_grad_w=50))
    await pool.poll_cycle()
    [ack] = sink.acks
    assert (ack.status, ack.protocol_status) == (
        AckStatus.COMPLETED, "704 WRmp/WRmpRef written, read-back verified; "
                             "703 ESRmpTms written, read-back verified")
    assert inv.image.get(704, "WRmp") == 10 and inv.image.get(704, "WRmpRef") == 1
    assert inv.image.get(703, "ESRmpTms") == 200  # 100 % at 0.5 %/s
    assert inv.model.ramp_pct_s == 10.0 and inv.model.enter_service.ramp_s == 200.0
    pool.set_control("d2", settings("d2", "ins-r", set_grad_w=1_000, ramp_s=30))
    await pool.poll_cycle()
    ack = sink.acks[-1]
    assert (ack.instruction_id, ack.status, ack.protocol_status) == (
        "ins-r", AckStatus.CANNOT_COMPLY, "not representable")
    assert ack.detail.startswith("ramp_s: a time to move from one control to the next has "
                                 "no SunSpec point")
    assert inv.image.get(704, "WRmp") == 10  # the part SunSpec can carry is in force


async def test_a_device_without_712_acknowledges_watt_var_cannot_comply():
    """An inverter that implements 705, 706 and 711 but not 712: the volt-watt curve is
    adopted, the watt-var curve is acknowledged cannot_comply with the reason."""
    inv = SunSpecInverter(InverterSpec("NO-712", Rating(w_max=10_000.0), ramp_pct_s=0.0,
                                       functions=frozenset({705, 706, 711})))
    server = PortServer("127.0.0.1", 0, {1: inv})
    await server.start()

    async def tick() -> None:  # the physics step that completes an adoption
        while True:
            await asyncio.sleep(0.1)
            inv.step(0.1)

    ticker = asyncio.create_task(tick())
    try:
        sink = RecordingSink()
        pool = DevicePool(sink, Settings(timeout_s=0.5))
        pool.upsert("d9", {"host": "127.0.0.1", "port": server.bound_port, "unit_id": 1},
                    10_000.0)
        pool.set_control("d9", settings("d9", volt_watt=VOLT_WATT, watt_var=WATT_VAR))
        await pool.poll_cycle()
    finally:
        ticker.cancel()
        await server.stop()
    [ack] = sink.acks
    assert (ack.status, ack.protocol_status) == (AckStatus.CANNOT_COMPLY, "no model 712")
    assert ack.detail == "the device does not implement SunSpec model 712"
    assert inv.model.volt_watt.enabled and inv.image.get(706, "Ena") == 1
    delivery = sink.delivered("d9")  # the settings are not all in force: undeliverable
    assert not delivery.in_force
    assert delivery.reason == ("function settings: no model 712: the device does not "
                               "implement SunSpec model 712")


async def test_volt_var_y_reference_and_a_default_control_ramp_reach_the_inverter(fleet):
    """volt_var_y_ref 1 (%setMaxW) is 705 DeptRef W_MAX_PCT, and the inverter converts the
    curve to its own var base; a reference 705 cannot use is refused with the reason; a
    set_grad_w carried by the default control is written to 704 WRmp and acknowledged
    against the default control."""
    sink = RecordingSink()
    pool = make_pool(fleet, sink, reversion_s=30)
    by_w, refused, ramped = fleet.inverters
    pool.set_control("d0", settings("d0", "ins-w", volt_var=VOLT_VAR, volt_var_y_ref=1))
    pool.set_control("d1", settings("d1", "ins-x", volt_var=VOLT_VAR, volt_var_y_ref=7))
    dflt = Source("ins-d", "ldc-a", InstructionKind.DEFAULT_CONTROL, "settings")
    pool.set_control("d2", EffectiveControl("d2", (), default_control={"set_grad_w": 500},
                                            default_source=dflt))
    await pool.poll_cycle()
    acks = {a.instruction_id: a for a in sink.acks}
    assert (acks["ins-w"].status, acks["ins-w"].protocol_status) == (
        AckStatus.COMPLETED, "705 adopted, read-back verified")
    assert by_w.image.get(705, "Crv[0].DeptRef") == 0  # W_MAX_PCT
    # 40 % of 10 kW is 4 kvar, 90.9 % of the inverter's 4.4 kvar var_max
    assert by_w.model.volt_var.enabled
    assert by_w.model.volt_var.value.points[0] == pytest.approx((94.0, 40.0 * 10_000 / 4_400))
    assert (acks["ins-x"].status, acks["ins-x"].protocol_status) == (
        AckStatus.CANNOT_COMPLY, "not representable")
    assert acks["ins-x"].detail.startswith("volt_var: volt_var_y_ref 7 is not a y reference")
    assert refused.image.get(705, "Ena") != 1
    # Settings SunSpec cannot express are refused, not undelivered: the rest is in force.
    assert sink.delivered("d1").in_force
    assert (acks["ins-d"].status, acks["ins-d"].protocol_status) == (
        AckStatus.COMPLETED, "704 WRmp/WRmpRef written, read-back verified")
    assert ramped.image.get(704, "WRmp") == 5 and ramped.model.ramp_pct_s == 5.0
