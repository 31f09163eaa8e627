"""Through the real gateway: a platform limit becomes an EXPORT_CAPACITY_LIMIT event that the
VEN sees by polling and by webhook; the VEN's report becomes a reading and an
acknowledgement in the platform API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.openadr3.vtn.service import Change
from tests.openadr3.conftest import CORE_WARNINGS, V31, V301, until
from tests.support.gateway import free_port
from tests.support.webhooks import WebhookReceiver

pytestmark = CORE_WARNINGS


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def submit_limit(vtn, export_w: float) -> dict[str, Any]:
    now = datetime.now(UTC)
    return await vtn.clients["ldc-a"].ok(
        "POST",
        "/v1/instructions",
        {
            "kind": "limit",
            "target": {"kind": "resource", "id": "o1"},
            "start": iso(now - timedelta(minutes=1)),
            "end": iso(now + timedelta(hours=1)),
            "limits": {"export_max_w": export_w},
            "reason": "feeder constraint",
        },
    )


async def test_limit_reaches_ven_by_poll_and_webhook_and_report_comes_back(vtn):
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    token = await vtn.token(ven)
    async with WebhookReceiver() as hooks:
        status, sub = await vtn.call(
            "POST",
            "/subscriptions",
            token,
            {
                "clientName": "ven-x",
                "objectOperations": [
                    {
                        "objects": ["EVENT"],
                        "operations": ["CREATE", "UPDATE"],
                        "callbackUrl": hooks.url,
                        "bearerToken": "hook-secret",
                    }
                ],
            },
        )
        assert status == 201, sub
        status, resources = await vtn.call("GET", "/resources", token)
        assert status == 200
        targets = sorted(t for r in resources for t in r["targets"])
        assert targets == ["ven-x/bat-1", "ven-x/bat-2"]

        await submit_limit(vtn, 4_000)

        async def limit_event():
            status, events = await vtn.call(
                "GET", "/events", token, params=[("targets", "ven-x/bat-1")]
            )
            assert status == 200
            for event in events:
                for iv in event["intervals"]:
                    for p in iv["payloads"]:
                        if p["type"] == "EXPORT_CAPACITY_LIMIT" and p["values"] == [4.0]:
                            return event
            return None

        event = await until(limit_event)
        assert event["targets"] == ["ven-x/bat-1"]
        # Without targets in the query a VEN sees no targeted event (read_targets).
        _, untargeted = await vtn.call("GET", "/events", token)
        assert all(not e.get("targets") for e in untargeted)

        async def hooked():
            for auth, note in hooks.posts:
                values = [
                    p["values"]
                    for iv in note["object"]["intervals"]
                    for p in iv["payloads"]
                    if p["type"] == "EXPORT_CAPACITY_LIMIT"
                ]
                if note["object"]["id"] == event["id"] and [4.0] in values:
                    return auth, note
            return None

        auth, note = await until(hooked, within=15)
        assert auth == "Bearer hook-secret"
        assert note["objectType"] == "EVENT" and note["operation"] in ("CREATE", "UPDATE")

        now = datetime.now(UTC)
        status, report = await vtn.call(
            "POST",
            "/reports",
            token,
            {
                "eventID": event["id"],
                "clientName": "ven-x",
                "payloadDescriptors": [
                    {
                        "objectType": "REPORT_PAYLOAD_DESCRIPTOR",
                        "payloadType": "READING",
                        "units": "KW",
                    }
                ],
                "resources": [
                    {
                        "resourceName": "bat-1",
                        "intervals": [
                            {
                                "id": 0,
                                "intervalPeriod": {"start": iso(now), "duration": "PT5M"},
                                "payloads": [
                                    {"type": "READING", "values": [3.5]},
                                    {"type": "OPERATING_STATE", "values": ["RUNNING_CURTAILED"]},
                                ],
                            }
                        ],
                    }
                ],
            },
        )
        assert status == 201, report
        assert report["clientID"] == ven["client_id"]

        platform = vtn.clients["agg-x"]

        async def reading():
            _, rows = await platform.get("/v1/readings?resource_id=o1")
            rows = rows if isinstance(rows, list) else rows.get("items", rows.get("readings", []))
            return [r for r in rows if abs(r["value"] - 3500.0) < 1e-6]

        rows = await until(reading)
        assert rows[0]["quantity"] == "W" and rows[0]["protocol"] == "openadr3"

        async def ack():
            _, rows = await platform.get("/v1/acknowledgements?resource_id=o1")
            rows = (
                rows
                if isinstance(rows, list)
                else rows.get("items", rows.get("acknowledgements", []))
            )
            return [a for a in rows if a["protocol_status"] == "RUNNING_CURTAILED"]

        acks = await until(ack)
        assert acks[0]["status"] == "started"
        assert acks[0]["control_ref"].startswith(event["id"])


async def test_3_0_1_ven_polls_the_same_limit(vtn):
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x", "api_version": V301})
    token = await vtn.token(ven, V301)
    await submit_limit(vtn, 2_500)

    async def limit_event():
        status, events = await vtn.call("GET", "/events", token, version=V301)
        assert status == 200
        for event in events:
            for iv in event["intervals"]:
                if {"type": "EXPORT_CAPACITY_LIMIT", "values": [2.5]} in iv["payloads"]:
                    return event
        return None

    event = await until(limit_event)
    assert event["targets"] == [{"type": "RESOURCE_NAME", "values": ["ven-x/bat-1"]}]
    # The other aggregator's VEN cannot see ven-x's event, even naming its target.
    other = await vtn.provision("agg-y", {"role": "ven", "ven_name": "ven-y", "api_version": V301})
    other_token = await vtn.token(other, V301)
    _, seen = await vtn.call(
        "GET",
        "/events",
        other_token,
        version=V301,
        params=[("targetType", "RESOURCE_NAME"), ("targetValues", "ven-x/bat-1")],
    )
    assert event["id"] not in {e["id"] for e in seen}
    assert json.dumps(seen).count("ven-x") == 0
    _ = V31


async def test_objects_credentials_and_tokens_survive_a_restart(tmp_path):
    from tests.openadr3.conftest import Vtn, oadr_der
    from tests.support.gateway import gateway_in_process
    from tests.support.seed import seed_platform

    listen = f"https://127.0.0.1:{free_port()}"
    async with gateway_in_process(tmp_path, openadr3={"listen": listen}) as gw:
        clients = await seed_platform(gw, resources=[oadr_der("o1", "ven-x", "bat-1")])
        vtn = Vtn(gw, listen, clients)
        bl = await vtn.provision("admin", {"role": "bl", "participant_id": "ldc-a"})
        token = await vtn.token(bl)
        for name in ("p-3", "p-1", "p-2"):
            status, _ = await vtn.call("POST", "/programs", token, {"programName": name})
            assert status == 201
        _, before = await vtn.call("GET", "/programs", token)
    async with gateway_in_process(tmp_path, openadr3={"listen": listen}) as gw:
        vtn = Vtn(gw, listen, {})
        status, after = await vtn.call("GET", "/programs", token)
        assert status == 200 and after == before
        assert [p["programName"] for p in after][-3:] == ["p-3", "p-1", "p-2"]
        status, page = await vtn.call("GET", "/programs", token, params={"skip": 1, "limit": 1})
        assert page == [before[1]]


async def test_unbound_der_loses_its_resource_object_and_event(vtn):
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    token = await vtn.token(ven)
    await submit_limit(vtn, 3_000)

    async def events():
        _, found = await vtn.call("GET", "/events", token, params=[("targets", "ven-x/bat-1")])
        return found

    assert await until(events)
    renderer = vtn.gw.gateway.adapters["openadr3"].renderer
    await renderer._forget_stale("o1", [])  # what render() does once o1 is no longer bound here
    assert await events() == []
    _, resources = await vtn.call("GET", "/resources", token)
    assert [r["resourceName"] for r in resources] == ["bat-2"]


async def test_a_batch_render_writes_what_one_by_one_renders_would(vtn):
    """Events rendered together (the follower's batches) are the events a render of each
    DER makes: removed, they come back the same; unchanged, nothing is rewritten."""
    await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    await submit_limit(vtn, 3_000)
    adapter = vtn.gw.gateway.adapters["openadr3"]
    store = adapter.store

    def rendered() -> dict[str, dict[str, Any]]:
        return {e.id: e.body for e in store.all(V31, "event") if e.meta.get("origin")}

    async def limited():  # the limit is on o1; o2 has nothing to render
        return rendered()

    first = await until(limited)
    assert len(first) == 1
    await adapter.renderer.render_many(["o1", "o2", "no-such-der"])
    assert rendered() == first  # nothing changed, nothing written
    for event in list(store.all(V31, "event")):
        await adapter.service.remove(Change(V31, "event", "DELETE", None, event, event))
    await adapter.renderer.render_many(["o1", "o2"])
    stamp = ("createdDateTime", "modificationDateTime")
    again = rendered()
    assert sorted(again) == sorted(first)
    for event_id, body in again.items():
        assert {k: v for k, v in body.items() if k not in stamp} == \
            {k: v for k, v in first[event_id].items() if k not in stamp}
