"""The shared DER physics: ramps, limits, setpoints, reversion, var modes, curves, battery."""

import math

import pytest

from simulators.der import (
    Constant,
    CurveError,
    DerModel,
    EnterService,
    FreqDroop,
    Grid,
    PowerFactor,
    Rating,
    RunState,
    Throttle,
    VoltVarCurve,
    VoltWattCurve,
    WattVarCurve,
)

PV = Rating(w_max=10_000.0, va_max=10_000.0, var_max=4_400.0)


def run(model: DerModel, seconds: float, dt: float = 0.1) -> None:
    for _ in range(round(seconds / dt)):
        model.step(dt)


def test_pv_ramps_up_at_wrmp_then_follows_available_power():
    model = DerModel(PV, profile=Constant(0.8), ramp_pct_s=20.0)
    run(model, 1.0)
    assert model.measurement().w == pytest.approx(2_000.0, rel=1e-6)  # 20 %/s of 10 kW
    run(model, 10.0)
    m = model.measurement()
    assert m.w == pytest.approx(8_000.0)
    assert m.state == RunState.RUNNING and m.connected


def test_wmaxlimpct_caps_output_within_the_ramp_and_flags_throttle():
    model = DerModel(PV, profile=Constant(1.0), ramp_pct_s=20.0)
    run(model, 6.0)
    model.w_max_lim.write(value=0.3, enabled=True)
    run(model, 1.0)
    assert model.measurement().w == pytest.approx(8_000.0)  # still ramping down
    run(model, 3.0)
    m = model.measurement()
    assert m.w == pytest.approx(3_000.0)
    assert m.throttle & Throttle.MAX_W and m.state == RunState.THROTTLED
    assert m.throttle_pct == pytest.approx(70.0)


def test_limit_reverts_when_not_refreshed_and_holds_while_refreshed():
    model = DerModel(PV, profile=Constant(1.0), ramp_pct_s=0.0)
    model.w_max_lim.write(value=0.5, enabled=True, revert_value=1.0, revert_enabled=False,
                          timeout_s=10.0)
    for _ in range(6):  # refreshed every 5 s for 30 s
        run(model, 5.0)
        assert model.measurement().w == pytest.approx(5_000.0)
        model.w_max_lim.write(timeout_s=10.0)
    run(model, 9.9)
    assert model.w_max_lim.enabled
    run(model, 0.2)
    assert not model.w_max_lim.enabled and model.w_max_lim.reverted == 1
    assert model.measurement().w == pytest.approx(10_000.0)


def test_wset_charges_battery_and_stops_at_soc_limits():
    batt = Rating(w_max=5_000.0, pv=False, w_cha_max=5_000.0, wh_max=1_000.0, soc_max_pct=60.0)
    model = DerModel(batt, soc_pct=50.0, ramp_pct_s=0.0)
    model.w_set.write(value=-3_600.0, enabled=True)
    run(model, 10.0, dt=1.0)
    m = model.measurement()
    assert m.w == pytest.approx(-3_600.0)
    assert m.soc_pct == pytest.approx(50.0 + 3_600 * 0.95 * 10 / 3600 / 1_000 * 100)
    run(model, 200.0, dt=1.0)
    assert model.measurement().w == 0.0  # full: no more charging
    assert model.soc_pct == pytest.approx(60.0, abs=1.0)


def test_battery_discharge_setpoint_clipped_by_limit():
    batt = Rating(w_max=5_000.0, pv=False, wh_max=10_000.0)
    model = DerModel(batt, soc_pct=80.0, ramp_pct_s=0.0)
    model.w_set.write(value=4_000.0, enabled=True)
    model.w_max_lim.write(value=0.5, enabled=True)
    model.step(1.0)
    m = model.measurement()
    assert m.w == pytest.approx(2_500.0)
    assert m.throttle & Throttle.MAX_W and m.throttle & Throttle.FIXED_W
    assert model.soc_pct < 80.0


def test_volt_var_absorbs_at_high_voltage_with_its_response_time():
    model = DerModel(PV, profile=Constant(0.5), ramp_pct_s=0.0, grid=Grid(252.0, 60.0))
    model.volt_var.write(enabled=True)  # default curve: 105 % -> -22 % of var_max
    model.step(5.0)  # one response time: 90 % of the step
    assert model.measurement().var == pytest.approx(-0.22 * 4_400 * 0.9, rel=0.01)
    run(model, 30.0, dt=1.0)
    m = model.measurement()
    assert m.var == pytest.approx(-968.0, rel=1e-3)
    assert m.pf < 0 and m.throttle & Throttle.VOLT_VAR


