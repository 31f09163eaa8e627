"""Interop with ElaadNL's `openadr3-client` (PyPI), the widely used BL and VEN client, on both
API versions, against the real gateway (real TLS, SQLite, sockets).

Business logic creates a program and an event targeted at a VEN's DER; the VEN reads it by
target, subscribes by webhook, hears of the BL's update, and reports; the report becomes a
platform reading and acknowledgement. The client is synchronous (requests): it runs in a
worker thread while the gateway serves on the test's event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.openadr3.conftest import CORE_WARNINGS, V31, V301, until
from tests.support.webhooks import WebhookReceiver

pytestmark = [
    *CORE_WARNINGS,
    # requests-oauthlib and pydantic-extra-types warn on import in this environment.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

oc = pytest.importorskip("openadr3_client")
from openadr3_client.bl.http_factory import BusinessLogicHttpClientFactory  # noqa: E402
from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory  # noqa: E402
from openadr3_client.version import OADRVersion  # noqa: E402

TARGET = "ven-x/bat-1"


@dataclass
class Kit:
    """The client's models of one API version, and how targets are written in it."""

    version: str
    oadr: OADRVersion
    models: Any  # the version's models package
    filters: Any  # the version's filter classes

    def targets(self) -> tuple[Any, ...]:
        if self.version == V31:
            return (TARGET,)
        return (self.models.target.Target(type="RESOURCE_NAME", values=(TARGET,)),)

    def target_filter(self) -> Any:
        if self.version == V31:
            return self.filters.TargetFilter(targets=[TARGET])
        return self.filters.TargetFilter(target_type="RESOURCE_NAME", target_values=[TARGET])


def kit(version: str) -> Kit:
    if version == V31:
        import openadr3_client.oadr310._vtn.interfaces.filters as filters
        import openadr3_client.oadr310.models as models
        import openadr3_client.oadr310.models.event.event
        import openadr3_client.oadr310.models.event.event_payload
        import openadr3_client.oadr310.models.program.program
        import openadr3_client.oadr310.models.report.report
        import openadr3_client.oadr310.models.report.report_payload
        import openadr3_client.oadr310.models.subscriptions.subscription

        return Kit(V31, OADRVersion.OADR_310, models, filters)
    import openadr3_client.oadr301._vtn.interfaces.filters as filters
    import openadr3_client.oadr301.models as models
    import openadr3_client.oadr301.models.event.event
    import openadr3_client.oadr301.models.event.event_payload
    import openadr3_client.oadr301.models.program.program
    import openadr3_client.oadr301.models.report.report
    import openadr3_client.oadr301.models.report.report_payload
    import openadr3_client.oadr301.models.subscriptions.subscription
    import openadr3_client.oadr301.models.target  # noqa: F401

    return Kit(V301, OADRVersion.OADR_301, models, filters)


def bl_client(vtn, cred: dict[str, Any], k: Kit) -> Any:
    scopes = ["read_all", "write_events", "write_programs", "write_subscriptions"]
    if k.version == V31:
        scopes.append("read_bl")
    return BusinessLogicHttpClientFactory.create_http_bl_client(
        vtn_base_url=vtn.base(k.version), client_id=cred["client_id"],
        client_secret=cred["client_secret"], token_url=f"{vtn.base(k.version)}/auth/token",
        scopes=scopes, verify_vtn_tls_certificate=Path(vtn.ca), version=k.oadr)


def ven_client(vtn, cred: dict[str, Any], k: Kit) -> Any:
    # The client's documented VEN scopes; on 3.0.1 read_all is the spec's only read scope.
    scopes = (["read_all", "write_reports", "read_targets", "read_ven_objects",
               "write_subscriptions"]
              if k.version == V31 else ["read_all", "write_reports", "write_subscriptions"])
    return VirtualEndNodeHttpClientFactory.create_http_ven_client(
        vtn_base_url=vtn.base(k.version), client_id=cred["client_id"],
        client_secret=cred["client_secret"],
        token_url=None if k.version == V31 else f"{vtn.base(k.version)}/auth/token",
        scopes=scopes, verify_vtn_tls_certificate=Path(vtn.ca), version=k.oadr)


def new_program(k: Kit) -> Any:
    program = k.models.program.program
    return program.NewProgram(program_name=f"elaad-{k.version}", interval_period=None)


def new_event(k: Kit, program_id: str, kw: float) -> Any:
    ev, pay = k.models.event.event, k.models.event.event_payload
    from openadr3_client._models.common.interval import Interval
    from openadr3_client._models.common.interval_period import IntervalPeriod

    start = datetime.now(UTC) - timedelta(minutes=1)
    return ev.NewEvent(
        programID=program_id, event_name="elaad-limit", priority=1, targets=k.targets(),
        payload_descriptors=(pay.EventPayloadDescriptor(
            payload_type=pay.EventPayloadType.EXPORT_CAPACITY_LIMIT,
            units=k.models.unit.Unit.KW),),
        interval_period=IntervalPeriod(start=start, duration=timedelta(hours=1)),
        intervals=(Interval(id=0, interval_period=None, payloads=(pay.EventPayload(
            type=pay.EventPayloadType.EXPORT_CAPACITY_LIMIT, values=(kw,)),)),),
    )


