"""Feeder co-simulation on the CIGRE LV benchmark: power flow with the shared DER model."""

from __future__ import annotations

import pytest

from simulators.der import Constant, DerModel, Rating
from simulators.der.curves import CurveError
from simulators.feeder import Feeder, FeederConfig, VoltWatt
from simulators.feeder.envelope import ControlledDer, Envelope

FAR = ("R11", "R15", "R16", "R17", "R18")  # leaves of the residential branch


def pv(w_max: float = 10_000.0, available: float = 1.0) -> DerModel:
    return DerModel(Rating(w_max=w_max), profile=Constant(available), ramp_pct_s=0.0)


def settle(feeder: Feeder, ders: list[ControlledDer], steps: int = 6, dt: float = 2.0):
    report = None
    for _ in range(steps):
        for d in ders:
            d.step(dt)
        report = feeder.solve()
    return report


def residential(per_bus: int = 4, **config) -> tuple[Feeder, list[ControlledDer]]:
    feeder = Feeder(FeederConfig(network="cigre_lv", source_pu=1.02, load_scale=0.1,
                                 band=(0.95, 1.05), **config))
    ders = []
    for n, bus in enumerate(b for b in FAR for _ in range(per_bus)):
        d = ControlledDer(pv())
        feeder.attach(f"d{n}", d.model, bus)
        ders.append(d)
    return feeder, ders


def test_full_export_at_the_leaves_pushes_voltage_out_of_band():
    feeder, ders = residential()
    report = settle(feeder, ders)
    assert report.converged
    assert report.der_p_w == pytest.approx(20 * 10_000, rel=1e-3)
    assert report.v_max_pu > 1.05 and not report.in_band
    assert set(report.out_of_band) >= {"Bus R15", "Bus R18"}
    # the voltage each DER sees is its bus voltage
    for n, d in enumerate(ders):
        bus = feeder.bus_of(f"d{n}")
        assert d.model.grid.v == pytest.approx(report.bus_v_pu[bus] * 240.0)


def test_an_export_limit_brings_the_feeder_back_into_band():
    feeder, ders = residential()
    settle(feeder, ders)
    for d in ders:
        d.apply(Envelope(export_max_w=5_000.0))
    report = settle(feeder, ders)
    assert report.in_band, report.line()
    assert report.der_p_w == pytest.approx(20 * 5_000, rel=1e-3)
    assert 1.0 < report.v_max_pu < 1.05


def test_volt_var_absorbs_vars_and_lowers_the_voltage():
    feeder_off, ders_off = residential()
    off = settle(feeder_off, ders_off)
    feeder_on, ders_on = residential()
    for d in ders_on:
        d.model.volt_var.write(enabled=True)
    on = settle(feeder_on, ders_on, steps=12)
    assert on.der_q_var < -1_000  # over-voltage: the curve absorbs
    assert on.v_max_pu < off.v_max_pu


def test_volt_watt_caps_output_at_high_voltage():
    feeder, ders = residential(per_bus=6)
    for d in ders:
        d.volt_watt = VoltWatt(v1_pu=1.04, v2_pu=1.10, p2_pu=0.2)
    report = settle(feeder, ders, steps=10)
    assert report.der_p_w < 30 * 10_000 * 0.95  # curtailed below the 300 kW available
    assert report.v_max_pu < 1.10
    assert VoltWatt().cap_pu(1.0) == 1.0 and VoltWatt().cap_pu(1.08) == pytest.approx(0.6)
    with pytest.raises(CurveError):
        VoltWatt(v1_pu=1.1, v2_pu=1.05)


def test_disconnect_and_setpoint_reach_the_model():
    feeder, ders = residential(per_bus=1)
    ders[0].apply(Envelope(connected=False))
    ders[1].apply(Envelope(setpoint_w=3_000.0, export_max_w=8_000.0))
    settle(feeder, ders)
    assert ders[0].measurement().w == 0.0 and not ders[0].measurement().connected
    assert ders[1].measurement().w == pytest.approx(3_000.0)
    ders[0].apply(Envelope())
    settle(feeder, ders)
    assert ders[0].measurement().w == pytest.approx(10_000.0)


def test_placement_round_robin_and_refusals():
    feeder = Feeder(FeederConfig())
    first = feeder.attach("a", pv())
    second = feeder.attach("b", pv())
    assert first != second and {first, second} <= set(feeder.hosts)
    with pytest.raises(ValueError, match="already attached"):
        feeder.attach("a", pv())
    with pytest.raises(ValueError, match="cannot host"):
        feeder.attach("c", pv(), "Bus 0")  # the MV slack side
    with pytest.raises(ValueError, match="unknown feeder"):
        FeederConfig(network="nowhere")
    with pytest.raises(ValueError, match="band"):
        FeederConfig(band=(1.1, 0.9))


def test_frequency_is_fed_to_every_der():
    feeder, ders = residential(per_bus=1)
    feeder.set_frequency(60.5)
    for d in ders:
        d.model.freq_watt.write(enabled=True)
    report = settle(feeder, ders, steps=8)
    assert all(d.model.grid.f == 60.5 for d in ders)
    assert report.der_p_w < 5 * 10_000 * 0.9  # over-frequency droop cut the output


def test_divergent_injection_is_reported_not_raised():
    feeder = Feeder(FeederConfig(der_scale=2_000.0))  # 20 MW into a 0.4 kV leaf
    d = ControlledDer(pv())
    feeder.attach("huge", d.model, "R18")
    d.step(1.0)
    report = feeder.solve()
    assert not report.converged and not report.in_band
    assert "did not converge" in report.line()


async def test_async_step_solves_in_a_worker_thread():
    feeder, ders = residential(per_bus=1)
    for d in ders:
        d.step(1.0)
    report = await feeder.step()
    assert report.converged and feeder.last is report
    assert "feeder V" in report.line()
