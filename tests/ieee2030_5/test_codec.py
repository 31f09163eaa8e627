"""Codec: serialisation round-trips, the generated accept schema, hardened parsing."""

from __future__ import annotations

import pytest
from lxml import etree

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.schema import XSD_DIR, generate
from adapters.ieee2030_5.codec.xml import DocumentError, build, parse, serialize

SEP = "urn:ieee:std:2030.5:ns"


def test_committed_accept_schema_matches_the_models():
    """xsd/ is generated from the models; a model change must regenerate it."""
    for name, content in generate().items():
        assert (XSD_DIR / name).read_bytes() == content, f"regenerate {name}"


def test_inbound_documents_round_trip():
    cap = m.DERCapability(modesSupported="03", rtgMaxW=m.ActivePower(multiplier=1, value=1000),
                          type=4, doeModesSupported="03")
    back = parse(serialize(cap)).model
    assert back == cap


def test_csipaus_elements_are_in_their_namespace():
    base = m.DERControlBase(opModExpLimW=m.ActivePower(multiplier=0, value=1500))
    text = serialize(base).decode()
    assert "<csipaus:opModExpLimW>" in text
    assert 'xmlns:csipaus="https://csipaus.org/ns"' in text


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
         b'<EndDevice xmlns="urn:ieee:std:2030.5:ns"><sFDI>&a;</sFDI></EndDevice>', 400),
        (b'<!DOCTYPE EndDevice SYSTEM "http://127.0.0.1:1/evil.dtd"><EndDevice/>', 400),
        (b"<EndDevice xmlns='urn:ieee:std:2030.5:ns'><sFDI>1</sFDI", 400),
        (b"<EndDevice xmlns='urn:other'><sFDI>1</sFDI><changedTime>0</changedTime></EndDevice>",
         400),
        (b"<EndDevice xmlns='urn:ieee:std:2030.5:ns'><sFDI>1</sFDI></EndDevice>", 400),
        (b"<Time xmlns='urn:ieee:std:2030.5:ns'/>", 400),
        (b"<EndDevice xmlns='urn:ieee:std:2030.5:ns'>" + b"<x/>" * 40000 + b"</EndDevice>", 413),
    ],
    ids=["entity", "external-dtd", "malformed", "namespace", "incomplete", "not-accepted",
         "oversize"],
)
def test_hostile_documents_are_refused(body, status):
    with pytest.raises(DocumentError) as info:
        parse(body)
    assert info.value.status == status


def test_out_of_range_value_is_refused():
    doc = (f"<DERSettings xmlns='{SEP}'><setGradW>70000</setGradW><setMaxW><multiplier>0"
           "</multiplier><value>1</value></setMaxW><updatedTime>0</updatedTime></DERSettings>")
    with pytest.raises(DocumentError, match="setGradW"):
        parse(doc.encode())


def test_unexpected_root_for_route_is_refused():
    doc = f"<LogEvent xmlns='{SEP}'/>".encode()
    with pytest.raises(DocumentError):
        parse(doc, ("Response",))


def test_posted_reading_list_without_counts_is_accepted():
    """Some clients post a MirrorMeterReadingList without `all`/`results`: be liberal."""
    doc = (b'<MirrorMeterReadingList xmlns="urn:ieee:std:2030.5:ns"><MirrorMeterReading>'
           b"<mRID>FCB40ECEA504AF20CF1FD29000037244</mRID><Reading><timePeriod><duration>60"
           b"</duration><start>1795380120</start></timePeriod><value>1000</value></Reading>"
           b"</MirrorMeterReading></MirrorMeterReadingList>")
    parsed = parse(doc, ("MirrorMeterReadingList",)).model
    assert parsed.MirrorMeterReading[0].Reading.value == 1000


def test_freq_droop_round_trips_in_its_sequence_position():
    """opModFreqDroop sits between opModFixedW and opModFreqWatt, its children in the
    FreqDroopType order (dBOF, dBUF, kOF, kUF, openLoopTms)."""
    droop = m.FreqDroopType(dBOF=36, dBUF=36, kOF=50, kUF=50, openLoopTms=500)
    base = m.DERControlBase(opModFixedW=100, opModFreqDroop=droop,
                            opModFreqWatt=m.Link(href="/dc/1"), rampTms=10)
    root = etree.fromstring(serialize(base))
    names = [etree.QName(el).localname for el in root]
    assert names == ["opModFixedW", "opModFreqDroop", "opModFreqWatt", "rampTms"]
    assert [etree.QName(el).localname for el in root[1]] == [
        "dBOF", "dBUF", "kOF", "kUF", "openLoopTms"]
    back = build(m.DERControlBase, root)
    assert back == base
