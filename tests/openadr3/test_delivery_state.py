"""No silent loss of control: what the VTN knows of getting a DER's control to its VEN is the
DER's delivery state in the platform (`GET /v1/resources/{id}`), and a DER whose live control
can no longer reach its VEN raises an "undeliverable" notice."""

from __future__ import annotations

from tests.openadr3.conftest import CORE_WARNINGS, until
from tests.openadr3.test_findings import limit_event
from tests.openadr3.test_integration import submit_limit

pytestmark = CORE_WARNINGS


async def delivery(vtn, rid: str) -> dict:
    status, resource = await vtn.clients["admin"].get(f"/v1/resources/{rid}")
    assert status == 200, resource
    return resource.get("delivery") or {}


async def test_read_by_the_ven_is_fetched_and_a_revoked_ven_is_undeliverable(vtn):
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    token = await vtn.token(ven)
    await submit_limit(vtn, 2_400)
    await limit_event(vtn, token, "3.1.0", 2.4)  # the VEN polls its event

    async def fetched():
        return (await delivery(vtn, "o1")).get("state") == "fetched"

    await until(fetched)
    # The platform revokes the VEN's credential: o1's limit can no longer reach anyone.
    status, _ = await vtn.clients["agg-x"].request(
        "DELETE", f"/v1/adapters/openadr3/credentials/{ven['client_id']}")
    assert status == 200

    async def undeliverable():
        found = await delivery(vtn, "o1")
        return found if found.get("state") == "undeliverable" else None

    found = await until(undeliverable)
    assert "ven-x" in found["reason"]

    async def noticed():
        _, notices = await vtn.clients["ldc-a"].get("/v1/notices")
        items = notices if isinstance(notices, list) else notices.get("items", [])
        return [n for n in items if n.get("kind") == "undeliverable"]

    assert await until(noticed)
