"""Issue 13's findings, one test each, through the real gateway (real TLS, SQLite, sockets).

Each test failed on the code before its fix: the finding number is in its name.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.openadr3.conftest import CORE_WARNINGS, V31, V301, until
from tests.openadr3.test_hostile import assert_problem
from tests.openadr3.test_integration import iso, submit_limit

pytestmark = CORE_WARNINGS


@pytest.fixture
async def bl(vtn) -> str:
    cred = await vtn.provision("admin", {"role": "bl", "participant_id": "ldc-a"})
    return await vtn.token(cred)


async def limit_event(vtn, token: str, version: str, kw: float) -> dict[str, Any]:
    async def probe():
        _, events = await vtn.call("GET", "/events", token, version=version,
                                   params=[("targets", "ven-x/bat-1")] if version == V31 else None)
        for event in events:
            for iv in event["intervals"]:
                if {"type": "EXPORT_CAPACITY_LIMIT", "values": [kw]} in iv["payloads"]:
                    return event
        return None

    return await until(probe)


def report_body(event: dict[str, Any], version: str, kw: float, state: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "eventID": event["id"],
        "clientName": "ven-x",
        "payloadDescriptors": [
            {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "READING", "units": "KW"}
        ],
        "resources": [
            {
                "resourceName": "bat-1",
                "intervalPeriod": {"start": iso(now), "duration": "PT5M"},
                "intervals": [
                    {
                        "id": 0,
                        "payloads": [
                            {"type": "READING", "values": [kw]},
                            {"type": "OPERATING_STATE", "values": [state]},
                        ],
                    }
                ],
            }
        ],
    }
    if version == V301:
        body["programID"] = event["programID"]
    return body


@pytest.mark.parametrize("version", [V301, V31])
async def test_finding_1_a_report_keeps_its_resources_and_reaches_the_platform(vtn, version):
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x",
                                        "api_version": version})
    token = await vtn.token(ven, version)
    await submit_limit(vtn, 2_500)
    event = await limit_event(vtn, token, version, 2.5)
    status, report = await vtn.call("POST", "/reports", token,
                                    report_body(event, version, 1.25, "RUNNING_CURTAILED"),
                                    version=version)
    assert status == 201, report
    assert report["resources"][0]["resourceName"] == "bat-1"
    status, listed = await vtn.call("GET", "/reports", token, version=version)
    assert status == 200 and all("resources" in r for r in listed)

    platform = vtn.clients["agg-x"]

    async def reading():
        _, rows = await platform.get("/v1/readings?resource_id=o1")
        return [r for r in rows if abs(r["value"] - 1250.0) < 1e-6]

    async def ack():
        _, rows = await platform.get("/v1/acknowledgements?resource_id=o1")
        return [a for a in rows if a["protocol_status"] == "RUNNING_CURTAILED"]

    assert (await until(reading))[0]["protocol"] == "openadr3"
    assert (await until(ack))[0]["status"] == "started"


@pytest.mark.parametrize("version", [V31, V301])
async def test_finding_2_a_ven_cannot_cut_its_ders_off(vtn, bl, version):
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x",
                                        "api_version": version})
    token = await vtn.token(ven, version)
    await submit_limit(vtn, 2_000)
    await limit_event(vtn, token, version, 2.0)
    ven_id = ven["ven_id"]
    for who in (token, await vtn.token(await vtn.provision(
            "admin", {"role": "bl", "participant_id": "ldc-a"}), version)):
        status, problem = await vtn.call("DELETE", f"/vens/{ven_id}", who, version=version)
        assert_problem(status, problem, 403)
        assert "platform DERs (o1, o2)" in problem["detail"]
    rename: dict[str, Any] = {"venName": "ven-z"}
    if version == V31:
        rename["objectType"] = "VEN_VEN_REQUEST"
    status, problem = await vtn.call("PUT", f"/vens/{ven_id}", token, rename, version=version)
    assert_problem(status, problem, 403)
    # Still there, still delivering: the next limit reaches the VEN.
    status, kept = await vtn.call("GET", f"/vens/{ven_id}", token, version=version)
    assert status == 200 and kept["venName"] == "ven-x"
    await submit_limit(vtn, 1_500)
    await limit_event(vtn, token, version, 1.5)


async def test_finding_3_deep_and_duplicate_json_is_a_400_problem(vtn, bl):
    deep = b"[" * 100_000 + b"]" * 100_000
    status, problem = await vtn.call("POST", "/programs", bl, data=deep,
                                     headers={"Content-Type": "application/json"})
    assert_problem(status, problem, 400)
    twice = b'{"programName": "a", "programName": "b"}'
    status, problem = await vtn.call("POST", "/programs", bl, data=twice,
                                     headers={"Content-Type": "application/json"})
    assert_problem(status, problem, 400)
    status, listed = await vtn.call("GET", "/programs", bl)
    assert status == 200 and listed == []


async def test_finding_4_a_3_0_1_resource_keeps_one_target(vtn):
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x",
                                        "api_version": V301})
    token = await vtn.token(ven, V301)
    for n in range(6):
        await submit_limit(vtn, 1_000 + 100 * n)
        await limit_event(vtn, token, V301, round((1_000 + 100 * n) / 1e3, 6))
    status, resources = await vtn.call("GET", f"/vens/{ven['ven_id']}/resources", token,
                                       version=V301)
    assert status == 200
    by_name = {r["resourceName"]: r["targets"] for r in resources}
    assert by_name["bat-1"] == [{"type": "RESOURCE_NAME", "values": ["ven-x/bat-1"]}]


async def test_finding_5_a_3_0_1_ven_asking_read_all_can_read(vtn):
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x",
                                        "api_version": V301})
    async with vtn.http() as http, http.post(
        f"{vtn.base(V301)}/auth/token",
        data={"grant_type": "client_credentials", "client_id": ven["client_id"],
              "client_secret": ven["client_secret"], "scope": "read_all write_reports"},
    ) as resp:
        issued = await resp.json()
    assert resp.status == 200 and issued["scope"] == "read_all write_reports"
    status, events = await vtn.call("GET", "/events", issued["access_token"], version=V301)
    assert status == 200, events


@pytest.mark.parametrize("version", [V31, V301])
async def test_finding_6_explicit_null_is_absent_for_optional_fields(vtn, bl, version):
    status, program = await vtn.call(
        "POST", "/programs", bl,
        {"programName": "nulls", "intervalPeriod": None, "timeZoneOffset": None},
        version=version)
    assert status == 201, program
    assert "intervalPeriod" not in program
    start = iso(datetime.now(UTC) + timedelta(hours=1))
    event: dict[str, Any] = {
        "programID": program["id"],
        "intervalPeriod": {"start": start, "duration": None, "randomizeStart": None},
        "intervals": [{"id": 0, "intervalPeriod": None,
                       "payloads": [{"type": "PRICE", "values": [0.2]}]}],
    }
    if version == V31:
        event["duration"] = None
    status, made = await vtn.call("POST", "/events", bl, event, version=version)
    assert status == 201, made
    assert made["intervalPeriod"] == {"start": start}
    assert "intervalPeriod" not in made["intervals"][0] and "duration" not in made


async def test_finding_7_a_ven_learns_nothing_of_another_partys_ven_name(vtn):
    await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    other = await vtn.provision("agg-y", {"role": "ven", "ven_name": "ven-y"})
    token = await vtn.token(other)
    status, problem = await vtn.call(
        "POST", "/vens", token, {"objectType": "VEN_VEN_REQUEST", "venName": "ven-x"})
    assert_problem(status, problem, 404)
    assert "exists" not in problem["detail"]
    # Its own name taken by itself is still a plain conflict.
    status, problem = await vtn.call(
        "POST", "/vens", token, {"objectType": "VEN_VEN_REQUEST", "venName": "ven-y"})
    assert_problem(status, problem, 409)


async def test_finding_7_a_report_on_an_invisible_event_is_answered_as_for_none(vtn):
    x = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    y = await vtn.provision("agg-y", {"role": "ven", "ven_name": "ven-y"})
    await submit_limit(vtn, 2_200)
    event = await limit_event(vtn, await vtn.token(x), V31, 2.2)
    token = await vtn.token(y)
    seen = await vtn.call("POST", "/reports", token,
                          {**report_body(event, V31, 1.0, "NORMAL"), "clientName": "ven-y"})
    none = await vtn.call("POST", "/reports", token,
                          {**report_body(event, V31, 1.0, "NORMAL"), "clientName": "ven-y",
                           "eventID": "no-such-event"})
    assert seen[0] == none[0] == 409
    assert seen[1]["detail"].replace(event["id"], "X") == \
        none[1]["detail"].replace("no-such-event", "X")


@pytest.mark.parametrize("kind", ["vens", "resources"])
async def test_finding_10_a_ven_sending_foreign_targets_is_refused(vtn, kind):
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    token = await vtn.token(ven)
    _, objects = await vtn.call("GET", f"/{kind}", token)
    obj = objects[0]
    body: dict[str, Any] = {"targets": ["ven-y/bat-1"]}
    if kind == "vens":
        body.update(objectType="VEN_VEN_REQUEST", venName=obj["venName"])
    else:
        body.update(objectType="VEN_RESOURCE_REQUEST", resourceName=obj["resourceName"],
                    venID=obj["venID"])
    status, problem = await vtn.call("PUT", f"/{kind}/{obj['id']}", token, body)
    assert_problem(status, problem, 403)
    status, kept = await vtn.call("GET", f"/{kind}/{obj['id']}", token)
    assert kept["targets"] == obj["targets"]


@pytest.mark.parametrize(
    "url",
    [
        "https://167772161/hook",  # 10.0.0.1 in decimal
        "https://3221225985/hook",  # 192.0.2.1 in decimal
        "https://0x0a000001/hook",  # hex
        "https://012.0.0.1/hook",  # octal
        "https://10.1/hook",  # short form
        "https://[::ffff:10.0.0.1]/hook",
    ],
)
async def test_callbacks_in_any_address_notation_are_refused_with_400(vtn, bl, url):
    status, problem = await vtn.call(
        "POST", "/subscriptions", bl,
        {"clientName": "bl", "objectOperations": [
            {"objects": ["EVENT"], "operations": ["CREATE"], "callbackUrl": url}]})
    assert_problem(status, problem, 400)
    _, listed = await vtn.call("GET", "/subscriptions", bl)
    assert listed == []


async def test_a_resource_name_is_unique_within_its_ven_and_freed_by_a_rename(vtn):
    """The name check reads an index of names, not every resource object: a taken name is
    a conflict within the ven, free in another, and free again once renamed."""
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    token = await vtn.token(ven)
    _, objects = await vtn.call("GET", "/resources", token)
    ven_id = objects[0]["venID"]

    async def post(name: str) -> tuple[int, Any]:
        result: tuple[int, Any] = await vtn.call("POST", "/resources", token, {
            "objectType": "VEN_RESOURCE_REQUEST", "resourceName": name, "venID": ven_id})
        return result

    status, made = await post("meter-1")
    assert status == 201, made
    status, problem = await post("meter-1")
    assert_problem(status, problem, 409)
    status, renamed = await vtn.call("PUT", f"/resources/{made['id']}", token, {
        "objectType": "VEN_RESOURCE_REQUEST", "resourceName": "meter-2", "venID": ven_id})
    assert status == 200, renamed
    status, again = await post("meter-1")
    assert status == 201, again
    status, problem = await post("meter-2")
    assert_problem(status, problem, 409)
