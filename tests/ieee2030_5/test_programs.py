"""Several FunctionSetAssignments and DERPrograms per DER, each carrying part of the
effective control; over real mutual TLS with the fake core of conftest."""

from __future__ import annotations

from dataclasses import replace

import pytest
from lxml import etree

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import serialize
from adapters.ieee2030_5.function_sets import programs
from gateway.domain import InstructionKind, Source
from gateway.errors import InvalidInput
from tests.ieee2030_5.conftest import limit_control

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}
CT = {"Content-Type": "application/sep+xml"}
# Operating envelope and default in FSA 1 (primacy 1); market dispatch in FSA 2 (primacy 2).
TWO = [{"primacy": 1, "carries": ["limits", "connection", "default", "curves"]},
       {"primacy": 2, "carries": ["dispatch"], "description": "market dispatch"}]


def test_layout_parsing_demands_every_part_exactly_once():
    layout = programs.parse(TWO)
    assert [(p.index, p.fsa, p.primacy) for p in layout] == [(1, 1, 1), (2, 2, 2)]
    assert programs.carrying(layout, "dispatch").index == 2
    with pytest.raises(InvalidInput, match="no program carries"):
        programs.parse([{"primacy": 1, "carries": ["limits"]}])
    with pytest.raises(InvalidInput, match="carried by programs 1 and 2"):
        programs.parse([{"primacy": 1, "carries": list(programs.PARTS)},
                        {"primacy": 2, "carries": ["limits"]}])
    with pytest.raises(InvalidInput, match="primacy"):
        programs.parse([{"primacy": 256, "carries": list(programs.PARTS)}])
    with pytest.raises(InvalidInput, match="without gaps"):
        programs.parse([{"primacy": 1, "fsa": 2, "carries": list(programs.PARTS)}])
    with pytest.raises(InvalidInput, match="unknown keys"):
        programs.parse([{"primacy": 1, "carries": list(programs.PARTS), "colour": "red"}])
    shared = programs.parse([{**TWO[0], "fsa": 1}, {**TWO[1], "fsa": 1}])
    assert programs.fsa_numbers(shared) == [1] and len(programs.in_fsa(shared, 1)) == 2


def test_part_of_keeps_only_the_programs_elements():
    base = m.DERControlBase(opModExpLimW=m.ActivePower(multiplier=0, value=5000),
                            opModTargetW=m.ActivePower(multiplier=0, value=2000), rampTms=500)
    limits = programs.part_of(base, frozenset({"limits"}))
    assert limits.opModExpLimW.value == 5000 and limits.opModTargetW is None
    assert limits.rampTms == 500
    assert programs.part_of(base, frozenset({"connection"})) is None
    assert programs.part_of(base, frozenset(programs.PARTS)) is base


def test_freq_droop_travels_with_every_part():
    """A standing setting in force through any event, like rampTms."""
    droop = m.FreqDroopType(dBOF=36, dBUF=36, kOF=50, kUF=50, openLoopTms=500)
    base = m.DERControlBase(opModExpLimW=m.ActivePower(multiplier=0, value=5000),
                            opModTargetW=m.ActivePower(multiplier=0, value=2000),
                            opModFreqDroop=droop)
    assert programs.part_of(base, frozenset({"limits"})).opModFreqDroop == droop
    assert programs.part_of(base, frozenset({"dispatch"})).opModFreqDroop == droop
    assert programs.part_of(base, frozenset({"connection"})) is None


def _mixed(rid: str):
    """A limit and a dispatch in one effective interval, plus a default control."""
    control = limit_control(rid, 5000.0)
    interval = control.intervals[0]
    interval = replace(interval, setpoint_w=2000.0, sources=(*interval.sources, Source(
        "ins-2", "iso", InstructionKind.DISPATCH, "setpoint_w", 2000.0)))
    return replace(control, intervals=(interval,), default_control={"export_max_w": 1500})


async def _get(c, path: str) -> tuple[int, etree._Element | None]:
    async with c.get(path) as resp:
        data = await resp.read()
        return resp.status, etree.fromstring(data) if data else None


