"""The simulated inverter's register behaviour: refusals, controls, reversion, adoption."""

import pytest

from adapters.modbus.codec import ExceptionCode, ModbusRefusal
from simulators.der import Rating
from simulators.sunspec.inverter import InverterSpec, SunSpecInverter


@pytest.fixture
def inv():
    inverter = SunSpecInverter(InverterSpec("T-1", Rating(w_max=10_000.0), ramp_pct_s=0.0))
    inverter.step(1.0)
    return inverter


def addr(inv, model_id, path):
    block = inv.image.block(model_id)
    return inv.image.base + block.start + block.layout.point(path).offset


def write(inv, model_id, values):
    """Write engineering values through registers, one point at a time."""
    for path, value in values.items():
        block = inv.image.block(model_id)
        spec = block.layout.point(path)
        if spec.is_scaled:
            regs = block.layout.encode_value(inv.image.model_regs(model_id), path, value)
        else:
            from adapters.modbus.codec import encode_point
            regs = encode_point(spec, value)
        inv.write(addr(inv, model_id, path), regs)


def refused(inv, address, values) -> ExceptionCode:
    before = list(inv.image.regs)
    with pytest.raises(ModbusRefusal) as err:
        inv.write(address, values)
    assert inv.image.regs == before  # nothing stored
    return err.value.code


def test_reads_outside_the_image_are_illegal_addresses(inv):
    assert inv.read(40000, 2) == [0x5375, 0x6E53]
    with pytest.raises(ModbusRefusal) as err:
        inv.read(40000 + len(inv.image.regs) - 1, 2)
    assert err.value.code == ExceptionCode.ILLEGAL_ADDRESS
    with pytest.raises(ModbusRefusal):
        inv.read(0, 3)


def test_bad_writes_get_exception_codes_and_store_nothing(inv):
    assert refused(inv, addr(inv, 701, "W"), [5]) == ExceptionCode.ILLEGAL_ADDRESS  # read-only
    assert refused(inv, 40000, [1, 2]) == ExceptionCode.ILLEGAL_ADDRESS  # the marker
    assert refused(inv, addr(inv, 704, "WSet") + 1, [5]) == ExceptionCode.ILLEGAL_ADDRESS  # half
    assert refused(inv, addr(inv, 704, "WMaxLimPct"), [10001]) == ExceptionCode.ILLEGAL_VALUE
    assert refused(inv, addr(inv, 704, "WMaxLimPctEna"), [7]) == ExceptionCode.ILLEGAL_VALUE
    assert refused(inv, addr(inv, 705, "Crv[0].Pt[0].V"), [9000]) == ExceptionCode.ILLEGAL_ADDRESS
    assert refused(inv, addr(inv, 705, "AdptCrvReq"), [9]) == ExceptionCode.ILLEGAL_VALUE
    # a block that mixes a good point with a bad one is refused whole
    start = addr(inv, 704, "WMaxLimPctEna")
    assert refused(inv, start, [1, 20000]) == ExceptionCode.ILLEGAL_VALUE
    assert not inv.model.w_max_lim.enabled


def test_limit_with_reversion_timer_reverts_in_registers_and_physics(inv):
    write(inv, 704, {"WMaxLimPct": 25.0, "WMaxLimPctEna": 1, "WMaxLimPctRvrtTms": 5,
                     "WMaxLimPctEnaRvrt": 0})
    inv.step(1.0)
    assert inv.image.value(701, "W") == pytest.approx(2_500.0)
    assert inv.image.get(704, "WMaxLimPctRvrtRem") == 4
    assert inv.image.get(701, "ThrotSrc") & 1
    for _ in range(4):
        inv.step(1.0)
    assert inv.image.get(704, "WMaxLimPctEna") == 0  # reverted in the registers too
    assert inv.image.value(704, "WMaxLimPct") == pytest.approx(100.0)
    assert inv.image.value(701, "W") == pytest.approx(8_000.0)


def test_wset_in_watts_and_percent(inv):
    write(inv, 704, {"WSetMod": 1, "WSet": 3_000.0, "WSetEna": 1})
    inv.step(1.0)
    assert inv.image.value(701, "W") == pytest.approx(3_000.0)
    write(inv, 704, {"WSetMod": 0, "WSetPct": 55.0})
    inv.step(1.0)
    assert inv.image.value(701, "W") == pytest.approx(5_500.0)


def test_volt_var_curve_adoption_handshake(inv):
    inv.model.grid = type(inv.model.grid)(252.0, 60.0)  # 105 %
    curve = {"Crv[1].ActPt": 2, "Crv[1].Pt[0].V": 100.0, "Crv[1].Pt[0].Var": 0.0,
             "Crv[1].Pt[1].V": 110.0, "Crv[1].Pt[1].Var": -50.0, "Crv[1].RspTms": 0}
    write(inv, 705, curve)
    write(inv, 705, {"AdptCrvReq": 2})
    assert inv.image.get(705, "AdptCrvRslt") == 0  # IN_PROGRESS until the next step
    inv.step(1.0)
    assert inv.image.get(705, "AdptCrvRslt") == 1  # COMPLETED
    assert inv.image.value(705, "Crv[0].Pt[1].Var") == pytest.approx(-50.0)
    assert inv.image.get(705, "Crv[0].ReadOnly") == 1
    write(inv, 705, {"Ena": 1})
    inv.step(1.0)
    assert inv.image.value(701, "Var") == pytest.approx(-0.25 * 4_400.0, abs=1.0)


