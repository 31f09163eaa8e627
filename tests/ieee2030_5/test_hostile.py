"""Hostile input over the wire: a 4xx with an <Error> body, nothing stored, still serving."""

from __future__ import annotations

import pytest
from lxml import etree

SEP = "urn:ieee:std:2030.5:ns"
CT = {"Content-Type": "application/sep+xml"}
BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    b'<MirrorUsagePoint xmlns="urn:ieee:std:2030.5:ns"><mRID>&lol2;</mRID></MirrorUsagePoint>'
)
XXE = (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       b'<MirrorUsagePoint xmlns="urn:ieee:std:2030.5:ns"><mRID>&x;</mRID></MirrorUsagePoint>')


def mup(lfdi: str, value: str = "1") -> bytes:
    return (f"<MirrorUsagePoint xmlns='{SEP}'><mRID>AB</mRID><roleFlags>03</roleFlags>"
            f"<serviceCategoryKind>0</serviceCategoryKind><status>{value}</status>"
            f"<deviceLFDI>{lfdi}</deviceLFDI></MirrorUsagePoint>").encode()


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("billion-laughs", BILLION_LAUGHS, 400),
        ("xxe", XXE, 400),
        ("malformed", b"<MirrorUsagePoint xmlns='urn:ieee:std:2030.5:ns'><mRID>", 400),
        ("wrong-namespace", b"<MirrorUsagePoint xmlns='urn:evil'/>", 400),
        ("out-of-range", None, 400),
        ("oversize", b"<MirrorUsagePoint>" + b" " * 70_000 + b"</MirrorUsagePoint>", 413),
        ("empty", b"", 400),
    ],
)
async def test_hostile_body_refused_and_nothing_stored(server, name, body, status):
    lfdi = server.lfdi("device-1")
    body = mup(lfdi, "300") if body is None else body
    async with server.client("device-1") as c:
        async with c.post("/mup", data=body, headers=CT) as resp:
            assert resp.status == status
            error = etree.fromstring(await resp.read())
            assert error.tag == f"{{{SEP}}}Error"
            assert error.findtext(f"{{{SEP}}}reasonCode") in ("0", "1")
        assert await server.service.state.mups() == []
        async with c.post("/mup", data=mup(lfdi), headers=CT) as resp:
            assert resp.status == 201, "the server keeps serving"


async def test_unknown_path_and_method_give_error_documents(server):
    async with server.client("device-1") as c:
        for method, path, expected in (("GET", "/nope", 404), ("PATCH", "/dcap", 405),
                                       ("GET", "/edev/abc", 404)):
            async with c.request(method, path) as resp:
                assert resp.status == expected
                assert etree.fromstring(await resp.read()).tag == f"{{{SEP}}}Error"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "x-unknown"])
async def test_a_malformed_compressed_body_gets_an_error_document(server, encoding):
    """Issue 12, finding 8: junk under Content-Encoding answered a plain-text 500."""
    async with server.client("device-1") as c:
        headers = {**CT, "Content-Encoding": encoding}
        async with c.post("/mup", data=b"\x1f\x8b junk, not gzip" * 4, headers=headers) as resp:
            assert 400 <= resp.status < 500, resp.status
            assert resp.content_type == "application/sep+xml"
            assert etree.fromstring(await resp.read()).tag == f"{{{SEP}}}Error"
        assert await server.service.state.mups() == []
        async with c.post("/mup", data=mup(server.lfdi("device-1")), headers=CT) as resp:
            assert resp.status == 201, "the server keeps serving"


async def test_a_well_formed_gzip_body_is_accepted(server):
    import gzip

    async with server.client("device-1") as c:
        headers = {**CT, "Content-Encoding": "gzip"}
        data = gzip.compress(mup(server.lfdi("device-1")))
        async with c.post("/mup", data=data, headers=headers) as resp:
            assert resp.status == 201, await resp.text()


async def test_head_is_answered_where_get_is(server):
    async with server.client("device-1") as c:
        for path in ("/dcap", "/tm", "/edev"):
            async with c.head(path) as resp:
                assert resp.status == 200, path
