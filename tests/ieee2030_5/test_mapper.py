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


DROOP = {"db_of_hz": 0.036, "db_uf_hz": 0.017, "k_of": 0.05, "k_uf": 0.04, "response_s": 2.5}


def test_freq_droop_settings_become_freq_droop_type():
    """Dead bands in mHz, gains in thousandths, openLoopTms in hundredths of a second."""
    standing = mapper.standing_functions({"freq_droop": DROOP})
    assert standing.freq_droop == m.FreqDroopType(dBOF=36, dBUF=17, kOF=50, kUF=40,
                                                  openLoopTms=250)
    assert standing.refusals == ()
    no_time = mapper.standing_functions({"freq_droop": {**DROOP, "response_s": None}})
    assert no_time.freq_droop.openLoopTms == 500  # the 1547 default, 5 s
    assert mapper.standing_functions({"volt_var": [[95, 40], [105, -40]]}) == \
        mapper.StandingFunctions()


def test_freq_droop_goes_into_default_control_and_every_control():
    dderc = mapper.default_control({"export_max_w": 1500}, "AB", "/dderc", {"freq_droop": DROOP})
    assert dderc.DERControlBase.opModFreqDroop.kOF == 50
    assert dderc.DERControlBase.opModExpLimW is not None
    assert mapper.default_control({}, "AB", "/dderc").DERControlBase.opModFreqDroop is None
    interval = EffectiveInterval(
        start=T0, end=None, export_max_w=5000.0, import_max_w=0.0,
        sources=(Source("i1", "ldc", InstructionKind.LIMIT, "export_max_w", 5000.0),))
    droop = mapper.standing_functions({"freq_droop": DROOP}).freq_droop
    base = mapper.control_base(interval, mapper.RenderOptions(freq_droop=droop))
    assert base.opModFreqDroop == droop


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ([0.036, 0.036, 0.05, 0.05], "expected"),
        ({"db_of_hz": 0.036, "k_of": 0.05, "k_uf": 0.05}, "missing db_uf_hz"),
        ({**DROOP, "k_of": "0.05"}, "k_of must be a finite number"),
        ({**DROOP, "db_uf_hz": float("nan")}, "db_uf_hz must be a finite number"),
        ({**DROOP, "k_uf": True}, "k_uf must be a finite number"),
        ({**DROOP, "db_of_hz": -0.01}, "db_of_hz -0.01 is outside"),
        ({**DROOP, "k_of": 0}, "k_of 0 is outside"),
        ({**DROOP, "k_uf": 70}, "k_uf 70 is outside"),
        ({**DROOP, "response_s": 700}, "response_s 700 is outside"),
    ],
    ids=["not-a-mapping", "missing", "string", "nan", "bool", "negative-band", "zero-gain",
         "gain-too-big", "response-too-long"],
)
def test_bad_freq_droop_is_refused_not_raised(params, reason):
    standing = mapper.standing_functions({"freq_droop": params})
    assert standing.freq_droop is None
    (refusal,) = standing.refusals
    assert refusal.startswith("freq_droop: ") and reason in refusal
    dderc = mapper.default_control({}, "AB", "/dderc", {"freq_droop": params})
    assert dderc.DERControlBase.opModFreqDroop is None


def test_freq_droop_minimum_power_is_noted_as_not_sent():
    standing = mapper.standing_functions({"freq_droop": {**DROOP, "p_min_pct": 20}})
    assert standing.freq_droop is not None
    (refusal,) = standing.refusals
    assert "p_min_pct 20 not sent" in refusal
    assert mapper.standing_functions({"freq_droop": {**DROOP, "p_min_pct": 0}}).refusals == ()
