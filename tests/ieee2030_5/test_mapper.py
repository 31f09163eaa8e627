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
    from adapters.ieee2030_5.function_sets import nmi

    assert nmi.is_valid(value) is valid


def test_open_ended_control_end_is_stable_and_extended_ahead():
    from adapters.ieee2030_5.render import open_end

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


def test_curve_y_references_follow_the_platform_defaults_and_the_settings():
    """yRefType is `<curve>_y_ref`; absent, volt-var vars are %setMaxVar (2) and every other
    curve's y is %setMaxW (1), as the SunSpec adapter reads them."""
    settings = {"volt_var": [[95, 40], [105, -40]], "volt_watt": [[106, 100], [110, 0]],
                "watt_var": [[50, 0], [100, -44]]}
    refs = {key: c.yRefType for key, c in mapper.curves(settings, T0)}
    assert refs == {"volt_var": 2, "volt_watt": 1, "watt_var": 1}
    chosen = {**settings, "volt_var_y_ref": 3, "volt_watt_y_ref": 7, "watt_var_y_ref": 2}
    refs = {key: c.yRefType for key, c in mapper.curves(chosen, T0)}
    assert refs == {"volt_var": 3, "volt_watt": 7, "watt_var": 2}
    assert mapper.standing_functions(chosen).refusals == ()


def test_volt_watt_response_time_is_the_curves_open_loop_time():
    settings = {"volt_watt": [[106, 100], [110, 0]], "volt_watt_response_s": 2.5,
                "volt_var": [[95, 40], [105, -40]]}
    curves = dict(mapper.curves(settings, T0))
    assert curves["volt_watt"].openLoopTms == 250  # hundredths of a second
    assert curves["volt_var"].openLoopTms is None  # volt_watt_response_s is volt-watt's only


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"volt_var_y_ref": 7}, "volt_var: volt_var_y_ref 7 is not a y reference of a "
                                "volt_var curve; it can be 1 (%setMaxW), 2 (%setMaxVar)"),
        ({"volt_watt_y_ref": 2}, "volt_watt: volt_watt_y_ref 2 is not a y reference"),
        ({"watt_var_y_ref": "1"}, "watt_var: watt_var_y_ref '1' is not a y reference"),
        ({"volt_watt_response_s": -1}, "volt_watt: volt_watt_response_s -1 is outside"),
        ({"volt_watt_response_s": 700}, "volt_watt: volt_watt_response_s 700 is outside"),
        ({"volt_var": [[90 + i, 0] for i in range(11)]}, "volt_var: expected a list of 1 to 10"),
        ({"watt_var": [[50, "x"], [100, 0]]}, "watt_var: y must be a finite number"),
    ],
    ids=["volt-var-ref", "volt-watt-ref", "ref-not-int", "negative-time", "time-too-long",
         "too-many-points", "not-a-number"],
)
def test_curves_2030_5_cannot_express_are_refused_and_left_out(settings, reason):
    base = {"volt_var": [[95, 40], [105, -40]], "volt_watt": [[106, 100], [110, 0]],
            "watt_var": [[50, 0], [100, -44]]}
    settings = {**base, **settings}
    (refusal,) = mapper.standing_functions(settings).refusals
    assert refusal.startswith(reason)
    refused = refusal.split(":", 1)[0]
    kept = [key for key, _ in mapper.curves(settings, T0)]
    assert refused not in kept and len(kept) == 2
    links = mapper.curve_links(settings, "/dc")
    assert mapper.CURVE_ELEMENTS[refused] not in links
    assert sorted(links.values()) == ["/dc/1", "/dc/2"]  # numbered as `curves` lists them


def test_ramp_rates_go_into_the_default_control():
    """setGradW / setSoftGradW: hundredths of a percent of setMaxW per second (0: no limit).
    `set_grad_w` has one meaning in either document; the function settings win."""
    dderc = mapper.default_control({}, "AB", "/dderc", {"set_grad_w": 2000,
                                                          "set_soft_grad_w": 50})
    assert (dderc.setGradW, dderc.setSoftGradW) == (2000, 50)
    assert mapper.default_control({"set_grad_w": 27}, "AB", "/dderc").setGradW == 27
    both = mapper.default_control({"set_grad_w": 27}, "AB", "/dderc", {"set_grad_w": 0})
    assert both.setGradW == 0
    none = mapper.default_control({}, "AB", "/dderc", {"volt_var": [[95, 40], [105, -40]]})
    assert (none.setGradW, none.setSoftGradW) == (None, None)


@pytest.mark.parametrize(("settings", "reason"), [
    ({"set_grad_w": -1}, "set_grad_w: set_grad_w -1 is outside 0..65535"),
    ({"set_soft_grad_w": 70_000}, "set_soft_grad_w: set_soft_grad_w 70000 is outside"),
    ({"set_soft_grad_w": "fast"}, "set_soft_grad_w: set_soft_grad_w must be a finite number"),
])
def test_ramp_rates_2030_5_cannot_express_are_refused_and_not_sent(settings, reason):
    (refusal,) = mapper.standing_functions(settings).refusals
    assert refusal.startswith(reason)
    dderc = mapper.default_control({}, "AB", "/dderc", settings)
    assert (dderc.setGradW, dderc.setSoftGradW) == (None, None)
