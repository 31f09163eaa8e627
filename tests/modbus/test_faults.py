"""Faults: a device that drops the connection mid-poll, answers with exception codes, or
answers slowly. The adapter recovers, and the other devices are unaffected."""

import asyncio

import pytest
from pymodbus.constants import ExcCodes

from adapters.modbus.settings import Settings
from adapters.modbus.sunspec.pool import DevicePool
from gateway.domain import AckStatus, Quantity
from simulators.sunspec.fleet import FleetConfig, running_fleet
from tests.modbus.support import RecordingSink, export_limit
from tests.support.gateway import free_port


@pytest.fixture
async def fleet():
    async with running_fleet(FleetConfig(count=4, first_port=0, units_per_port=4,
                                         tick_s=0.1)) as running:
        yield running


def faults(fleet, index):
    slot, unit = fleet.config.placement(index)
    return fleet.servers[slot].faults[unit]


def make_pool(fleet, sink, **config):
    base = {"timeout_s": 0.5, "backoff_initial_s": 0.1, "backoff_max_s": 0.4,
            "offline_after": 2, "poll_interval_s": 0.1, "telemetry_interval_s": 0.1}
    pool = DevicePool(sink, Settings(**{**base, **config}))
    for i in range(len(fleet.inverters)):
        host, port, unit = fleet.address(i)
        pool.upsert(f"d{i}", {"host": host, "port": port, "unit_id": unit}, 10_000.0)
    return pool


def telemetry_count(sink, rid):
    return sum(1 for r in sink.received if r.resource_id == rid and r.quantity == Quantity.ACTIVE_POWER)


async def test_dropped_connection_mid_poll_is_retried_on_a_new_connection(fleet):
    sink = RecordingSink()
    pool = make_pool(fleet, sink)
    await pool.poll_cycle()  # discovery done, all online
    faults(fleet, 0).drop_after = 1  # the pass's telemetry request: dropped, never answered
    started = asyncio.get_running_loop().time()
    results = await pool.poll_cycle()
    elapsed = asyncio.get_running_loop().time() - started
    assert [r.ok for r in results] == [False, True, True, True]
    assert "d0" in pool.devices and pool.devices["d0"].last_error
    assert elapsed < 2.0  # bounded by the time-out, not a stall
    before = telemetry_count(sink, "d0")
    results = await pool.poll_cycle()
    assert all(r.ok for r in results)  # reconnected and polled again
    assert telemetry_count(sink, "d0") == before + 1
    assert ("d0", False) not in sink.marks  # one failure is not "offline"


async def test_exception_codes_back_off_mark_offline_then_recover(fleet):
    sink = RecordingSink()
    pool = make_pool(fleet, sink)
    await pool.poll_cycle()
    faults(fleet, 1).exception = ExcCodes.DEVICE_FAILURE
    for _ in range(2):
        results = await pool.poll_cycle()
        assert [r.ok for r in results] == [True, False, True, True]
    assert "0x04 DEVICE_FAILURE" in pool.devices["d1"].last_error
    assert ("d1", False) in sink.marks
    assert results[1].delay_s > results[0].delay_s / 10  # backed off, bounded by backoff_max
    assert results[1].delay_s <= 0.4 * 1.2
    faults(fleet, 1).exception = None
    results = await pool.poll_cycle()
    assert all(r.ok for r in results)
    assert sink.marks[-1] == ("d1", True)  # rediscovered and back online


