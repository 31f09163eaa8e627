"""The 2030.5 client's event schedule and control mapping, walked through time (pure)."""

from __future__ import annotations

import time

from adapters.ieee2030_5.codec import models as m
from simulators.der import Constant, DerModel, FreqDroop, Rating
from simulators.feeder.envelope import ControlledDer, Envelope
from simulators.ieee2030_5_client import control
from simulators.ieee2030_5_client.device import DeviceAgent
from simulators.ieee2030_5_client.events import (
    CANCELLED,
    COMPLETED,
    RECEIVED,
    STARTED,
    SUPERSEDED,
    Event,
    Schedule,
)

T0 = 1_800_000_000


def event(mrid: str, start: int, duration: int, created: int = T0, status: int = 0,
          primacy: int = 1, export_w: int | None = 5000, **kw) -> Event:
    base = m.DERControlBase(opModExpLimW=None if export_w is None else m.ActivePower(
        multiplier=0, value=export_w))
    return Event(mrid=mrid, primacy=primacy, created=created, start=start, duration=duration,
                 status=status, base=base, reply_to="/rsps/1/rsp", response_required=3, **kw)


def statuses(due) -> list[tuple[str, int]]:
    return [(d.mrid, d.status) for d in due]


def test_lifecycle_received_started_completed():
    s = Schedule("dev")
    s.update([event("A", T0 + 10, 20)])
    active, due = s.tick(T0)
    assert active is None and statuses(due) == [("A", RECEIVED)]
    active, due = s.tick(T0 + 10)
    assert active.mrid == "A" and statuses(due) == [("A", STARTED)]
    assert s.tick(T0 + 15) == (active, [])
    active, due = s.tick(T0 + 30)
    assert active is None and statuses(due) == [("A", COMPLETED)]


def test_server_cancel_and_supersede_statuses_win():
    s = Schedule("dev")
    s.update([event("A", T0, 100), event("B", T0 + 200, 100)])
    s.tick(T0 + 1)
    s.update([event("A", T0, 100, status=4), event("B", T0 + 200, 100, status=2)])
    active, due = s.tick(T0 + 2)
    assert active is None
    assert sorted(statuses(due)) == [("A", SUPERSEDED), ("B", CANCELLED)]


def test_newer_overlapping_event_supersedes_locally_and_primacy_orders():
    s = Schedule("dev")
    s.update([event("OLD", T0, 100, created=T0 - 10), event("NEW", T0 + 50, 100, created=T0),
              event("PRIO", T0, 300, primacy=0, created=T0 - 20)])
    active, due = s.tick(T0 + 1)
    assert ("OLD", SUPERSEDED) in statuses(due)
    assert active.mrid == "PRIO"  # lower primacy wins over NEW once NEW starts as well
    active, _ = s.tick(T0 + 60)
    assert active.mrid == "PRIO"


def test_randomized_start_is_reproducible_and_bounded():
    starts = set()
    for seed in ("a", "b", "c", "d", "e", "f"):
        s = Schedule(seed)
        e = event("R", T0, 600, randomize_start=120)
        start, end = s.window(e)
        assert T0 <= start <= T0 + 120 and end - start == 600
        assert Schedule(seed).window(e) == (start, end)
        starts.add(start)
    assert len(starts) > 1  # devices spread out


def test_responses_only_when_required():
    s = Schedule("dev")
    quiet = Event(mrid="Q", primacy=1, created=T0, start=T0, duration=10, status=0,
                  base=m.DERControlBase(), reply_to="/rsps/1/rsp", response_required=0)
    s.update([quiet])
    active, due = s.tick(T0)
    assert active is quiet and due == []


def test_control_base_to_envelope():
    base = m.DERControlBase(opModExpLimW=m.ActivePower(multiplier=1, value=450),
                            opModGenLimW=m.ActivePower(multiplier=0, value=5000),
                            opModImpLimW=m.ActivePower(multiplier=0, value=3000),
                            opModFixedW=2500, opModConnect=True)
    env = control.envelope_of(base, 10_000.0)
    assert env == Envelope(export_max_w=4500.0, import_max_w=3000.0, setpoint_w=2500.0)
    assert not control.envelope_of(m.DERControlBase(opModEnergize=False), 1.0).connected
    default = Envelope(export_max_w=1000.0, import_max_w=500.0)
    assert control.merged(Envelope(setpoint_w=700.0), default) == Envelope(
        export_max_w=1000.0, import_max_w=500.0, setpoint_w=700.0)
    assert control.merged(None, default) == default


