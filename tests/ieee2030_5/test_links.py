"""Every href the server links answers (issue 12, findings 6 and 7): a client that follows
every link from /dcap never meets a 404 or a document of the wrong type."""

from __future__ import annotations

from lxml import etree

from tests.ieee2030_5.test_official_schema import populate

SEP = "urn:ieee:std:2030.5:ns"
# A link element's name says the document it leads to (FooLink -> Foo, FooListLink -> FooList).
SERVED_AS = {"SelfDeviceLink": "SelfDevice", "CurrentDERProgramLink": "DERProgram",
             "AssociatedDERProgramListLink": "DERProgramList",
             "ActiveDERControlListLink": "DERControlList",
             "opModVoltVar": "DERCurve", "opModVoltWatt": "DERCurve", "opModFreqWatt": "DERCurve",
             "opModWattPF": "DERCurve", "opModWattVar": "DERCurve"}


def links(doc: etree._Element) -> list[tuple[str, str]]:
    """(href, the document type it must lead to) of every link and item href in a document."""
    out = []
    for el in doc.iter():
        if not isinstance(el.tag, str) or el.get("href") is None or el is doc:
            continue
        name = etree.QName(el).localname
        if name.endswith("Link") or name in SERVED_AS:
            expected = SERVED_AS.get(name, name.removesuffix("Link"))
        else:
            expected = name  # an item of a list: its own href serves itself
        out.append((el.get("href"), expected))
    return out


async def crawl(client) -> dict[str, str]:
    seen: dict[str, str] = {}
    todo = [("/dcap", "DeviceCapability")]
    while todo:
        href, expected = todo.pop()
        if href in seen:
            continue
        async with client.get(href) as resp:
            body = await resp.read()
            assert resp.status == 200, f"{href} ({expected}) answered {resp.status}"
        doc = etree.fromstring(body)
        got = etree.QName(doc).localname
        assert got == expected or (expected == "Response" and got == "DERControlResponse"), \
            f"{href}: expected {expected}, served {got}"
        seen[href] = got
        todo += links(doc)
    return seen


async def test_every_linked_href_answers_with_its_document(server):
    edev, _ = await populate(server)
    async with server.client("device-1") as c:
        seen = await crawl(c)
    assert f"/edev/{edev}/lel/1" in seen  # a LogEvent's own href
    assert "SelfDevice" not in seen.values()  # not linked: it is the server's device


async def test_an_aggregator_client_follows_every_link_too(server):
    await populate(server)
    async with server.client("aggregator-1") as c:
        seen = await crawl(c)
    assert sum(1 for kind in seen.values() if kind == "EndDevice") >= 2
