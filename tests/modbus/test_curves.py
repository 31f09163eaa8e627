"""Function settings -> 705/706/711/712 curve points and 704/703 ramp points (pure): what
SunSpec can express, and why not."""

from datetime import UTC, datetime

import pytest

from adapters.modbus.mapper import plan_for
from adapters.modbus.sunspec.curves import function_plan
from gateway.domain import EffectiveControl, InstructionKind, Source


def plan(settings, nominal_hz=60.0):
    return function_plan(settings, "ins-f", nominal_hz)


def test_freq_droop_parameters_map_one_to_one_onto_711():
    p = plan({"freq_droop": {"db_of_hz": 0.036, "db_uf_hz": 0.036, "k_of": 0.05,
                             "k_uf": 0.04, "response_s": 5, "p_min_pct": 10}})
    [curve] = p.curves
    assert (curve.model_id, curve.setting) == (711, "freq_droop")
    assert dict(curve.points) == {"DbOf": 0.036, "DbUf": 0.036, "KOf": 0.05, "KUf": 0.04,
                                  "RspTms": 5.0, "PMin": 10.0}
    assert p.refusals == () and p.instruction_id == "ins-f"


def test_a_droop_shaped_freq_watt_curve_becomes_the_over_frequency_half_of_711():
    # full output up to 60.036 Hz, falling to 0 % at 62.4 Hz: k = (2.364 / 60) / 1
    [curve] = plan({"freq_watt": [[59.0, 100], [60.036, 100], [62.4, 0]]}).curves
    points = dict(curve.points)
    assert set(points) == {"DbOf", "KOf", "PMin"}  # under-frequency stays as the device has it
    assert points["DbOf"] == pytest.approx(0.036)
    assert points["KOf"] == pytest.approx(2.364 / 60.0)
    assert points["PMin"] == 0.0
    # one slope drawn with three points (100 -> 80 -> 40 %), then a 40 % floor
    [curve] = plan({"freq_watt": [[60.5, 100], [61.1, 80], [62.3, 40], [63, 40]]},
                   nominal_hz=60.0).curves
    points = dict(curve.points)
    assert points["DbOf"] == pytest.approx(0.5)
    assert points["KOf"] == pytest.approx((1.8 / 60.0) / 0.6)
    assert points["PMin"] == 40.0
    [curve] = plan({"freq_watt": [[50.2, 100], [52.2, 0]]}, nominal_hz=50.0).curves
    assert dict(curve.points)["KOf"] == pytest.approx(0.04)


@pytest.mark.parametrize(("points", "why"), [
    ([[60.0, 80], [60.5, 80], [62, 0]], "cap belongs in a limit"),
    ([[100.06, 100], [104, 0]], "frequencies in Hz"),  # percent of nominal, not hertz
    ([[60.0, 100], [61.0, 50], [61.5, 60], [62, 0]], "rises"),
    ([[60.0, 100], [61.0, 50], [62, 40]], "more than one slope"),
    ([[59.5, 100], [62, 0]], "below the nominal"),
    ([[59.0, 100], [61.0, 100]], "never reduces power"),
    ([[61.0, 100], [60.0, 0]], "strictly increase"),
    ([[60.5, 100]], "at least two"),
])
def test_curves_711_cannot_express_are_refused_with_a_reason(points, why):
    p = plan({"freq_watt": points})
    assert p.curves == ()
    [refusal] = p.refusals
    assert refusal.startswith("freq_watt: ") and why in refusal


def test_bad_droop_parameters_are_refused_and_other_settings_still_render():
    p = plan({"freq_droop": {"db_of_hz": 0.036, "k_of": 0.05},
              "volt_var": [[95, 30], [105, -30]]})
    assert [c.model_id for c in p.curves] == [705]
    [refusal] = p.refusals
    assert "missing db_uf_hz, k_uf" in refusal
    assert "must be > 0" in plan({"freq_droop": {"db_of_hz": 0.0, "db_uf_hz": 0.0,
                                                 "k_of": 0.0, "k_uf": 0.05}}).refusals[0]


