"""Function settings -> 705/711 curve points (pure): what 711 can express, and why not."""

import pytest

from adapters.modbus.curves import function_plan


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
    nothing = plan({"ramp_s": 10})
    assert not nothing.has_work
    assert plan({"freq_watt": [[60.036, 100], [62.4, 0]]}).fingerprint != plan(
        {"freq_watt": [[60.036, 100], [62.0, 0]]}).fingerprint
