"""Coordination rules, checked against the worked examples of shared/design/coordination.md."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gateway.coordination.engine import Coordinator
from gateway.coordination.topology import Topology
from gateway.domain import (
    Binding,
    ConnectionPoint,
    DerKind,
    DsoModel,
    Instruction,
    InstructionKind,
    LimitEnvelope,
    Nameplate,
    NoticeKind,
    Participant,
    Resource,
    Role,
    SetpointStep,
    Target,
    TargetKind,
)

DAY = datetime(2026, 6, 1, tzinfo=UTC)


def t(hhmm: str) -> datetime:
    h, m = hhmm.split(":")
    return DAY + timedelta(hours=int(h), minutes=int(m))


NOW = t("12:00")
_seq = iter(range(1, 10_000))


def der(rid, cp, export_kw, import_kw=0.0, agg="X", online=True):
    return Resource(rid, cp, DerKind.PV if not import_kw else DerKind.BATTERY,
                    Nameplate(export_kw * 1000, import_kw * 1000),
                    Binding("modbus", {"host": "h", "port": 1, "unit_id": 1}), agg, online)


def topology(ldcs, cps, ders):
    parts = {"ISO": Participant("ISO", Role.ISO), "X": Participant("X", Role.AGGREGATOR)}
    for ldc_id, model, host in ldcs:
        parts[ldc_id] = Participant(ldc_id, Role.LDC, dso_model=model, host_ldc_id=host)
    return Topology(parts, {c.id: c for c in cps}, {d.id: d for d in ders})


def limit(issuer, kind, tid, start, end, export=None, imp=None, reason=""):
    n = next(_seq)
    return Instruction(f"L{n}", InstructionKind.LIMIT, issuer, Target(kind, tid), t(start),
                       t(end), DAY + timedelta(seconds=n), reason,
                       limits=LimitEnvelope(export_max_w=export, import_max_w=imp), seq=n)


def dispatch(issuer, kind, tid, watts, start="14:00", end="14:05"):
    n = next(_seq)
    return Instruction(f"D{n}", InstructionKind.DISPATCH, issuer, Target(kind, tid), t(start),
                       t(end), DAY + timedelta(seconds=n),
                       schedule=(SetpointStep(t(start), t(end), watts),), seq=n)


def run(topo, instructions, **kw):
    return Coordinator().coordinate(topo, instructions, now=NOW, **kw)


def setpoint_at(result, rid, hhmm="14:02"):
    interval = result.controls[rid].at(t(hhmm))
    return None if interval is None else interval.setpoint_w


@pytest.fixture
def ldc_a():
    return topology([("A", DsoModel.DUAL_PARTICIPATION, None)],
                    [ConnectionPoint("cp1", "A", "N0", "F1")],
                    [der("d1", "cp1", 10), der("d8", "cp1", 5, 5)])


def test_example_1_dual_participation_limit_clips_iso_dispatch(ldc_a):
    """Rule 2: the dispatch is clipped into the range; notice to the DER/A and the ISO."""
    lim = limit("A", TargetKind.RESOURCE, "d1", "13:00", "15:00", export=5000,
                reason="thermal limit, feeder F1")
    disp = dispatch("ISO", TargetKind.RESOURCE, "d1", 8000)
    result = run(ldc_a, [lim, disp])
    interval = result.controls["d1"].at(t("14:02"))
    assert interval.setpoint_w == pytest.approx(5000)
    assert interval.requested_setpoint_w == pytest.approx(8000)
    assert interval.limited_by == (lim.id,)
    assert {s.instruction_id for s in interval.sources} == {lim.id, disp.id}
    (notice,) = [n for n in result.notices if n.kind is NoticeKind.LIMITATION]
    assert (notice.requested_w, notice.effective_w) == (8000, 5000)
    assert set(notice.recipients) == {"X", "ISO"}
    assert notice.limiting[0].issuer_id == "A"
    assert notice.reason == "thermal limit, feeder F1"
    # Outside the dispatch the limit still shapes the range, with no setpoint.
    assert result.controls["d1"].at(t("13:30")).export_max_w == 5000
    assert result.controls["d1"].at(t("13:30")).setpoint_w is None


@pytest.mark.parametrize(
    ("requested_kw", "expected_kw", "shortfall_kw"),
    [(12, {"d2": 7.0588, "d3": 3.5294, "d4": 1.4118}, 0.0),
     (20, {"d2": 10, "d3": 5, "d4": 2}, 3.0)],
)
def test_example_2_total_dso_disaggregates_by_headroom(requested_kw, expected_kw, shortfall_kw):
    """Rule 6: pro rata to headroom; what cannot be placed is a shortfall to the ISO."""
    topo = topology([("B", DsoModel.TOTAL, None)],
                    [ConnectionPoint("cpB", "B", "N1", "F2")],
                    [der("d2", "cpB", 10), der("d3", "cpB", 5), der("d4", "cpB", 5)])
    lim = limit("B", TargetKind.RESOURCE, "d4", "13:00", "15:00", export=2000)
    disp = dispatch("ISO", TargetKind.NODE, "N1", requested_kw * 1000)
    result = run(topo, [lim, disp])
    for rid, kw in expected_kw.items():
        assert setpoint_at(result, rid) == pytest.approx(kw * 1000, abs=0.1)
    (aggregate,) = [n for n in result.notices if n.subject.kind is TargetKind.NODE]
    assert aggregate.requested_w - aggregate.effective_w == pytest.approx(shortfall_kw * 1000)
    assert aggregate.kind is (NoticeKind.SHORTFALL if shortfall_kw else NoticeKind.AGGREGATE)
    assert "ISO" in aggregate.recipients
    # The ISO sees the aggregate only: no per-DER notice is addressed to it.
    assert not [n for n in result.notices
                if n.subject.kind is TargetKind.RESOURCE and "ISO" in n.recipients]


def test_total_dso_offline_and_refusing_ders_are_skipped():
    topo = topology([("B", DsoModel.TOTAL, None)], [ConnectionPoint("cpB", "B", "N1")],
                    [der("d2", "cpB", 10), der("d3", "cpB", 5, online=False), der("d4", "cpB", 5)])
    disp = dispatch("ISO", TargetKind.NODE, "N1", 12000)
    result = run(topo, [disp], refusals={(disp.id, "d4")})
    assert setpoint_at(result, "d2") == pytest.approx(10000)
    assert setpoint_at(result, "d3") is None or setpoint_at(result, "d3") == 0
    (aggregate,) = [n for n in result.notices if n.subject.kind is TargetKind.NODE]
    assert aggregate.kind is NoticeKind.SHORTFALL
    assert aggregate.effective_w == pytest.approx(10000)
    assert "1 DER(s) offline" in aggregate.reason and "1 DER(s) refusing" in aggregate.reason


def test_example_3_market_facilitator_relays_with_dso_as_issuer_of_record():
    topo = topology([("C", DsoModel.MARKET_FACILITATOR, None)], [ConnectionPoint("cpC", "C", "N3")],
                    [der("d5", "cpC", 8)])
    lim = limit("C", TargetKind.RESOURCE, "d5", "13:00", "15:00", export=4000)
    result = run(topo, [lim, dispatch("ISO", TargetKind.RESOURCE, "d5", 6000)])
    interval = result.controls["d5"].at(t("14:02"))
    assert interval.setpoint_w == pytest.approx(4000)
    assert interval.issuer_of_record == "C"
    (notice,) = result.notices
    assert set(notice.recipients) == {"X", "ISO"}


def test_example_4_host_cap_binds_embedded_ders_and_host_is_told():
    """Tri-party: H's node cap is shared by nameplate; notices also go to E and H."""
    topo = topology([("H", DsoModel.DUAL_PARTICIPATION, None),
                     ("E", DsoModel.DUAL_PARTICIPATION, "H")],
                    [ConnectionPoint("cpE", "E", "N2")], [der("d6", "cpE", 10), der("d7", "cpE", 5)])
    cap = limit("H", TargetKind.NODE, "N2", "13:00", "15:00", export=9000)
    result = run(topo, [cap, dispatch("ISO", TargetKind.RESOURCE, "d6", 8000),
                        dispatch("ISO", TargetKind.RESOURCE, "d7", 4000)])
    assert setpoint_at(result, "d6") == pytest.approx(6000)
    assert setpoint_at(result, "d7") == pytest.approx(3000)
    assert len(result.notices) == 2
    for notice in result.notices:
        assert set(notice.recipients) == {"X", "ISO", "E", "H"}
        assert notice.limiting[0].issuer_id == "H"


