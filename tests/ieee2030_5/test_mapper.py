"""Mapper: effective intervals to DERControlBase, responses and readings to canonical."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.ieee2030_5 import mapper
from adapters.ieee2030_5.codec import models as m
from gateway.domain import AckStatus, EffectiveInterval, InstructionKind, Quantity, Source

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("watts", [0, 1, 32767, 32768, -40000, 1_234_567, 9.6e9])
def test_active_power_fits_int16(watts):
    ap = mapper.fit_active_power(watts)
    assert -32768 <= ap.value <= 32767
    assert abs(mapper.active_power_w(ap) - watts) <= 0.5 * 10**ap.multiplier


def test_limits_become_csipaus_elements_only_when_instructed():
    interval = EffectiveInterval(
        start=T0, end=None, export_max_w=50_000.0, import_max_w=7000.0,
        sources=(Source("i1", "ldc", InstructionKind.LIMIT, "export_max_w", 50_000.0),))
    base = mapper.control_base(interval, mapper.RenderOptions())
    assert base.opModExpLimW == m.ActivePower(multiplier=1, value=5000)
    assert base.opModImpLimW is None  # no instruction set it: the nameplate is not a control
    assert base.opModConnect is None


def test_dispatch_as_percent_and_disconnect():
    interval = EffectiveInterval(
        start=T0, end=None, export_max_w=1.0, import_max_w=1.0, setpoint_w=2500.0, connect=False,
        sources=(Source("d", "iso", InstructionKind.DISPATCH, "setpoint_w", 2500.0),
                 Source("c", "ldc", InstructionKind.CONNECTION, "connect", False)))
    base = mapper.control_base(interval, mapper.RenderOptions(dispatch_as="fixed_w",
                                                              rating_w=10_000.0))
    assert base.opModFixedW == 2500  # 25.00 %
    assert base.opModConnect is False
    assert base.opModEnergize is True


def test_response_codes_map_to_canonical():
    assert mapper.ack_status(1) is AckStatus.RECEIVED
    assert mapper.ack_status(3) is AckStatus.COMPLETED
    assert mapper.ack_status(252) is AckStatus.CANNOT_COMPLY
    with pytest.raises(KeyError):
        mapper.ack_status(99)


def test_mirrored_readings_scale_to_si():
    rt = m.ReadingType(uom=38, powerOfTenMultiplier=3)
    mmr = m.MirrorMeterReading(mRID="AA", MirrorReadingSet=[m.MirrorReadingSet(
        mRID="BB", timePeriod=m.DateTimeInterval(duration=60, start=1_700_000_000),
        Reading=[m.Reading(value=-2, timePeriod=m.DateTimeInterval(duration=60,
                                                                   start=1_700_000_030))])])
    (value,) = mapper.mirrored_values(rt, mmr, T0)
    assert value.quantity is Quantity.ACTIVE_POWER
    assert value.value == -2000.0
    assert value.at == datetime.fromtimestamp(1_700_000_030, UTC)


def test_server_mrid_shape():
    mrid = mapper.server_mrid(37244, "x", 1)
    assert len(mrid) == 32 and mrid == mrid.upper() and mrid.endswith("00037244")


def test_each_limit_element_carries_its_own_instructed_value():
    """A load cap of 0 W tightens canonical import to 0, but opModImpLimW stays as instructed."""
    interval = EffectiveInterval(
        start=T0, end=None, export_max_w=5000.0, import_max_w=0.0, load_max_w=0.0,
        sources=(Source("i1", "ldc", InstructionKind.LIMIT, "import_max_w", 5000.0),
                 Source("i1", "ldc", InstructionKind.LIMIT, "load_max_w", 0.0),
                 Source("i2", "ldc", InstructionKind.LIMIT, "import_max_w", 7000.0)))
    base = mapper.control_base(interval, mapper.RenderOptions())
    assert mapper.active_power_w(base.opModImpLimW) == 5000.0
    assert mapper.active_power_w(base.opModLoadLimW) == 0.0
    assert base.opModExpLimW is None


@pytest.mark.parametrize(("value", "valid"), [
    ("41020000002", True), ("4102000002", True), ("41020000026", True),
    ("41020000003", False), ("NOTAVALIDID", False), ("4102", False), ("410200000023", False),
])
def test_nmi_validation(value, valid):
    from adapters.ieee2030_5 import nmi

    assert nmi.is_valid(value) is valid


def test_open_ended_control_end_is_stable_and_extended_ahead():
    from adapters.ieee2030_5.controls import open_end

    day, start = 86_400, 1_700_000_000
    first = open_end(start, start + 10, 7 * day)
    assert first == start + 7 * day
    # re-rendered an hour or three days later: same end, so the same mRID
    assert open_end(start, start + 3600, 7 * day) == first
    assert open_end(start, start + 3 * day, 7 * day) == first
    # past half the horizon: extended by a whole horizon, always half a horizon ahead
    later = start + 4 * day
    assert open_end(start, later, 7 * day) == start + 14 * day
    for now in range(start, start + 30 * day, 6 * 3600):
        assert open_end(start, now, 7 * day) - now >= 3.5 * day
    assert open_end(start + day, start, 7 * day) == start + 8 * day  # starts in the future