def test_comms_loss_falls_back_to_the_default_control():
    der = ControlledDer(DerModel(Rating(w_max=10_000), profile=Constant(1.0), ramp_pct_s=0))
    agent = DeviceAgent("/edev/1", "AB" * 20, der)
    agent.schedule.update([event("A", T0 - 10, 3600, export_w=6000)])
    agent.default = Envelope(export_max_w=2000.0)
    agent.tick(T0, comms_loss_s=60)
    assert agent.applied.export_max_w == 6000.0 and agent.active_mrid == "A"
    agent.last_ok = time.monotonic() - 120  # two minutes without contact
    agent.tick(T0 + 1, comms_loss_s=60)
    assert agent.applied == Envelope(export_max_w=2000.0) and agent.active_mrid is None
    der.step(1.0)
    assert der.measurement().w == 2000.0


def test_programs_apply_mode_by_mode_lowest_primacy_first():
    """An envelope limit in program 1 and a dispatch in program 2 are both in force; where
    both set the same quantity, the lower primacy wins."""
    s = Schedule("dev")
    dispatch = Event(mrid="D", primacy=2, created=T0, start=T0, duration=60, status=0,
                     base=m.DERControlBase(opModTargetW=m.ActivePower(multiplier=0, value=3000),
                                           opModExpLimW=m.ActivePower(multiplier=0,
                                                                      value=9000)),
                     reply_to="/rsps/1/rsp", response_required=3)
    s.update([event("E", T0, 60, primacy=1, export_w=4000), dispatch])
    active, due = s.tick(T0 + 1)
    assert active.mrid == "E" and [e.mrid for e in s.in_force] == ["E", "D"]
    assert ("D", STARTED) in statuses(due) and ("E", STARTED) in statuses(due)
    env = control.layered([e.base for e in s.in_force], rating_w=10_000)
    assert env == Envelope(export_max_w=4000.0, setpoint_w=3000.0)
    assert control.layered([], 10_000) is None


def test_freq_droop_is_adopted_by_the_der_and_falls_back_to_the_default():
    """opModFreqDroop (mHz, thousandths, hundredths of a second) becomes the DER model's
    FreqDroop; an event without one leaves the default's in force; a droop the DER refuses
    is not adopted; once no longer told, the DER reverts to its own setting."""
    wire = m.FreqDroopType(dBOF=17, dBUF=36, kOF=30, kUF=50, openLoopTms=200)
    droop = FreqDroop(db_of_hz=0.017, db_uf_hz=0.036, k_of=0.03, k_uf=0.05, response_s=2.0)
    assert control.envelope_of(m.DERControlBase(opModFreqDroop=wire), 1.0).freq_droop == droop
    refused = m.FreqDroopType(dBOF=17, dBUF=36, kOF=500, kUF=50, openLoopTms=200)
    assert control.envelope_of(m.DERControlBase(opModFreqDroop=refused), 1.0).freq_droop is None
    default = Envelope(freq_droop=droop)
    assert control.merged(Envelope(export_max_w=1.0), default).freq_droop == droop
    event_droop = FreqDroop(k_of=0.02)
    assert control.layered([m.DERControlBase(opModFreqDroop=m.FreqDroopType(
        dBOF=36, dBUF=36, kOF=20, kUF=50, openLoopTms=500))], 1.0).freq_droop == event_droop
    der = ControlledDer(DerModel(Rating(w_max=10_000), profile=Constant(1.0), ramp_pct_s=0))
    der.apply(default)
    assert der.model.freq_watt.enabled and der.model.freq_watt.value == droop
    der.apply(Envelope())
    assert not der.model.freq_watt.enabled and der.model.freq_watt.value == FreqDroop()