def new_report(k: Kit, event: Any) -> Any:
    rep, pay = k.models.report.report, k.models.report.report_payload
    from openadr3_client._models.common.interval import Interval
    from openadr3_client._models.common.interval_period import IntervalPeriod

    extra = {"programID": event.program_id} if k.version == V301 else {}
    return rep.NewReport(
        eventID=event.id, client_name="ven-x", **extra,
        resources=(rep.ReportResource(
            resource_name="bat-1",
            interval_period=IntervalPeriod(start=datetime.now(UTC), duration=timedelta(minutes=5)),
            intervals=(Interval(id=0, interval_period=None, payloads=(
                pay.ReportPayload(type=pay.ReportPayloadType.READING, values=(2.75,)),
                pay.ReportPayload(type=pay.ReportPayloadType.OPERATING_STATE,
                                  values=("RUNNING_CURTAILED",)),
            )),),
        ),),
    )


def new_subscription(k: Kit, url: str, program_id: str) -> Any:
    sub = k.models.subscriptions.subscription
    return sub.NewSubscription(
        client_name="ven-x", programID=program_id,
        object_operations=(sub.ObjectOperation(
            objects=(sub.Object.EVENT,), operations=(sub.Operation.PUT, sub.Operation.POST)
            if hasattr(sub.Operation, "PUT") else (sub.Operation.UPDATE, sub.Operation.CREATE),
            callback_url=url, bearer_token="elaad-hook"),),
        targets=k.targets())


@pytest.mark.parametrize("version", [V31, V301])
async def test_elaad_bl_and_ven_round_trip(vtn, version, monkeypatch):
    # requests lets REQUESTS_CA_BUNDLE override the verify= the client passes on discovery.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(vtn.ca))
    k = kit(version)
    bl_cred = await vtn.provision("admin", {"role": "bl", "participant_id": "ldc-a"})
    ven_cred = await vtn.provision(
        "agg-x", {"role": "ven", "ven_name": "ven-x", "api_version": version})
    bl = await asyncio.to_thread(bl_client, vtn, bl_cred, k)
    ven = await asyncio.to_thread(ven_client, vtn, ven_cred, k)
    hooks = await WebhookReceiver().start()
    try:
        program = await asyncio.to_thread(bl.programs.create_program, new_program(k))
        event = await asyncio.to_thread(bl.events.create_event, new_event(k, program.id, 3.0))
        assert event.id
        # The BL event named a DER's target: it became an instruction on ldc-a's authority.
        async def instructed():
            _, rows = await vtn.clients["ldc-a"].get("/v1/resources/o1/effective-control")
            return rows if "3000" in str(rows) or "3000.0" in str(rows) else None

        await until(instructed)

        seen = await asyncio.to_thread(
            ven.events.get_events, target=k.target_filter(), pagination=None, program_id=None)
        assert event.id in {e.id for e in seen}

        await asyncio.to_thread(ven.subscriptions.create_subscription,
                                new_subscription(k, hooks.url, program.id))
        update = k.models.event.event.EventUpdate(
            programID=event.program_id, event_name="elaad-limit-2", priority=event.priority,
            targets=event.targets, payload_descriptors=event.payload_descriptors,
            interval_period=event.interval_period, intervals=event.intervals)
        if version == V301:  # 3.0.1's client sends the whole object, updated
            update = event.update(update)
        updated = await asyncio.to_thread(bl.events.update_event_by_id, event.id, update)
        assert updated.event_name == "elaad-limit-2"

        async def hooked():
            for auth, note in hooks.posts:
                if note["object"]["id"] == event.id and \
                        note["object"].get("eventName") == "elaad-limit-2":
                    return auth, note
            return None

        auth, note = await until(hooked, within=15)
        assert auth == "Bearer elaad-hook"
        assert note["operation"] == ("UPDATE" if version == V31 else "PUT")

        report = await asyncio.to_thread(ven.reports.create_report, new_report(k, updated))
        assert report.id

        platform = vtn.clients["agg-x"]

        async def reading():
            _, rows = await platform.get("/v1/readings?resource_id=o1")
            return [r for r in rows if abs(r["value"] - 2750.0) < 1e-6]

        async def ack():
            _, rows = await platform.get("/v1/acknowledgements?resource_id=o1")
            return [a for a in rows if a["protocol_status"] == "RUNNING_CURTAILED"]

        assert await until(reading)
        assert (await until(ack))[0]["status"] == "started"
    finally:
        await hooks.stop()