def test_example_5_same_issuer_update_supersedes_only_where_it_overlaps(ldc_a):
    first = limit("A", TargetKind.RESOURCE, "d1", "13:00", "15:00", export=5000)
    update = limit("A", TargetKind.RESOURCE, "d1", "14:00", "14:30", export=7000)
    control = run(ldc_a, [first, update]).controls["d1"]
    assert [(i.start, i.end, i.export_max_w) for i in control.intervals] == [
        (t("13:00"), t("14:00"), 5000), (t("14:00"), t("14:30"), 7000),
        (t("14:30"), t("15:00"), 5000)]
    cancelled = replace(update, cancelled_at=t("12:00"))
    control = run(ldc_a, [first, cancelled]).controls["d1"]
    assert [(i.start, i.end, i.export_max_w) for i in control.intervals] == [
        (t("13:00"), t("15:00"), 5000)]


def test_different_issuers_combine_most_restrictive_wins(ldc_a):
    """Rule 3: different issuers never replace each other; rule 1: the tighter cap wins."""
    a = limit("A", TargetKind.RESOURCE, "d1", "13:00", "15:00", export=5000)
    iso = limit("ISO", TargetKind.RESOURCE, "d1", "13:00", "15:00", export=7000)
    assert run(ldc_a, [a, iso]).controls["d1"].at(t("14:00")).export_max_w == 5000


