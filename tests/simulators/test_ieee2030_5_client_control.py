"""The simulated 2030.5 client applies a DefaultDERControl's ramp settings (setGradW,
setSoftGradW: hundredths of a percent of setMaxW per second) to its DER. Pure."""

import pytest

from adapters.ieee2030_5.codec import models as m
from simulators.der import DerModel, Rating
from simulators.feeder.envelope import ControlledDer, Envelope
from simulators.ieee2030_5_client import control

PV = Rating(w_max=10_000.0, va_max=10_000.0, var_max=4_400.0)


def dderc(**values) -> m.DefaultDERControl:
    return m.DefaultDERControl(href="/dderc", mRID="AB", DERControlBase=m.DERControlBase(),
                               **values)


def test_default_control_ramps_become_the_ders_ramp_settings():
    env = control.default_envelope(dderc(setGradW=2000, setSoftGradW=50), PV.w_max)
    assert (env.ramp_pct_s, env.soft_start_s) == (20.0, 200.0)  # 20 %/s; 100 % in 200 s
    env = control.default_envelope(dderc(setGradW=0, setSoftGradW=0), PV.w_max)
    assert (env.ramp_pct_s, env.soft_start_s) == (0.0, 0.0)  # 0: no limit
    env = control.default_envelope(dderc(), PV.w_max)
    assert (env.ramp_pct_s, env.soft_start_s) == (None, None)
    # an active event leaves them out: the default's fill in
    merged = control.merged(Envelope(export_max_w=5_000.0), control.default_envelope(
        dderc(setGradW=2000), PV.w_max))
    assert (merged.export_max_w, merged.ramp_pct_s) == (5_000.0, 20.0)


def test_the_der_follows_the_told_ramp_and_keeps_it():
    der = ControlledDer(DerModel(PV, ramp_pct_s=0.0))
    der.apply(control.default_envelope(dderc(setGradW=1000, setSoftGradW=100), PV.w_max))
    assert der.model.ramp_pct_s == 10.0 and der.model.enter_service.ramp_s == 100.0
    der.apply(Envelope(export_max_w=2_000.0))
    for _ in range(10):
        der.step(0.1)
    w = der.measurement().w
    der.apply(Envelope())  # no longer capped: output rises at 10 % of 10 kW per second
    for _ in range(10):
        der.step(0.1)
    assert der.measurement().w - w == pytest.approx(1_000.0, abs=50.0)
    assert der.model.ramp_pct_s == 10.0  # a setting, not an event: it stays