def test_bad_curve_fails_adoption_and_keeps_the_active_one(inv):
    before = inv.image.model_regs(705)
    write(inv, 705, {"Crv[2].ActPt": 2, "Crv[2].Pt[0].V": 104.0, "Crv[2].Pt[1].V": 96.0})
    write(inv, 705, {"AdptCrvReq": 3})
    inv.step(1.0)
    assert inv.image.get(705, "AdptCrvRslt") == 2  # FAILED
    after = inv.image.model_regs(705)
    layout = inv.image.block(705).layout
    crv0 = [p for p in layout.points.values() if p.path.startswith("Crv[0].")]
    for p in crv0:
        assert before[p.offset : p.offset + p.size] == after[p.offset : p.offset + p.size]


def test_freq_droop_from_711_with_grid_frequency(inv):
    write(inv, 711, {"Ctl[1].DbOf": 0.036, "Ctl[1].DbUf": 0.036, "Ctl[1].KOf": 0.05,
                     "Ctl[1].KUf": 0.05, "Ctl[1].RspTms": 0, "Ctl[1].PMin": 0})
    write(inv, 711, {"AdptCtlReq": 2, "Ena": 1})
    inv.step(1.0)
    assert inv.image.get(711, "AdptCtlRslt") == 1
    inv.model.grid = type(inv.model.grid)(240.0, 60.3)
    inv.step(1.0)
    expected = 8_000.0 - 10_000.0 * (60.3 - 60.036) / 3.0
    assert inv.image.value(701, "W") == pytest.approx(expected, abs=1.0)
    assert inv.image.get(701, "ThrotSrc") & (1 << 5)


def test_volt_watt_curve_from_706_curtails_with_grid_voltage(inv):
    write(inv, 706, {"Crv[1].ActPt": 2, "Crv[1].DeptRef": 0, "Crv[1].RspTms": 0,
                     "Crv[1].Pt[0].V": 104.0, "Crv[1].Pt[0].W": 100.0,
                     "Crv[1].Pt[1].V": 108.0, "Crv[1].Pt[1].W": 20.0})
    write(inv, 706, {"AdptCrvReq": 2, "Ena": 1})
    inv.step(1.0)
    assert inv.image.get(706, "AdptCrvRslt") == 1
    assert inv.image.value(706, "Crv[0].Pt[1].W") == pytest.approx(20.0)
    inv.model.grid = type(inv.model.grid)(252.0, 60.0)  # 105 %: 80 % of WMax allowed
    inv.step(1.0)
    assert inv.image.value(701, "W") == pytest.approx(8_000.0, abs=1.0)
    inv.model.grid = type(inv.model.grid)(254.4, 60.0)  # 106 %: 60 %
    inv.step(1.0)
    assert inv.image.value(701, "W") == pytest.approx(6_000.0, abs=1.0)
    assert inv.image.get(701, "ThrotSrc") & (1 << 10)  # VOLT_WATT


def test_watt_var_curve_from_712_in_any_dependent_reference(inv):
    # var in % of WMax (DeptRef W_MAX_PCT): at 80 % output, -22 % of 10 kW = -2.2 kvar
    write(inv, 712, {"Crv[2].ActPt": 2, "Crv[2].DeptRef": 0, "Crv[2].Pt[0].W": 60.0,
                     "Crv[2].Pt[0].Var": 0.0, "Crv[2].Pt[1].W": 100.0,
                     "Crv[2].Pt[1].Var": -44.0})
    write(inv, 712, {"AdptCrvReq": 3, "Ena": 1})
    inv.step(1.0)
    inv.step(1.0)
    assert inv.image.get(712, "AdptCrvRslt") == 1
    assert inv.image.value(701, "Var") == pytest.approx(-2_200.0, abs=1.0)
    assert inv.image.get(701, "ThrotSrc") & (1 << 9)  # WATT_VAR
    # more than the inverter's var_max (4.4 kvar): the curve is refused, the old one stays
    write(inv, 712, {"Crv[1].ActPt": 2, "Crv[1].DeptRef": 0, "Crv[1].Pt[0].W": 0.0,
                     "Crv[1].Pt[0].Var": 0.0, "Crv[1].Pt[1].W": 100.0,
                     "Crv[1].Pt[1].Var": -80.0})
    write(inv, 712, {"AdptCrvReq": 2})
    inv.step(1.0)
    assert inv.image.get(712, "AdptCrvRslt") == 2  # FAILED
    assert inv.image.value(712, "Crv[0].Pt[1].Var") == pytest.approx(-44.0)


def test_an_inverter_without_712_has_no_such_block():
    inverter = SunSpecInverter(InverterSpec("T-2", Rating(w_max=10_000.0),
                                            functions=frozenset({705, 711})))
    assert sorted(inverter.image.blocks) == [1, 701, 702, 703, 704, 705, 711]
    assert not inverter.model.watt_var.enabled


def test_cease_to_energize_through_703(inv):
    write(inv, 703, {"ES": 0})
    inv.step(1.0)
    assert inv.image.get(701, "ConnSt") == 0 and inv.image.value(701, "W") == 0.0
    assert inv.image.get(701, "InvSt") == 0
    write(inv, 703, {"ES": 1, "ESDlyTms": 3})
    inv.step(1.0)
    assert inv.image.get(703, "ESDlyRemTms") == 2
    inv.step(2.0)
    assert inv.image.get(701, "ConnSt") == 1