def test_freq_droop_wins_over_freq_watt_and_settings_without_curves_are_not_ours():
    p = plan({"freq_droop": {"db_of_hz": 0.1, "db_uf_hz": 0.1, "k_of": 0.05, "k_uf": 0.05},
              "freq_watt": [[60.0, 80], [61.0, 0]]})  # not expressible, but not used either
    assert [c.setting for c in p.curves] == ["freq_droop"] and p.refusals == ()
    nothing = plan({"volt_watt_y_ref": 7, "es_delay_s": 5})  # no function of ours in it
    assert not nothing.has_work
    assert plan({"freq_watt": [[60.036, 100], [62.4, 0]]}).fingerprint != plan(
        {"freq_watt": [[60.036, 100], [62.0, 0]]}).fingerprint


def test_volt_watt_becomes_a_706_curve_with_its_dependent_reference():
    p = plan({"volt_watt": [[106, 100], [110, 0]]})
    [curve] = p.curves
    assert (curve.model_id, curve.setting) == (706, "volt_watt")
    assert dict(curve.points) == {"ActPt": 2, "DeptRef": 0,  # W_MAX_PCT (2030.5 %setMaxW)
                                  "Pt[0].V": 106.0, "Pt[0].W": 100.0,
                                  "Pt[1].V": 110.0, "Pt[1].W": 0.0}
    [curve] = plan({"volt_watt": [[106, 100], [110, 0]], "volt_watt_y_ref": 7,
                    "volt_watt_response_s": 2}).curves
    assert dict(curve.points)["DeptRef"] == 1  # W_AVAL_PCT (2030.5 %statWAvail)
    assert dict(curve.points)["RspTms"] == 2.0
    assert p.refusals == () and p.settings == ()


def test_watt_var_becomes_a_712_curve_with_its_dependent_reference():
    [curve] = plan({"watt_var": [[20, 0], [50, 0], [100, -44]]}).curves
    assert (curve.model_id, curve.setting) == (712, "watt_var")
    assert dict(curve.points) == {"ActPt": 3, "DeptRef": 0,  # W_MAX_PCT, as 2030.5 defaults
                                  "Pt[0].W": 20.0, "Pt[0].Var": 0.0, "Pt[1].W": 50.0,
                                  "Pt[1].Var": 0.0, "Pt[2].W": 100.0, "Pt[2].Var": -44.0}
    for y_ref, dept_ref in ((2, 1), (3, 2)):  # %setMaxVar, %statVarAvail
        [curve] = plan({"watt_var": [[0, 0], [100, -100]], "watt_var_y_ref": y_ref}).curves
        assert dict(curve.points)["DeptRef"] == dept_ref


def test_volt_var_honours_its_y_reference_as_705_deptref():
    """The y reference (2030.5 yRefType) is the platform's: absent, volt-var vars are % of
    the maximum reactive power (DeptRef VAR_MAX_PCT), as before."""
    [curve] = plan({"volt_var": [[95, 40], [105, -40]]}).curves
    assert (curve.model_id, dict(curve.points)) == (705, {
        "ActPt": 2, "DeptRef": 1, "Pt[0].V": 95.0, "Pt[0].Var": 40.0, "Pt[1].V": 105.0,
        "Pt[1].Var": -40.0})
    for y_ref, dept_ref in ((1, 0), (2, 1), (3, 2)):  # W_MAX_PCT, VAR_MAX_PCT, VAR_AVAL_PCT
        p = plan({"volt_var": [[95, 40], [105, -40]], "volt_var_y_ref": y_ref})
        assert dict(p.curves[0].points)["DeptRef"] == dept_ref and p.refusals == ()
    assert plan({"volt_var": [[95, 40], [105, -40]], "volt_var_y_ref": 3}).fingerprint != \
        plan({"volt_var": [[95, 40], [105, -40]]}).fingerprint