def test_example_6_battery_import_cap_clips_charge(ldc_a):
    lim = limit("A", TargetKind.RESOURCE, "d8", "13:00", "15:00", imp=3000)
    result = run(ldc_a, [lim, dispatch("ISO", TargetKind.RESOURCE, "d8", -5000)])
    assert setpoint_at(result, "d8") == pytest.approx(-3000)
    (notice,) = result.notices
    assert (notice.requested_w, notice.effective_w) == (-5000, -3000)
    assert notice.limiting[0].quantity == "import_max_w"


def test_disconnect_sets_range_to_zero(ldc_a):
    n = next(_seq)
    off = Instruction(f"C{n}", InstructionKind.CONNECTION, "A", Target(TargetKind.RESOURCE, "d1"),
                      t("14:00"), t("15:00"), DAY + timedelta(seconds=n), "maintenance",
                      connect=False, seq=n)
    result = run(ldc_a, [off, dispatch("ISO", TargetKind.RESOURCE, "d1", 8000)])
    interval = result.controls["d1"].at(t("14:02"))
    assert (interval.export_max_w, interval.import_max_w, interval.setpoint_w) == (0, 0, 0)
    assert interval.connect is False
    assert result.notices[0].limiting[0].instruction_id == off.id


def test_expired_intervals_are_dropped(ldc_a):
    lim = limit("A", TargetKind.RESOURCE, "d1", "10:00", "11:00", export=5000)
    assert run(ldc_a, [lim]).controls["d1"].intervals == ()


def test_equal_ders_share_a_class_but_keep_their_own_subject_and_recipients():
    """Identical DERs are evaluated once, yet each notice names its own DER and aggregator."""
    topo = topology([("A", DsoModel.DUAL_PARTICIPATION, None)], [ConnectionPoint("cp", "A", "N")],
                    [der("p1", "cp", 10, agg="X"), der("p2", "cp", 10, agg="X"),
                     der("p3", "cp", 10, agg="Y")])
    topo.participants["Y"] = Participant("Y", Role.AGGREGATOR)
    cap = limit("A", TargetKind.NODE, "N", "13:00", "15:00", export=15000)
    dispatches = [dispatch("ISO", TargetKind.RESOURCE, rid, 8000) for rid in ("p1", "p2", "p3")]
    result = run(topo, [cap, *dispatches])
    assert {rid: setpoint_at(result, rid) for rid in ("p1", "p2", "p3")} == {
        "p1": pytest.approx(5000), "p2": pytest.approx(5000), "p3": pytest.approx(5000)}
    by_der = {n.subject.id: n for n in result.notices}
    assert set(by_der) == {"p1", "p2", "p3"}
    assert by_der["p3"].recipients == ("Y", "ISO") and by_der["p1"].recipients == ("X", "ISO")
    assert by_der["p2"].dispatch_id == dispatches[1].id


@pytest.mark.parametrize(("rule", "expected_kw"), [
    ("headroom", {"d2": 7.0588, "d3": 3.5294, "d4": 1.4118}),
    ("equal", {"d2": 5.0, "d3": 5.0, "d4": 2.0}),
])
def test_disaggregation_rule_is_pluggable(rule, expected_kw):
    topo = topology([("B", DsoModel.TOTAL, None)], [ConnectionPoint("cpB", "B", "N1")],
                    [der("d2", "cpB", 10), der("d3", "cpB", 5), der("d4", "cpB", 5)])
    lim = limit("B", TargetKind.RESOURCE, "d4", "13:00", "15:00", export=2000)
    coordinator = Coordinator.from_names("nameplate", rule)
    result = coordinator.coordinate(topo, [lim, dispatch("ISO", TargetKind.NODE, "N1", 12000)],
                                    now=NOW)
    for rid, kw in expected_kw.items():
        assert setpoint_at(result, rid) == pytest.approx(kw * 1000, abs=0.1)


def test_equal_group_cap_rule():
    topo = topology([("H", DsoModel.DUAL_PARTICIPATION, None)], [ConnectionPoint("cp", "H", "N2")],
                    [der("d6", "cp", 10), der("d7", "cp", 5)])
    cap = limit("H", TargetKind.NODE, "N2", "13:00", "15:00", export=9000)
    result = Coordinator.from_names("equal", "headroom").coordinate(topo, [cap], now=NOW)
    assert result.controls["d6"].at(t("14:00")).export_max_w == pytest.approx(4500)
    assert result.controls["d7"].at(t("14:00")).export_max_w == pytest.approx(4500)


def test_the_topology_indexes_an_aggregators_ders_through_its_copies():
    """An aggregator's client asks for its own DERs among all of them: the index follows
    DERs added in place and online marks (which share it)."""
    cp = ConnectionPoint("cp", "A", "N")
    topo = topology([("A", DsoModel.DUAL_PARTICIPATION, None)], [cp],
                    [der("d1", "cp", 5), der("d2", "cp", 5, agg="Y")])
    assert topo.aggregator_resource_ids("X") == ["d1"]
    grown = topo.with_resources([der("d3", "cp", 5)])
    assert sorted(grown.aggregator_resource_ids("X")) == ["d1", "d3"]
    assert grown.with_online({"d3": False}).aggregator_resource_ids("Y") == ["d2"]
    assert topo.aggregator_resource_ids("nobody") == []