async def test_two_programs_in_two_fsas(server):
    lfdi = server.lfdi("device-1")
    await server.parts.renderer.set_program(lfdi, {"programs": TWO})
    server.gateway.controls["der-1"] = _mixed("der-1")
    await server.parts.renderer.on_controls_changed(["der-1"])
    edev = server.parts.registry.by_resource("der-1").id
    async with server.client("device-1") as c:
        _, fsas = await _get(c, f"/edev/{edev}/fsa")
        assert fsas.get("all") == "2"
        found = {}
        for fsa in fsas.findall("s:FunctionSetAssignments", NS):
            _, lst = await _get(c, fsa.find("s:DERProgramListLink", NS).get("href"))
            (program,) = lst.findall("s:DERProgram", NS)
            found[int(program.findtext("s:primacy", namespaces=NS))] = program
        assert sorted(found) == [1, 2]
        envelope, dispatch = found[1], found[2]
        _, derc = await _get(c, envelope.find("s:DERControlListLink", NS).get("href"))
        base = derc.find("s:DERControl/s:DERControlBase", NS)
        assert base.findtext("c:opModExpLimW/s:value", namespaces=NS) == "5000"
        assert base.find("s:opModTargetW", NS) is None
        _, derc = await _get(c, dispatch.find("s:DERControlListLink", NS).get("href"))
        base = derc.find("s:DERControl/s:DERControlBase", NS)
        assert base.findtext("s:opModTargetW/s:value", namespaces=NS) == "2000"
        assert base.find("c:opModExpLimW", NS) is None
        # the default control lives in the program that carries it, and only there
        status, dderc = await _get(c, envelope.find("s:DefaultDERControlLink", NS).get("href"))
        assert status == 200
        assert dderc.findtext("s:DERControlBase/c:opModExpLimW/s:value",
                              namespaces=NS) == "1500"
        assert dispatch.find("s:DefaultDERControlLink", NS) is None
        status, err = await _get(c, f"/edev/{edev}/derp/2/dderc")
        assert status == 404 and err.tag.endswith("Error")
        status, _ = await _get(c, f"/edev/{edev}/derp/3")
        assert status == 404
        status, _ = await _get(c, f"/edev/{edev}/fsa/3/derp")
        assert status == 404
        # the DER's own list holds both, by primacy; its current program is the first
        _, every = await _get(c, f"/edev/{edev}/derp")
        assert [p.findtext("s:primacy", namespaces=NS)
                for p in every.findall("s:DERProgram", NS)] == ["1", "2"]
        _, der = await _get(c, f"/edev/{edev}/der/1")
        assert der.find("s:CurrentDERProgramLink", NS).get("href") == f"/edev/{edev}/derp/1"


async def test_layout_change_cancels_and_notifies(server):
    """Moving dispatch to its own program: the old combined control is superseded or
    cancelled in program 1, the new ones appear, and subscribers of both lists hear of it."""
    lfdi = server.lfdi("device-1")
    server.gateway.controls["der-1"] = _mixed("der-1")
    await server.parts.renderer.on_controls_changed(["der-1"])
    edev = server.parts.registry.by_resource("der-1").id
    async with server.client("device-1") as c:
        for n, tail in enumerate(("derp/1/derc", "derp/2/derc", "fsa/2/derp")):
            sub = m.Subscription(subscribedResource=f"/edev/{edev}/{tail}", encoding=0,
                                 level="+S1", limit=5,
                                 notificationURI=f"https://127.0.0.1:9/n{n}")
            async with c.post(f"/edev/{edev}/sub", data=serialize(sub), headers=CT) as resp:
                # program 2 and FSA 2 do not exist yet
                assert resp.status == (201 if n == 0 else 400)
        await server.parts.renderer.set_program(lfdi, {"programs": TWO})
        for n, tail in enumerate(("derp/2/derc", "fsa/2/derp"), 1):
            sub = m.Subscription(subscribedResource=f"/edev/{edev}/{tail}", encoding=0,
                                 level="+S1", limit=5,
                                 notificationURI=f"https://127.0.0.1:9/n{n}")
            async with c.post(f"/edev/{edev}/sub", data=serialize(sub), headers=CT) as resp:
                assert resp.status == 201
        _, first = await _get(c, f"/edev/{edev}/derp/1/derc")
        statuses = sorted(d.findtext("s:EventStatus/s:currentStatus", namespaces=NS)
                          for d in first.findall("s:DERControl", NS))
        assert statuses == ["1", "4"]  # the new envelope-only control supersedes the old
    sent = {i.url for i in server.deliveries.items}
    assert "https://127.0.0.1:9/n0" in sent
    await server.parts.renderer.on_controls_changed(["der-1"])  # unchanged now: no new notification
    before = len(server.deliveries.items)
    server.gateway.controls["der-1"] = replace(
        _mixed("der-1"), intervals=(replace(_mixed("der-1").intervals[0], setpoint_w=1000.0,
                                            sources=(Source("ins-3", "iso",
                                                            InstructionKind.DISPATCH,
                                                            "setpoint_w", 1000.0),)),))
    await server.parts.renderer.on_controls_changed(["der-1"])
    urls = [i.url for i in server.deliveries.items[before:]]
    assert "https://127.0.0.1:9/n1" in urls
