"""Codec (layouts from pysunspec2's definitions, values <-> registers) and mapper rules."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from adapters.modbus.codec import (
    CodecError,
    build_layout,
    decode_point,
    encode_point,
    layout_from_registers,
    write_runs,
)
from adapters.modbus.mapper import plan_for, readings_701, verify_704
from gateway.domain import EffectiveControl, InstructionKind, Quantity, Source
from tests.modbus.support import export_limit

NOW = datetime.now(UTC)


@pytest.mark.parametrize(("model_id", "length"), [(1, 66), (701, 153), (704, 65), (713, 7)])
def test_fixed_model_lengths_match_the_sunspec_definitions(model_id, length):
    assert build_layout(model_id).length == length


def test_repeated_groups_are_sized_by_their_count_points():
    small, big = build_layout(705, {"NCrv": 1, "NPt": 2}), build_layout(705, {"NCrv": 3, "NPt": 4})
    assert big.length - small.length == (3 * 4 - 1 * 2) * 2 + (3 - 1) * 10
    regs = [0] * big.size
    regs[0], regs[1] = 705, big.length
    for path, value in (("NPt", 4), ("NCrv", 3)):
        spec = big.point(path)
        regs[spec.offset] = value
    assert layout_from_registers(705, regs).points.keys() == big.points.keys()
    regs[1] += 1
    with pytest.raises(CodecError):
        layout_from_registers(705, regs)


def test_scale_factors_resolve_to_their_points():
    layout = build_layout(705, {"NCrv": 2, "NPt": 2})
    assert layout.point("Crv[1].Pt[0].V").sf == "V_SF"
    assert build_layout(704).point("PFWInj.PF").sf == "PF_SF"


@pytest.mark.parametrize(("kind", "raw", "regs"), [
    ("int16", -2, [0xFFFE]), ("uint32", 70000, [1, 4464]), ("int32", -1, [0xFFFF, 0xFFFF]),
    ("uint64", 2**40, [0, 256, 0, 0]), ("enum16", None, [0xFFFF]), ("sunssf", None, [0x8000]),
])
def test_values_round_trip_and_not_implemented_markers(kind, raw, regs):
    points = [*build_layout(701).points.values(), *build_layout(704).points.values()]
    spec = next(p for p in points if p.type == kind)
    assert encode_point(spec, raw) == regs
    assert decode_point(spec, regs) == raw


def test_values_that_do_not_fit_are_refused():
    spec = build_layout(704).point("WMaxLimPct")  # uint16
    for bad in (-1, 65536, 0xFFFF):  # 0xFFFF would read back as "not implemented"
        with pytest.raises(CodecError):
            encode_point(spec, bad)


def test_write_runs_stop_at_read_only_points_and_the_write_limit():
    layout = build_layout(704)
    regs = [0] * layout.size
    runs = write_runs(layout, regs, ["WMaxLimPctEna", "WMaxLimPct", "WMaxLimPctRvrtTms",
                                     "WSetEna", "WSet"])
    assert [(o, len(r)) for o, r in runs] == [(14, 2), (18, 2), (22, 1), (24, 2)]


def test_plan_renders_limit_setpoint_connection_and_default():
    control = export_limit("d1", 2_500.0, "ins-1", default_w=5_000.0)
    plan = dict(plan_for(control, NOW, 10_000.0, 90).ctl_704)
    assert (plan["WMaxLimPctEna"], plan["WMaxLimPct"]) == (1, 25.0)
    assert (plan["WMaxLimPctEnaRvrt"], plan["WMaxLimPctRvrt"]) == (1, 50.0)
    assert plan["WMaxLimPctRvrtTms"] == plan["WSetRvrtTms"] == 90
    assert plan["WSetEna"] == 0
    interval = replace(control.intervals[0], setpoint_w=1_234.4, connect=False)
    rendered = plan_for(replace(control, intervals=(interval,)), NOW, 10_000.0, 90)
    assert dict(rendered.ctl_704)["WSet"] == 1_234 and dict(rendered.ctl_704)["WSetEna"] == 1
    assert rendered.enter_service == 0
    assert rendered.instruction_ids == ("ins-1",)


def test_plan_without_control_or_outside_its_interval_lifts_the_limit():
    for control, at in ((None, NOW), (export_limit("d1", 1_000.0), NOW + timedelta(hours=2))):
        plan = plan_for(control, at, 10_000.0, 60)
        assert dict(plan.ctl_704)["WMaxLimPctEna"] == 0
        assert plan.enter_service == 1 and plan.instruction_ids == ()


def test_limit_above_the_device_rating_is_no_limit_and_fingerprint_tracks_changes():
    a = plan_for(export_limit("d1", 12_000.0), NOW, 10_000.0, 60)
    assert dict(a.ctl_704)["WMaxLimPctEna"] == 0
    b = plan_for(export_limit("d1", 12_000.0, "ins-2"), NOW, 10_000.0, 60)
    assert a.fingerprint != b.fingerprint  # a new instruction is acknowledged again


def test_volt_var_settings_carry_their_instruction():
    control = EffectiveControl("d1", (), function_settings={"volt_var": [[95, 30], [105, -30]]},
                               function_source=Source("ins-f", "ldc-a",
                                                      InstructionKind.FUNCTION_SETTINGS,
                                                      "volt_var"))
    plan = plan_for(control, NOW, 10_000.0, 60)
    [curve] = plan.functions.curves
    assert curve.model_id == 705 and dict(curve.points) == {
        "ActPt": 2, "DeptRef": 1, "Pt[0].V": 95.0, "Pt[0].Var": 30.0, "Pt[1].V": 105.0,
        "Pt[1].Var": -30.0}
    assert plan.functions.instruction_id == "ins-f"
    assert plan.instruction_ids == ()  # the 704 part has no instruction in force


def test_read_back_verification_and_readings_use_scale_factors():
    from simulators.der import Rating
    from simulators.sunspec.inverter import InverterSpec, SunSpecInverter

    inv = SunSpecInverter(InverterSpec("M-1", Rating(w_max=100_000.0), ramp_pct_s=0.0))
    inv.step(1.0)
    plan = plan_for(export_limit("d1", 33_333.0), NOW, 100_000.0, 60)
    layout = build_layout(704)
    regs = inv.image.model_regs(704)
    assert verify_704(layout, regs, plan)  # not written yet: differences reported
    for path, value in plan.ctl_704:
        spec = layout.point(path)
        regs[spec.offset : spec.offset + spec.size] = layout.encode_value(regs, path, value)
    assert verify_704(layout, regs, plan) == []  # 33.333 % stored as 33.33 %: within a step
    readings = {r.quantity: r.value for r in readings_701("d1", build_layout(701),
                                                          inv.image.model_regs(701), NOW,
                                                          protocol="modbus")}
    assert readings[Quantity.ACTIVE_POWER] == pytest.approx(80_000.0)  # W_SF = 1
    assert readings[Quantity.VOLTAGE] == pytest.approx(240.0)
    assert readings[Quantity.CONNECTED] == 1.0
