"""Through the real gateway (`der-gateway serve` as a process, real TLS, real SQLite): a
2030.5 client receives a platform limit as an active DERControl, posts a Response and
readings, and the platform API shows the acknowledgement and the readings."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiohttp
from lxml import etree

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import serialize
from pki.tls import client_context
from tests.support.gateway import GatewayProcess, free_port
from tests.support.seed import seed_platform

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}
CT = {"Content-Type": "application/sep+xml"}


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def session(pki, name: str, url: str) -> aiohttp.ClientSession:
    base = pki / "ieee2030_5"
    ctx = client_context(base / "ca-chain.pem", base / f"clients/{name}-chain.pem",
                         base / f"clients/{name}.key", ieee2030_5=True)
    return aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(ssl=ctx))


async def until(predicate):
    async with asyncio.timeout(10):
        while True:
            value = await predicate()
            if value is not None:
                return value
            await asyncio.sleep(0.1)


async def test_limit_to_dercontrol_and_feedback_to_platform(tmp_path):
    listen = f"https://127.0.0.1:{free_port()}"
    proc = GatewayProcess(tmp_path, ieee2030_5={"listen": listen})
    gw = await proc.start()
    try:
        await flow(gw, listen)
    finally:
        assert await proc.stop() == 0, proc.log()[-3000:]


async def flow(gw, listen: str) -> None:
    if True:
        ids = json.loads((gw.pki / "identities.json").read_text())
        device = ids["ieee2030_5/device-1"]
        der = {"id": "der-1", "connection_point_id": "cp-a1", "kind": "pv",
               "nameplate": {"export_max_w": 10_000},
               "binding": {"protocol": "ieee2030_5",
                           "address": {"lfdi": device["lfdi"], "sfdi": device["sfdi"]}},
               "aggregator_id": "agg-x"}
        clients = await seed_platform(gw, [der])
        now = datetime.now(UTC).replace(microsecond=0)
        status, ins = await clients["ldc-a"].post("/v1/instructions", {
            "kind": "limit", "target": {"kind": "resource", "id": "der-1"},
            "start": iso(now - timedelta(minutes=1)), "end": iso(now + timedelta(hours=1)),
            "limits": {"export_max_w": 4000}, "reason": "feeder F-A1 thermal"})
        assert status == 201, ins

        async with session(gw.pki, "device-1", listen) as c:
            async def active_control():
                async with c.get("/edev") as resp:
                    edevs = etree.fromstring(await resp.read())
                edev = edevs.find("s:EndDevice", NS)
                if edev is None:
                    return None
                href = edev.get("href") + "/derp/1/actderc"
                async with c.get(href) as resp:
                    lst = etree.fromstring(await resp.read())
                return lst.find("s:DERControl", NS)

            control = await until(active_control)
            assert control.findtext("s:DERControlBase/c:opModExpLimW/s:value", namespaces=NS) \
                == "4000"
            mrid = control.findtext("s:mRID", namespaces=NS)
            response = m.DERControlResponse(endDeviceLFDI=device["lfdi"], status=2, subject=mrid,
                                            createdDateTime=int(now.timestamp()))
            async with c.post(control.get("replyTo"), data=serialize(response), headers=CT) as r:
                assert r.status == 201
            mup = m.MirrorUsagePoint(
                mRID="0A01", roleFlags="03", serviceCategoryKind=0, status=1,
                deviceLFDI=device["lfdi"], MirrorMeterReading=[m.MirrorMeterReading(
                    mRID="0A02", ReadingType=m.ReadingType(uom=38, powerOfTenMultiplier=0),
                    Reading=m.Reading(value=3900, timePeriod=m.DateTimeInterval(
                        duration=60, start=int(now.timestamp()))))])
            async with c.post("/mup", data=serialize(mup), headers=CT) as r:
                assert r.status == 201
            cp_href = control.get("href").split("/derp/")[0] + "/cp"
            bad = serialize(m.ConnectionPoint(connectionPointId="NOTAVALIDID"))
            async with c.put(cp_href, data=bad, headers=CT) as r:
                assert r.status == 400  # neither an NMI nor a platform connection point
            good = serialize(m.ConnectionPoint(connectionPointId="cp-a1"))
            async with c.put(cp_href, data=good, headers=CT) as r:
                assert r.status == 201

        admin = clients["admin"]
        status, acks = await admin.get("/v1/acknowledgements?resource_id=der-1")
        assert status == 200
        (ack,) = acks if isinstance(acks, list) else acks["items"]
        assert ack["status"] == "started" and ack["protocol_status"] == "2"
        assert ack["instruction_id"] == ins["id"]
        status, readings = await admin.get("/v1/readings?resource_id=der-1")
        rows = readings if isinstance(readings, list) else readings["items"]
        assert [(r["quantity"], r["value"]) for r in rows] == [("W", 3900.0)]
