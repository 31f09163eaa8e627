"""Interop: the PyPI `openadr3` package (an independent 3.1 client, httpx-based) as a
business-logic client and as a VEN against our VTN, over real TLS: token, programs, events,
reports. The BL's event becomes a platform instruction; the VEN reads it with its targets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.openadr3.conftest import CORE_WARNINGS, until

openadr3 = pytest.importorskip("openadr3", reason="the openadr3 package is not installed")
pytestmark = CORE_WARNINGS


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def login(client, cred) -> None:
    """Token by discovery (GET /auth/server, then POST /auth/token with form fields).

    OpenADRClient.fetch_token replaces its httpx client without closing the old one (a leak
    in the package, which `filterwarnings = error` would report): close it ourselves.
    """
    old = client._http
    client.fetch_token(cred["client_id"], cred["client_secret"])
    old.close()


async def test_openadr3_package_as_bl_and_ven(vtn, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(vtn.ca))  # httpx trusts our dev CA through this
    bl_cred = await vtn.provision("ldc-a", {"role": "bl"})
    ven_cred = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})

    bl = openadr3.create_bl_client(vtn.base(), token="")
    ven = openadr3.create_ven_client(vtn.base(), token="")
    try:
        await asyncio.to_thread(login, bl, bl_cred)
        await asyncio.to_thread(login, ven, ven_cred)

        resp = await asyncio.to_thread(bl.create_program, {"programName": "interop-dr"})
        assert resp.status_code == 201, resp.text
        program = openadr3.coerce(resp.json())
        assert isinstance(program, openadr3.Program) and program.id

        now = datetime.now(UTC)
        event_body = {
            "programID": program.id,
            "eventName": "cap export",
            "targets": ["ven-x/bat-2"],
            "payloadDescriptors": [
                {
                    "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                    "payloadType": "EXPORT_CAPACITY_LIMIT",
                    "units": "KW",
                }
            ],
            "intervalPeriod": {"start": iso(now - timedelta(minutes=1)), "duration": "PT1H"},
            "intervals": [
                {"id": 0, "payloads": [{"type": "EXPORT_CAPACITY_LIMIT", "values": [3.0]}]}
            ],
        }
        resp = await asyncio.to_thread(bl.create_event, event_body)
        assert resp.status_code == 201, resp.text
        bl_event = openadr3.coerce(resp.json())
        assert isinstance(bl_event, openadr3.Event)

        # The BL event passed through coordination: o2's effective export cap is now 3 kW.
        platform = vtn.clients["agg-x"]

        async def capped():
            status, ec = await platform.get("/v1/resources/o2/effective-control")
            if status != 200 or not ec or not ec.get("intervals"):
                return None
            return [iv for iv in ec["intervals"] if iv["export_max_w"] == 3000.0]

        assert await until(capped)

        programs = await asyncio.to_thread(ven.programs)
        assert program.id in {p.id for p in programs}
        async def both():  # (the gateway renders o2's control as it follows the event log)
            found = await asyncio.to_thread(ven.events, targets="ven-x/bat-2")
            return found if len(found) == 2 else None

        events = await until(both)
        ids = {e.id for e in events}
        assert bl_event.id in ids
        rendered = [e for e in events if e.id != bl_event.id]
        assert rendered, "the gateway's own event for o2 is visible too"
        assert all(e.targets == ["ven-x/bat-2"] for e in events)
        # Another VEN's target is not granted to this VEN: nothing comes back.
        assert await asyncio.to_thread(ven.events, targets="ven-y/bat-1") == []

        vens = await asyncio.to_thread(ven.vens)
        assert [v.ven_name for v in vens] == ["ven-x"]
        assert vens[0].client_id == ven_cred["client_id"]

        resp = await asyncio.to_thread(
            ven.create_report,
            {
                "eventID": rendered[0].id,
                "clientName": "ven-x",
                "resources": [
                    {
                        "resourceName": "bat-2",
                        "intervals": [
                            {
                                "id": 0,
                                "intervalPeriod": {"start": iso(now), "duration": "PT5M"},
                                "payloads": [{"type": "READING", "values": [2.75]}],
                            }
                        ],
                    }
                ],
            },
        )
        assert resp.status_code == 201, resp.text
        report = openadr3.coerce(resp.json())
        assert isinstance(report, openadr3.Report)
        assert report.client_id == ven_cred["client_id"]
        reports = await asyncio.to_thread(bl.reports)
        assert report.id in {r.id for r in reports}

        # A report on the BL's own event acknowledges the instruction it became.
        resp = await asyncio.to_thread(
            ven.create_report,
            {
                "eventID": bl_event.id,
                "clientName": "ven-x",
                "resources": [
                    {
                        "resourceName": "bat-2",
                        "intervals": [
                            {
                                "id": 0,
                                "payloads": [
                                    {"type": "OPERATING_STATE", "values": ["IDLE_OPTED_OUT"]}
                                ],
                            }
                        ],
                    }
                ],
            },
        )
        assert resp.status_code == 201, resp.text

        async def acked():
            _, rows = await platform.get("/v1/acknowledgements?resource_id=o2")
            rows = rows if isinstance(rows, list) else rows.get("items", [])
            return [a for a in rows if a["control_ref"].startswith(bl_event.id)]

        ack = (await until(acked))[0]
        assert ack["status"] == "opted_out" and ack["instruction_id"]
        status, instruction = await platform.get(f"/v1/instructions/{ack['instruction_id']}")
        assert status == 200 and instruction["issuer_id"] == "ldc-a"

        # The VEN may not write programs or events (403 problem objects).
        resp = await asyncio.to_thread(ven.create_program, {"programName": "nope"})
        assert resp.status_code == 403
        assert resp.json()["status"] == 403
    finally:
        bl.close()
        ven.close()