def test_set_grad_w_is_also_read_from_the_default_control():
    """One meaning in either document; the function settings win when both carry it, and
    the acknowledgement goes to the instruction the ramp came from."""
    now = datetime(2025, 1, 1, tzinfo=UTC)
    dflt = Source("ins-d", "ldc-a", InstructionKind.DEFAULT_CONTROL, "default")
    func = Source("ins-f", "ldc-a", InstructionKind.FUNCTION_SETTINGS, "settings")
    only_default = EffectiveControl("d", (), default_control={"set_grad_w": 500},
                                    default_source=dflt)
    functions = plan_for(only_default, now, 10_000.0, 60).functions
    assert [dict(s.points) for s in functions.settings] == [{"WRmp": 5.0, "WRmpRef": 1}]
    assert functions.instruction_id == "ins-d"
    both = EffectiveControl("d", (), default_control={"set_grad_w": 500}, default_source=dflt,
                            function_settings={"set_grad_w": 2000}, function_source=func)
    functions = plan_for(both, now, 10_000.0, 60).functions
    assert [dict(s.points) for s in functions.settings] == [{"WRmp": 20.0, "WRmpRef": 1}]
    assert functions.instruction_id == "ins-f"
    no_ramp = EffectiveControl("d", (), default_control={"export_max_w": 1}, default_source=dflt)
    assert not plan_for(no_ramp, now, 10_000.0, 60).functions.has_work


@pytest.mark.parametrize(("settings", "why"), [
    ({"volt_watt": [[106, 100], [110, 0]], "volt_watt_y_ref": 2},
     "not a y reference of a volt_watt curve; it can be 1 (%setMaxW), 7 (%statWAvail)"),
    ({"watt_var": [[0, 0], [100, -44]], "watt_var_y_ref": 4}, "not a y reference"),
    ({"volt_var": [[95, 40], [105, -40]], "volt_var_y_ref": 7},
     "it can be 1 (%setMaxW), 2 (%setMaxVar), 3 (%statVarAvail)"),
    ({"volt_var": [[95, 40], [105, -40]], "volt_var_y_ref": "2"}, "not a y reference"),
    ({"watt_var": [[100, 0], [50, 0]]}, "strictly increase"),
    ({"volt_watt": [[106, 100], [110, 0]], "volt_watt_response_s": -1}, "negative"),
    ({"watt_pf": [[0, 1], [100, 0.9]]}, "no watt-power-factor curve"),
])
def test_curves_sunspec_cannot_express_are_refused_with_a_reason(settings, why):
    p = plan(settings)
    assert p.curves == ()
    [refusal] = p.refusals
    assert why in refusal


def test_ramp_rates_become_704_wrmp_and_703_esrmptms():
    p = plan({"set_grad_w": 2000, "set_soft_grad_w": 50})  # 20 %/s; 0.5 %/s soft start
    assert [(s.model_id, s.setting, dict(s.points)) for s in p.settings] == [
        (704, "set_grad_w", {"WRmp": 20.0, "WRmpRef": 1}),  # W_MAX
        (703, "set_soft_grad_w", {"ESRmpTms": 200.0}),  # 100 % at 0.5 %/s
    ]
    assert p.curves == () and p.refusals == () and p.has_work
    assert plan({"set_grad_w": 2000}).fingerprint != plan({"set_grad_w": 1000}).fingerprint


@pytest.mark.parametrize(("settings", "why"), [
    ({"ramp_s": 10}, "a time is not a rate"),
    ({"set_grad_w": 150}, "not a whole percent per second"),
    ({"set_grad_w": 0}, "no value for no limit"),
    ({"set_soft_grad_w": 20_000}, "under a second"),
    ({"set_soft_grad_w": "fast"}, "finite number"),
])
def test_ramp_settings_sunspec_cannot_express_are_refused_with_a_reason(settings, why):
    p = plan(settings)
    assert p.settings == () and p.has_work
    [refusal] = p.refusals
    assert refusal.startswith(f"{next(iter(settings))}: ") and why in refusal
