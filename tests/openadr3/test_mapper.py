"""Pure layers: timing, targeting, the control->event and report->feedback rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.openadr3 import mapper
from adapters.openadr3.codec.timing import format_duration, parse_duration, parse_start
from adapters.openadr3.vtn.kinds import parse
from adapters.openadr3.vtn.problems import OadrProblem
from adapters.openadr3.vtn.targeting import (
    audience_for_ven,
    hide,
    matched,
    normalise,
    query_terms,
)
from gateway.domain import (
    AckStatus,
    EffectiveControl,
    EffectiveInterval,
    InstructionKind,
    Quantity,
    Source,
)

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT1H", 3600), ("P1DT30M", 88200), ("PT0.5S", 0.5), ("-PT5M", -300), ("P2W", 1209600)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_infinite_and_formatting():
    assert parse_duration("P9999Y") is None
    assert format_duration(None) == "P9999Y"
    assert format_duration(timedelta(hours=1, seconds=5)) == "PT1H5S"
    assert format_duration(timedelta(days=2)) == "P2D"
    assert format_duration(timedelta(0)) == "PT0S"
    assert parse_duration(format_duration(timedelta(days=1, minutes=3))) == timedelta(
        days=1, minutes=3
    )


def test_start_now_and_zones():
    assert parse_start("0001-01-01T00:00:00Z", T0) == T0
    assert parse_start("2026-11-22T14:00:00+02:00", T0) == T0
    assert parse_start("2016-12-31T23:59:60Z", T0).second == 59


def control(**kw) -> EffectiveControl:
    iv = EffectiveInterval(
        start=T0,
        end=T0 + timedelta(hours=1),
        export_max_w=4000.0,
        import_max_w=5000.0,
        sources=(Source("ins-1", "ldc-a", InstructionKind.LIMIT, "export_max_w", 4000.0),),
        **kw,
    )
    return EffectiveControl("o1", (iv,))


def test_control_becomes_event_in_kw():
    body = mapper.event_for_control(control(), "prog", ["ven/r"], "name")
    assert body is not None
    payloads = {p["type"]: p["values"] for p in body["intervals"][0]["payloads"]}
    assert payloads == {
        "EXPORT_CAPACITY_LIMIT": [4.0],
        "IMPORT_CAPACITY_LIMIT": [5.0],
        "SIMPLE": [0],
    }
    assert body["intervals"][0]["intervalPeriod"] == {
        "start": "2026-11-22T12:00:00Z",
        "duration": "PT1H",
    }
    assert body["targets"] == ["ven/r"]
    assert mapper.control_sources(control()) == ["ins-1"]
    # The wire body is a valid 3.1 event request.
    assert parse("3.1.0", "event", body)["programID"] == "prog"


def test_setpoint_and_disconnect():
    body = mapper.event_for_control(control(setpoint_w=2500.0, connect=False), "p", [], "n")
    payloads = {p["type"]: p["values"] for p in body["intervals"][0]["payloads"]}
    assert payloads["DISPATCH_SETPOINT"] == [2.5]
    assert payloads["SIMPLE"] == [3]
    assert mapper.event_for_control(EffectiveControl("o1", ()), "p", [], "n") is None


def test_report_to_readings_and_ack():
    report = {
        "payloadDescriptors": [
            {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "READING", "units": "KVAR"}
        ],
        "resources": [
            {
                "resourceName": "r1",
                "intervalPeriod": {"start": "2026-11-22T12:00:00Z", "duration": "PT5M"},
                "intervals": [
                    {
                        "id": 0,
                        "payloads": [
                            {"type": "READING", "values": [1.5]},
                            {"type": "USAGE", "values": [2.0]},
                            {"type": "STORAGE_CHARGE_LEVEL", "values": [0.4]},
                        ],
                    },
                    {"id": 1, "payloads": [{"type": "OPERATING_STATE", "values": ["ERROR"]}]},
                ],
            },
            {
                "resourceName": "unknown",
                "intervals": [{"id": 0, "payloads": [{"type": "READING", "values": [9]}]}],
            },
        ],
    }
    readings = mapper.report_readings(report, {"r1": "o1"}, T0)
    got = {(r.quantity, round(r.value, 6)) for r in readings}
    assert got == {
        (Quantity.REACTIVE_POWER, 1500.0),
        (Quantity.ENERGY, 2000.0),
        (Quantity.STATE_OF_CHARGE, 40.0),
    }
    assert {r.at for r in readings} == {T0}
    assert mapper.report_ack_status(report["resources"][0]) == (AckStatus.CANNOT_COMPLY, "ERROR")
    assert mapper.report_ack_status(report["resources"][1]) == (AckStatus.RECEIVED, "REPORT")


def test_business_logic_event_to_instructions():
    body = {
        "programID": "p",
        "intervalPeriod": {"start": "2026-11-22T12:00:00Z", "duration": "PT30M"},
        "payloadDescriptors": [
            {
                "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                "payloadType": "DISPATCH_SETPOINT",
                "units": "W",
            }
        ],
        "intervals": [
            {
                "id": 0,
                "payloads": [
                    {"type": "EXPORT_CAPACITY_LIMIT", "values": [3]},
                    {"type": "DISPATCH_SETPOINT", "values": [800]},
                ],
            },
            {
                "id": 1,
                "payloads": [
                    {"type": "DISPATCH_SETPOINT", "values": [900]},
                    {"type": "PRICE", "values": [0.2]},
                ],
            },
            {"id": 2, "payloads": [{"type": "SIMPLE", "values": [3]}]},
        ],
    }
    drafts = mapper.event_instructions(body, T0)
    kinds = [d.kind for d in drafts]
    assert kinds == [InstructionKind.LIMIT, InstructionKind.CONNECTION, InstructionKind.DISPATCH]
    limit, connection, dispatch = drafts
    assert limit.limits.export_max_w == 3000.0 and limit.end == T0 + timedelta(minutes=30)
    assert connection.connect is False and connection.start == T0 + timedelta(hours=1)
    assert [s.setpoint_w for s in dispatch.schedule] == [800.0, 900.0]
    with pytest.raises(mapper.MappingError):
        mapper.event_instructions(
            {"intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [2]}]}]}, T0
        )


def test_targets_both_versions_and_privacy():
    assert normalise("3.1.0", ["a", "a", "b"]) == ("a", "b")
    v301 = normalise("3.0.1", [{"type": "GROUP", "values": ["g1", 2]}])
    assert matched(v301, query_terms("3.0.1", ["g1"], "GROUP")) == {v301[0]}
    assert matched(v301, query_terms("3.0.1", ["2"], None)) == {v301[1]}
    assert not matched(v301, query_terms("3.0.1", ["g1"], "OTHER"))
    # 3.1: the AND of granted and requested; no query -> untargeted objects only.
    granted = frozenset({"ven/a", "ven/b"})
    assert audience_for_ven("3.1.0", granted, None).visible(("ven/a",)) is None
    asked = audience_for_ven("3.1.0", granted, frozenset({"ven/a", "other/x"}))
    assert asked.visible(("ven/a", "other/x", "ven/b")) == {"ven/a"}
    assert asked.visible(()) is None
    assert hide("3.1.0", {"targets": ["ven/a", "secret"]}, frozenset({"ven/a"})) == {
        "targets": ["ven/a"]
    }


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (
            "subscription",
            {
                "clientName": "c",
                "objectOperations": [
                    {"objects": ["EVENT"], "operations": ["CREATE"], "callbackUrl": "not a uri"}
                ],
            },
        ),
        ("ven", {"objectType": "VEN", "venName": "v"}),
        ("resource", {"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "r"}),
        (
            "report",
            {
                "eventID": "e",
                "clientName": "c",
                "resources": [{"resourceName": "r", "intervals": [{"id": 1.5, "payloads": []}]}],
            },
        ),
        (
            "event",
            {
                "programID": "p",
                "intervals": [{"id": 0, "payloads": [{"type": "X", "values": [{"x": 1}]}]}],
            },
        ),
    ],
)
def test_codec_refuses(kind, body):
    with pytest.raises(OadrProblem) as err:
        parse("3.1.0", kind, body)
    assert err.value.status == 400
