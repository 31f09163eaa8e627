"""The client pool against simulated inverters over real sockets (no gateway core)."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.modbus.settings import Settings
from adapters.modbus.state import Part
from adapters.modbus.sunspec.pool import DevicePool
from gateway.domain import AckStatus, Quantity
from simulators.sunspec.fleet import FleetConfig, running_fleet
from tests.modbus.support import RecordingSink, export_limit


@pytest.fixture
async def fleet():
    async with running_fleet(FleetConfig(count=4, first_port=0, units_per_port=2,
                                         tick_s=0.1, ramp_pct_s=40.0)) as running:
        yield running


def make_pool(fleet, sink, **config):
    pool = DevicePool(sink, Settings(**{"timeout_s": 0.5, "backoff_initial_s": 0.1,
                                          "backoff_max_s": 0.5, **config}))
    for i in range(len(fleet.inverters)):
        host, port, unit = fleet.address(i)
        pool.upsert(f"d{i}", {"host": host, "port": port, "unit_id": unit}, 10_000.0)
    return pool


async def test_poll_cycle_reads_telemetry_of_every_device(fleet):
    sink = RecordingSink()
    pool = make_pool(fleet, sink)
    results = await pool.poll_cycle()
    assert all(r.ok for r in results)
    assert sorted(sink.marks) == [(f"d{i}", True) for i in range(4)]
    for i, inv in enumerate(fleet.inverters):
        m = inv.model.measurement()
        assert sink.latest(f"d{i}", Quantity.ACTIVE_POWER) == pytest.approx(m.w, abs=2_000)
        assert sink.latest(f"d{i}", Quantity.FREQUENCY) == pytest.approx(60.0)
        assert sink.latest(f"d{i}", Quantity.VOLTAGE) == pytest.approx(240.0)
        assert sink.latest(f"d{i}", Quantity.CONNECTED) == 1.0
    assert not sink.acks  # nothing to acknowledge without a control


def sockets_to(ports: set[int]) -> int:
    """This process's established TCP connections to these local ports (from /proc)."""
    count = 0
    for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port, state = int(fields[2].split(":")[1], 16), fields[3]
        count += state == "01" and remote_port in ports  # 01: ESTABLISHED
    return count


async def test_devices_behind_one_address_share_one_connection(fleet):
    """Unit ids behind one host and port (a Modbus gateway) are polled over one socket,
    taking turns; it closes with its last device."""
    sink = RecordingSink()
    pool = make_pool(fleet, sink)
    ports = {fleet.address(i)[1] for i in range(4)}
    assert len(ports) == 2  # two devices behind each
    results = await pool.poll_cycle()
    assert all(r.ok for r in results)
    assert len(pool.connections) == 2 and sockets_to(ports) == 2
    pool.release("d0")
    assert len(pool.connections) == 2  # d0's neighbour still uses it
    pool.release("d1")
    pool.release("d2")
    pool.release("d3")
    await asyncio.sleep(0.1)
    assert len(pool.connections) == 0 and sockets_to(ports) == 0


async def test_export_limit_is_written_verified_acknowledged_and_followed(fleet):
    sink = RecordingSink()
    pool = make_pool(fleet, sink, reversion_s=30)
    await asyncio.sleep(2.5)  # let the fleet ramp to its available 8 kW
    pool.set_control("d1", export_limit("d1", 3_000.0, "ins-7", default_w=5_000.0))
    await pool.poll_cycle()
    [ack] = sink.acks
    assert (ack.resource_id, ack.status, ack.instruction_id) == ("d1", AckStatus.COMPLETED, "ins-7")
    assert ack.protocol_status == "704 read-back verified"
    inv = fleet.inverters[1]
    assert inv.image.value(704, "WMaxLimPct") == pytest.approx(30.0)
    assert inv.image.get(704, "WMaxLimPctEna") == 1
    assert inv.image.value(704, "WMaxLimPctRvrt") == pytest.approx(50.0)
    assert inv.image.get(704, "WMaxLimPctRvrtTms") == 30
    # 8 kW -> 3 kW at 40 %/s of 10 kW: 4 kW/s, so 1.25 s; after 0.5 s it is still ramping
    await asyncio.sleep(0.5)
    assert 3_000.0 < inv.model.measurement().w < 8_000.0
    await asyncio.sleep(1.5)
    assert inv.model.measurement().w == pytest.approx(3_000.0)
    assert fleet.inverters[0].model.measurement().w == pytest.approx(8_000.0)  # untouched
    await pool.poll_cycle()
    assert sink.latest("d1", Quantity.ACTIVE_POWER) == pytest.approx(3_000.0)
    assert len(sink.acks) == 1  # unchanged plan: refreshed later, not acknowledged again


async def test_reversion_timer_is_refreshed_while_the_pool_runs(fleet):
    sink = RecordingSink()
    pool = make_pool(fleet, sink, reversion_s=2, poll_interval_s=0.2, refresh_fraction=0.3)
    pool.set_control("d2", export_limit("d2", 2_000.0))
    runner = asyncio.create_task(pool.run())
    try:
        await asyncio.sleep(4.0)  # twice the reversion time
        inv = fleet.inverters[2]
        assert inv.model.w_max_lim.enabled and inv.model.w_max_lim.reverted == 0
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    await asyncio.sleep(2.5)  # the gateway is gone: the inverter falls back
    assert not inv.model.w_max_lim.enabled and inv.model.w_max_lim.reverted == 1
    assert inv.image.get(704, "WMaxLimPctEna") == 0


