"""Bad input gets a problem object (application/json), stores nothing, and the VTN keeps
serving. Also: authentication, revocation, secrets at rest, privacy and SSRF refusals."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import ssl
from typing import Any

import pytest

from pki.tls import client_context
from tests.openadr3.conftest import CORE_WARNINGS, V31, V301

pytestmark = CORE_WARNINGS


@pytest.fixture
async def bl(vtn) -> str:
    cred = await vtn.provision("admin", {"role": "bl", "participant_id": "ldc-a"})
    return await vtn.token(cred)


async def count(vtn, token: str, path: str, version: str = V31) -> int:
    status, items = await vtn.call("GET", path, token, version=version)
    assert status == 200
    return len(items)


def assert_problem(status: int, body: Any, expected: int) -> None:
    assert status == expected, body
    assert body["status"] == expected and body["title"] and body["detail"]
    assert body["instance"].startswith("urn:uuid:")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"programName": 5}, "wrong type"),
        ({"programName": ""}, "too short"),
        ({"programName": "x" * 129}, "too long"),
        ({"programName": "p", "intervalPeriod": {"start": "2026-01-01T00:00:00"}}, "no zone"),
        ({"programName": "p", "intervalPeriod": {"start": "2026-02-30T00:00:00Z"}}, "no date"),
        ({"programName": "p", "intervalPeriod": {"duration": "1 hour"}}, "not ISO 8601"),
        ({"programName": "p", "targets": [""]}, "empty target"),
        (
            {"programName": "p", "payloadDescriptors": [{"payloadType": "PRICE"}]},
            "no discriminator",
        ),
        ([{"programName": "p"}], "not an object"),
    ],
)
async def test_invalid_program_is_refused_and_not_stored(vtn, bl, body, why):
    status, problem = await vtn.call("POST", "/programs", bl, body)
    assert_problem(status, problem, 400)
    assert await count(vtn, bl, "/programs") == 0, why


async def test_explicit_nulls_are_accepted_where_nullable(vtn, bl):
    status, program = await vtn.call(
        "POST",
        "/programs",
        bl,
        {
            "programName": "nulls",
            "programDescriptions": None,
            "payloadDescriptors": None,
            "attributes": None,
            "targets": None,
        },
    )
    assert status == 201, program
    status, event = await vtn.call(
        "POST",
        "/events",
        bl,
        {
            "programID": program["id"],
            "eventName": None,
            "priority": None,
            "targets": None,
            "reportDescriptors": None,
            "payloadDescriptors": None,
            "intervals": [],
        },
    )
    assert status == 201, event
    assert event["eventName"] is None
    assert event["createdDateTime"].endswith("Z")


@pytest.mark.parametrize(
    ("raw", "ctype"),
    [
        (b"{not json", "application/json"),
        (b'{"programName": NaN}', "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe", "application/json"),
    ],
)
async def test_malformed_bodies(vtn, bl, raw, ctype):
    status, problem = await vtn.call(
        "POST", "/programs", bl, data=raw, headers={"Content-Type": ctype}
    )
    assert_problem(status, problem, 400)
    assert await count(vtn, bl, "/programs") == 0


async def test_body_too_large_is_413_and_server_keeps_serving(vtn, bl):
    huge = json.dumps(
        {"programName": "big", "attributes": [{"type": "X", "values": ["y" * 1000] * 1100}]}
    ).encode()
    status, problem = await vtn.call(
        "POST", "/programs", bl, data=io.BytesIO(huge), headers={"Content-Type": "application/json"}
    )
    assert_problem(status, problem, 413)
    assert await count(vtn, bl, "/programs") == 0


async def test_unknown_path_and_wrong_method(vtn, bl):
    status, problem = await vtn.call("GET", "/nowhere", bl)
    assert_problem(status, problem, 404)
    async with vtn.http(bl) as http, http.patch(f"{vtn.base()}/programs") as resp:
        body = await resp.json()
        assert resp.status == 405 and "GET" in resp.headers["Allow"]
        assert body["status"] == 405


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/programs", [("limit", "51")]),
        ("/programs", [("limit", "ten")]),
        ("/programs", [("skip", "-1")]),
        ("/programs", [("skip", "1"), ("skip", "2")]),
        ("/events", [("programID", "bad id!")]),
        ("/events", [("active", "yes")]),
        ("/subscriptions", [("objects", "PROGRAMME")]),
        ("/programs", [("targets", "")]),
    ],
)
async def test_bad_query_parameters(vtn, bl, path, params):
    status, problem = await vtn.call("GET", path, bl, params=params)
    assert_problem(status, problem, 400)


async def raw_exchange(vtn, request: bytes) -> tuple[int, dict[str, Any], dict[str, Any]]:
    host, port = vtn.url.split("://")[1].split(":")
    ctx: ssl.SSLContext = client_context(vtn.ca)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx, server_hostname=host)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


async def test_oversize_and_garbage_request_lines_get_problem_json(vtn, bl):
    long_target = "t" * 100_000
    status, headers, body = await raw_exchange(
        vtn,
        f"GET /openadr3/3.1.0/events?targets={long_target} HTTP/1.1\r\nHost: x\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert body["status"] == 400
    status, headers, body = await raw_exchange(vtn, b"\x01\x02 nonsense\r\n\r\n")
    assert status == 400 and body["status"] == 400
    # A long but legitimate query (over aiohttp's default 8190 bytes) is served.
    targets = [("targets", f"group-{n:04d}") for n in range(900)]
    status, found = await vtn.call("GET", "/events", bl, params=targets)
    assert status == 200 and found == []


async def test_tokens_basic_auth_wrong_secret_revocation_and_hashing(vtn):
    cred = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    basic = base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode()).decode()
    async with vtn.http() as http:
        async with http.post(
            f"{vtn.base()}/auth/token",
            headers={"Authorization": f"Basic {basic}"},
            data={"grant_type": "client_credentials"},
        ) as resp:
            assert resp.status == 200
            token = (await resp.json())["access_token"]
            assert resp.headers["Cache-Control"] == "no-store"
        async with http.post(
            f"{vtn.base(V301)}/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": cred["client_id"],
                "client_secret": "wrong",
            },
        ) as resp:
            body = await resp.json()
            assert resp.status == 401 and body["error"] == "invalid_client"
        async with http.post(
            f"{vtn.base()}/auth/token",
            data={"grant_type": "password", "client_id": "a", "client_secret": "b"},
        ) as resp:
            assert (await resp.json())["error"] == "unsupported_grant_type"
    status, _ = await vtn.call("GET", "/vens", token)
    assert status == 200
    status, problem = await vtn.call("GET", "/vens", None)
    assert_problem(status, problem, 401)
    status, problem = await vtn.call("GET", "/vens", "not-a-token")
    assert_problem(status, problem, 401)

    adapter = vtn.gw.gateway.adapters["openadr3"]
    stored = await adapter.ctx.records.get("credential", cred["client_id"])
    assert cred["client_secret"] not in json.dumps(stored)
    for _key, doc in await adapter.ctx.records.list("token"):
        assert token not in json.dumps(doc)

    status, _ = await vtn.clients["agg-x"].request(
        "DELETE", f"/v1/adapters/openadr3/credentials/{cred['client_id']}"
    )
    assert status == 200
    status, problem = await vtn.call("GET", "/vens", token)
    assert_problem(status, problem, 401)
    # Another aggregator cannot see or revoke agg-x's credentials.
    status, listed = await vtn.clients["agg-y"].get("/v1/adapters/openadr3/credentials")
    assert status == 200 and listed == []


async def test_ven_privacy_and_target_writes(vtn, bl):
    x = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    y = await vtn.provision("agg-y", {"role": "ven", "ven_name": "ven-y"})
    tx, ty = await vtn.token(x), await vtn.token(y)
    _, vens_x = await vtn.call("GET", "/vens", tx)
    assert [v["venName"] for v in vens_x] == ["ven-x"]
    status, problem = await vtn.call("GET", f"/vens/{vens_x[0]['id']}", ty)
    assert_problem(status, problem, 404)
    # A VEN may rename itself but not grant itself targets.
    status, problem = await vtn.call(
        "PUT",
        f"/vens/{vens_x[0]['id']}",
        tx,
        {
            "objectType": "BL_VEN_REQUEST",
            "clientID": x["client_id"],
            "venName": "ven-x",
            "targets": ["ven-y/bat-1"],
        },
    )
    assert_problem(status, problem, 403)
    status, updated = await vtn.call(
        "PUT",
        f"/vens/{vens_x[0]['id']}",
        tx,
        {
            "objectType": "VEN_VEN_REQUEST",
            "venName": "ven-x",
            "attributes": [{"type": "LOCATION", "values": ["here"]}],
        },
    )
    assert status == 200, updated
    assert updated["targets"] == vens_x[0]["targets"]
    # ven-y's resources are not granted to ven-x: no targeted event leaks.
    _, events = await vtn.call("GET", "/events", tx, params=[("targets", "ven-y/bat-1")])
    assert events == []
    status, problem = await vtn.call("POST", "/programs", tx, {"programName": "mine"})
    assert_problem(status, problem, 403)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.8/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://192.168.1.1/x",
        "ftp://127.0.0.1/x",
        "https://user:pw@example.com/x",
    ],
)
async def test_subscription_callbacks_are_checked_against_ssrf(vtn, bl, url):
    status, problem = await vtn.call(
        "POST",
        "/subscriptions",
        bl,
        {
            "clientName": "bl",
            "objectOperations": [
                {"objects": ["EVENT"], "operations": ["CREATE"], "callbackUrl": url}
            ],
        },
    )
    assert status in (400, 403), problem
    assert problem["status"] == status
    assert await count(vtn, bl, "/subscriptions") == 0


async def test_loopback_http_callback_allowed_in_dev_mode_with_http_verbs(vtn, bl):
    status, sub = await vtn.call(
        "POST",
        "/subscriptions",
        bl,
        {
            "clientName": "bl",
            "objectOperations": [
                {
                    "objects": ["PROGRAM"],
                    "operations": ["POST", "PUT"],
                    "callbackUrl": "http://127.0.0.1:9/hook",
                }
            ],
        },
    )
    assert status == 201, sub
    assert sub["objectOperations"][0]["operations"] == ["POST", "PUT"]


async def test_concurrent_creates_cannot_share_a_name(vtn, bl):
    results = await asyncio.gather(
        *(vtn.call("POST", "/programs", bl, {"programName": "same"}) for _ in range(8))
    )
    assert sorted(status for status, _ in results) == [201] + [409] * 7
    assert await count(vtn, bl, "/programs") == 1


async def test_3_0_1_ven_with_inline_resources(vtn):
    cred = await vtn.provision("admin", {"role": "bl", "participant_id": "ldc-a"})
    token = await vtn.token(cred, V301)
    status, ven = await vtn.call(
        "POST",
        "/vens",
        token,
        {"venName": "v301", "resources": [{"resourceName": "a"}, {"resourceName": "b"}]},
        version=V301,
    )
    assert status == 201, ven
    assert sorted(r["resourceName"] for r in ven["resources"]) == ["a", "b"]
    status, listed = await vtn.call("GET", f"/vens/{ven['id']}/resources", token, version=V301)
    assert status == 200 and {r["venID"] for r in listed} == {ven["id"]}
    status, problem = await vtn.call(
        "POST",
        "/vens",
        token,
        {"venName": "v2", "resources": [{"resourceName": "a"}, {"resourceName": "a"}]},
        version=V301,
    )
    assert_problem(status, problem, 409)
    assert await count(vtn, token, "/vens", V301) == 1


async def test_ven_quotas_keep_memory_bounded(vtn, bl):
    service = vtn.gw.gateway.adapters["openadr3"].service
    service.max_reports, service.max_subscriptions = 2, 1
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    token = await vtn.token(ven)
    status, program = await vtn.call("POST", "/programs", bl, {"programName": "q"})
    status, event = await vtn.call(
        "POST", "/events", bl, {"programID": program["id"], "intervals": []}
    )
    assert status == 201
    made = []
    for n in range(3):
        status, report = await vtn.call(
            "POST",
            "/reports",
            token,
            {"eventID": event["id"], "clientName": "ven-x", "reportName": f"r{n}", "resources": []},
        )
        assert status == 201, report
        made.append(report["id"])
    _, reports = await vtn.call("GET", "/reports", token)
    assert [r["id"] for r in reports] == made[1:]
    sub = {
        "clientName": "ven-x",
        "objectOperations": [
            {"objects": ["EVENT"], "operations": ["CREATE"], "callbackUrl": "https://127.0.0.1:9/h"}
        ],
    }
    status, _ = await vtn.call("POST", "/subscriptions", token, sub)
    assert status == 201
    status, problem = await vtn.call("POST", "/subscriptions", token, sub)
    assert_problem(status, problem, 409)


async def test_a_large_body_sent_in_parts_is_read_whole(vtn, bl):
    """A body that arrives in several TCP reads (here chunked) is read to its end, not cut
    at the first part (the core's body reader read only what had arrived)."""
    body = json.dumps({"programName": "big-in-parts",
                       "attributes": [{"type": "X", "values": ["y" * 1000] * 400}]}).encode()

    async def parts():
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]
            await asyncio.sleep(0)

    status, made = await vtn.call("POST", "/programs", bl, data=parts(),
                                  headers={"Content-Type": "application/json"})
    assert status == 201, made
    assert len(made["attributes"][0]["values"]) == 400