async def test_slow_device_does_not_stall_the_others(fleet):
    sink = RecordingSink()
    pool = make_pool(fleet, sink)
    faults(fleet, 2).delay_s = 1.5  # three times the time-out
    runner = asyncio.create_task(pool.run())
    try:
        await asyncio.sleep(3.0)
        assert pool.devices["d2"].online is not True
        assert "no answer in time" in pool.devices["d2"].last_error
        for rid in ("d0", "d1", "d3"):
            assert telemetry_count(sink, rid) >= 10  # polled every ~0.1 s meanwhile
            assert pool.devices[rid].online is True
        faults(fleet, 2).delay_s = 0.0
        await asyncio.sleep(2.0)
        assert pool.devices["d2"].online is True
        assert telemetry_count(sink, "d2") >= 1
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def test_after_an_outage_the_control_is_rewritten_but_not_acknowledged_again(fleet):
    """An offline device is rediscovered and its control written again when it is back;
    the platform already has this control's acknowledgement, so none is sent again."""
    sink = RecordingSink()
    pool = make_pool(fleet, sink)
    pool.set_control("d1", export_limit("d1", 3_000.0, "ins-7"))
    await pool.poll_cycle()
    assert [(a.instruction_id, a.status) for a in sink.acks] == [("ins-7", AckStatus.COMPLETED)]
    inv = fleet.inverters[1]
    faults(fleet, 1).exception = ExcCodes.DEVICE_FAILURE
    for _ in range(2):
        await pool.poll_cycle()
    assert ("d1", False) in sink.marks
    faults(fleet, 1).exception = None
    inv.image.set(704, "WMaxLimPctEna", 0)  # it lost the limit meanwhile
    await pool.poll_cycle()
    assert sink.marks[-1] == ("d1", True)
    assert inv.image.get(704, "WMaxLimPctEna") == 1  # written again
    assert len(sink.acks) == 1


async def test_delivery_state_says_delivered_or_why_not(fleet):
    """A control written and read back is delivered; a device that refuses the write with
    an exception code, or cannot be reached, makes it undeliverable with the reason; back
    and written again, it is delivered again."""
    sink = RecordingSink()
    pool = make_pool(fleet, sink)
    pool.set_control("d0", export_limit("d0", 3_000.0, "ins-1"))
    # A dispatch to charge a PV inverter: its WSet cannot go below zero (exception 0x03).
    charge = export_limit("d2", 3_000.0, "ins-2")
    charge.intervals[0].setpoint_w = -2_000.0
    pool.set_control("d2", charge)
    await pool.poll_cycle()
    assert (sink.delivered("d0").in_force, sink.delivered("d0").reason) == (True, "")
    refused = sink.delivered("d2")
    assert not refused.in_force
    assert refused.reason.startswith("704/703 control: exception 0x03: ")
    assert "ILLEGAL_VALUE" in refused.reason

    faults(fleet, 0).exception = ExcCodes.DEVICE_FAILURE
    for _ in range(2):  # offline_after
        await pool.poll_cycle()
    unreachable = sink.delivered("d0")
    assert not unreachable.in_force
    assert unreachable.reason.startswith("device refuses requests: ")
    faults(fleet, 0).delay_s = 1.0  # now it does not answer in time
    faults(fleet, 0).exception = None
    await pool.poll_cycle()
    assert sink.delivered("d0") == unreachable  # reported once, not per failure
    faults(fleet, 0).delay_s = 0.0
    await pool.poll_cycle()
    assert sink.delivered("d0").in_force
    count = len(sink.deliveries)
    await pool.poll_cycle()
    assert len(sink.deliveries) == count  # nothing new: nothing reported


async def test_an_unreachable_device_is_undeliverable_after_offline_after_failures():
    sink = RecordingSink()
    pool = DevicePool(sink, Settings(timeout_s=0.3, offline_after=2))
    pool.upsert("d9", {"host": "127.0.0.1", "port": free_port(), "unit_id": 1}, 10_000.0,
                export_limit("d9", 3_000.0))
    await pool.poll_cycle()
    assert sink.delivered("d9") is None  # one failure is not yet a verdict
    await pool.poll_cycle()
    delivery = sink.delivered("d9")
    assert not delivery.in_force and delivery.reason.startswith("device unreachable: ")
    assert "cannot connect" in delivery.reason