def test_volt_watt_curtails_active_power_with_voltage_and_its_response_time():
    model = DerModel(PV, profile=Constant(0.8), ramp_pct_s=0.0, grid=Grid(240.0, 60.0))
    model.volt_watt.write(value=VoltWattCurve(((106.0, 100.0), (110.0, 0.0)), response_s=2.0),
                          enabled=True)
    model.step(1.0)
    assert model.measurement().w == pytest.approx(8_000.0)  # 100 %: nothing to curtail
    model.grid = Grid(259.2, 60.0)  # 108 %: the curve allows 50 % of w_max
    model.step(2.0)  # one response time: 90 % of the way from 100 % to 50 %
    assert model.measurement().w == pytest.approx(10_000.0 * (1.0 - 0.5 * 0.9), rel=0.01)
    run(model, 20.0, dt=1.0)
    m = model.measurement()
    assert m.w == pytest.approx(5_000.0, rel=1e-3)
    assert m.throttle & Throttle.VOLT_WATT and m.state == RunState.THROTTLED
    model.volt_watt.write(value=VoltWattCurve(((106.0, 100.0), (110.0, 0.0)),
                                              of_available=True, response_s=0.0))
    model.step(1.0)
    assert model.measurement().w == pytest.approx(4_000.0)  # 50 % of the 8 kW available


def test_watt_var_sets_reactive_power_from_active_power():
    model = DerModel(PV, profile=Constant(0.75), ramp_pct_s=0.0)
    model.watt_var.write(value=WattVarCurve(((50.0, 0.0), (100.0, -100.0))), enabled=True)
    model.step(1.0)
    m = model.measurement()  # 75 % of w_max: half-way down to -100 % of var_max
    assert m.w == pytest.approx(7_500.0) and m.var == pytest.approx(-2_200.0)
    assert m.throttle & Throttle.WATT_VAR
    model.volt_var.write(enabled=True)  # volt-var, when on, takes precedence
    model.step(1.0)
    assert not model.measurement().throttle & Throttle.WATT_VAR


def test_freq_droop_reduces_output_above_the_dead_band():
    model = DerModel(PV, profile=Constant(1.0), ramp_pct_s=0.0, grid=Grid(240.0, 60.5))
    model.freq_watt.write(value=FreqDroop(response_s=0.0), enabled=True)
    model.step(1.0)
    expected = 10_000.0 * (1 - (60.5 - 60.036) / (60.0 * 0.05))
    assert model.measurement().w == pytest.approx(expected)
    model.grid = Grid(240.0, 60.0)
    model.step(1.0)
    assert model.measurement().w == pytest.approx(10_000.0)


def test_constant_pf_and_va_limit_with_reactive_priority():
    model = DerModel(PV, profile=Constant(0.5), ramp_pct_s=0.0)
    model.pf_inj.write(value=PowerFactor(0.9, over_excited=True), enabled=True)
    model.step(1.0)
    m = model.measurement()
    assert m.var == pytest.approx(5_000.0 * math.tan(math.acos(0.9)))
    assert m.pf == pytest.approx(0.9)
    model.var_set.write(value=4_400.0, enabled=True)
    model.profile = Constant(1.0)
    model.step(1.0)
    m = model.measurement()
    assert m.var == pytest.approx(4_400.0)  # VarSet wins over PF
    assert m.w == pytest.approx(math.sqrt(10_000.0**2 - 4_400.0**2))


def test_cease_to_energize_and_enter_service_delay():
    model = DerModel(PV, profile=Constant(1.0), ramp_pct_s=0.0,
                     enter_service=EnterService(delay_s=3.0))
    model.step(1.0)
    assert model.measurement().state == RunState.STARTING and model.measurement().w == 0.0
    run(model, 2.5, dt=0.5)
    assert model.connected and model.measurement().w == pytest.approx(10_000.0)
    model.enter_service = EnterService(enabled=False)
    model.step(0.5)
    m = model.measurement()
    assert (m.w, m.connected, m.state) == (0.0, False, RunState.OFF)
    model.enter_service = EnterService(delay_s=1.0)
    model.grid = Grid(270.0, 60.0)  # 112.5 %: outside the enter-service window
    run(model, 5.0, dt=0.5)
    assert not model.connected
    model.grid = Grid(240.0, 60.0)
    run(model, 1.5, dt=0.5)
    assert model.connected


@pytest.mark.parametrize(
    "points",
    [((100.0, 0.0),), ((98.0, 10.0), (98.0, 0.0)), ((40.0, 0.0), (100.0, 0.0)),
     ((98.0, 120.0), (102.0, 0.0))],
)
def test_bad_volt_var_curves_are_refused(points):
    with pytest.raises(CurveError):
        VoltVarCurve(points)


def test_bad_volt_watt_and_watt_var_curves_are_refused():
    with pytest.raises(CurveError, match="strictly increase"):
        VoltWattCurve(((110.0, 0.0), (106.0, 100.0)))
    with pytest.raises(CurveError, match="within -100"):
        WattVarCurve(((0.0, 0.0), (100.0, -150.0)))


def test_bad_droop_and_pf_are_refused():
    with pytest.raises(CurveError):
        FreqDroop(k_of=0.5)
    with pytest.raises(CurveError):
        PowerFactor(0.0)


def test_thousand_ders_step_fast():
    import time

    fleet = [DerModel(PV, profile=Constant(0.7)) for _ in range(1_000)]
    for der in fleet:
        der.volt_var.write(enabled=True)
    start = time.perf_counter()
    for der in fleet:
        der.step(1.0)
    assert time.perf_counter() - start < 0.5  # ~20 us each on a laptop