async def test_a_device_with_nothing_enabled_is_not_rewritten_to_restart_timers(fleet):
    """Without a control (every enable and reversion value off) a lapse of the reversion
    timer changes nothing: the plan is written once, not refreshed; d2, limited, is."""
    sink = RecordingSink()
    pool = make_pool(fleet, sink, reversion_s=1, poll_interval_s=0.1, refresh_fraction=0.3)
    pool.set_control("d2", export_limit("d2", 2_000.0))
    runner = asyncio.create_task(pool.run())
    try:
        await asyncio.sleep(1.0)
        idle, limited = fleet.inverters[1].writes, fleet.inverters[2].writes
        await asyncio.sleep(2.0)  # several refresh periods
        assert fleet.inverters[1].writes == idle
        assert fleet.inverters[2].writes > limited
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def test_device_refusing_the_plan_gets_a_rejected_ack(fleet):
    from dataclasses import replace

    sink = RecordingSink()
    pool = make_pool(fleet, sink)
    control = export_limit("d3", 9_000.0, "ins-neg")
    # A PV inverter cannot absorb: the simulator refuses a negative WSet (exception 0x03).
    control = replace(control, intervals=(replace(control.intervals[0], setpoint_w=-2_000.0),))
    pool.set_control("d3", control)
    results = await pool.poll_cycle()
    assert all(r.ok for r in results)  # a refusal is an answer, not a failure
    [ack] = sink.acks
    assert (ack.status, ack.protocol_status) == (AckStatus.REJECTED, "exception 0x03")
    assert "ILLEGAL_VALUE" in ack.detail
    assert not fleet.inverters[3].model.w_set.enabled


async def test_volt_var_settings_go_through_the_adoption_handshake(fleet):
    from gateway.domain import EffectiveControl, InstructionKind, Source

    sink = RecordingSink()
    pool = make_pool(fleet, sink)
    curve = [[94.0, 40.0], [99.0, 0.0], [101.0, 0.0], [106.0, -40.0]]
    pool.set_control("d0", EffectiveControl(
        "d0", (), function_settings={"volt_var": curve},
        function_source=Source("ins-vv", "ldc-a", InstructionKind.FUNCTION_SETTINGS, "volt_var")))
    await pool.poll_cycle()
    [ack] = sink.acks
    assert (ack.instruction_id, ack.status) == ("ins-vv", AckStatus.COMPLETED)
    inv = fleet.inverters[0]
    assert inv.image.get(705, "AdptCrvRslt") == 1 and inv.image.get(705, "Ena") == 1
    assert inv.model.volt_var.enabled
    assert inv.model.volt_var.value.points == tuple(tuple(p) for p in curve)
    assert inv.image.value(705, "Crv[0].Pt[3].Var") == pytest.approx(-40.0)


async def test_a_curve_the_device_cannot_hold_is_cannot_comply(fleet):
    from gateway.domain import EffectiveControl, InstructionKind, Source

    sink = RecordingSink()
    pool = make_pool(fleet, sink)
    curve = [[90.0 + i, 10.0 - i] for i in range(6)]  # 6 points; the simulator holds 4
    pool.set_control("d1", EffectiveControl(
        "d1", (), function_settings={"volt_var": curve},
        function_source=Source("ins-6", "ldc-a", InstructionKind.FUNCTION_SETTINGS, "volt_var")))
    await pool.poll_cycle()
    [ack] = sink.acks
    assert ack.status == AckStatus.CANNOT_COMPLY and "NPt=4" in ack.detail
    assert not fleet.inverters[1].model.volt_var.enabled


async def test_a_pool_handed_what_was_acknowledged_does_not_acknowledge_it_again(fleet):
    """A new pool (a restart, or another process taking the device over) is handed the
    ledger's state with the device: it writes the control, verifies it, and sends no equal
    acknowledgement; an outcome that differs from the one acknowledged is acknowledged."""
    first = RecordingSink()
    pool = make_pool(fleet, first)
    control = export_limit("d1", 3_000.0, "ins-7")
    pool.set_control("d1", control)
    await pool.poll_cycle()
    assert [a.status for a in first.acks] == [AckStatus.COMPLETED]
    ledger = first.acked["d1"]
    inv = fleet.inverters[1]
    host, port, unit = fleet.address(1)
    address = {"host": host, "port": port, "unit_id": unit}

    for acked, expected in ((ledger, []), (
            {Part.CONTROL: replace(ledger[Part.CONTROL], status="rejected")},
            [AckStatus.COMPLETED])):
        inv.image.set(704, "WMaxLimPctEna", 0)
        sink = RecordingSink()
        restarted = DevicePool(sink, Settings(timeout_s=0.5))
        restarted.upsert("d1", address, 10_000.0, control, acked=acked)
        await restarted.poll_cycle()
        assert inv.image.get(704, "WMaxLimPctEna") == 1  # written again, verified
        assert [a.status for a in sink.acks] == expected


async def test_a_limit_that_starts_later_is_written_when_it_starts(fleet):
    """Idle passes reuse the device's plan, but only until the control's next interval
    edge: a limit starting in a second is written then, without any new control."""
    sink = RecordingSink()
    pool = make_pool(fleet, sink, poll_interval_s=0.1)
    later = export_limit("d3", 2_500.0)
    start = datetime.now(UTC) + timedelta(seconds=1.5)
    (interval,) = later.intervals
    pool.set_control("d3", replace(later, intervals=(replace(interval, start=start),)))
    runner = asyncio.create_task(pool.run())
    try:
        inv = fleet.inverters[3]
        await asyncio.sleep(1.0)
        assert not inv.model.w_max_lim.enabled  # not yet
        await asyncio.sleep(2.0)
        assert inv.model.w_max_lim.enabled
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
