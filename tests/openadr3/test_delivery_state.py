"""No silent loss of control: what the VTN knows of getting a DER's control to its VEN is the
DER's delivery state in the platform (`GET /v1/resources/{id}`), and a DER whose live control
can no longer reach its VEN raises an "undeliverable" notice."""

from __future__ import annotations

from tests.openadr3.conftest import CORE_WARNINGS, until
from tests.openadr3.test_findings import limit_event
from tests.openadr3.test_integration import submit_limit
from tests.support.webhooks import WebhookReceiver

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


async def subscribe(vtn, token: str, url: str, client: str = "ven-x") -> dict:
    status, sub = await vtn.call("POST", "/subscriptions", token, {
        "clientName": client,
        "objectOperations": [{"objects": ["EVENT"], "operations": ["CREATE", "UPDATE"],
                              "callbackUrl": url}]})
    assert status == 201, sub
    return sub


async def test_a_webhook_the_ven_took_marks_its_der_delivered(vtn):
    """The VEN does not poll: the webhook carrying o1's event, accepted by the VEN's
    receiver, is what makes o1 `delivered`; a business-logic subscriber's webhook about the
    same event tells nothing of o1 (o2, without a control, stays without a state)."""
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    token = await vtn.token(ven)
    bl = await vtn.provision("ldc-a", {"role": "bl"})
    bl_token = await vtn.token(bl)
    # (BL's receiver fails: no matter to o1)
    async with WebhookReceiver(200) as hooks, WebhookReceiver(500) as bl_hooks:
        await subscribe(vtn, token, hooks.url)
        await subscribe(vtn, bl_token, bl_hooks.url, client="bl")
        await submit_limit(vtn, 2_500)

        async def delivered():
            found = await delivery(vtn, "o1")
            return found if found.get("state") == "delivered" else None

        await until(delivered, within=15)
        assert any(n["object"]["targets"] == ["ven-x/bat-1"] for n in hooks.bodies)
        assert bl_hooks.posts, "the BL subscriber was notified too"
        assert (await delivery(vtn, "o2")) == {}


async def test_a_webhook_that_fails_for_good_marks_its_der_undeliverable(vtn):
    """The VEN's receiver refuses every webhook; once the tries run out, o1 (whose event they
    carried) is `undeliverable` with the reason; o2 (no control, no event) is not."""
    deliveries = vtn.gw.gateway.deliveries
    deliveries.base_backoff_s, deliveries.max_backoff_s = 0.01, 0.01  # tries in quick order
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    token = await vtn.token(ven)
    async with WebhookReceiver(503) as hooks:
        await subscribe(vtn, token, hooks.url)
        await submit_limit(vtn, 2_600)

        async def undeliverable():
            deliveries.wake()  # (the worker otherwise looks for due retries once a second)
            found = await delivery(vtn, "o1")
            return found if found.get("state") == "undeliverable" else None

        found = await until(undeliverable, within=30)
        assert "webhook" in found["reason"] and "HTTP 503" in found["reason"]
        assert len(hooks.posts) >= 20  # every try reached the receiver
        assert (await delivery(vtn, "o2")) == {}


async def test_deleting_a_subscription_cancels_its_pending_webhooks_of_controls(vtn):
    """A webhook carrying a DER's event waits for a retry (the receiver refused it); the VEN
    deletes its subscription: nothing is pending any more, and nothing more is sent."""
    ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    token = await vtn.token(ven)
    async with WebhookReceiver(503) as hooks:
        sub = await subscribe(vtn, token, hooks.url)
        await submit_limit(vtn, 2_700)
        await until(lambda: _true(hooks.posts))
        deliveries = vtn.gw.gateway.deliveries
        assert (await deliveries.stats())["pending"] >= 1  # its retry waits
        status, _ = await vtn.call("DELETE", f"/subscriptions/{sub['id']}", token)
        assert status == 200
        assert (await deliveries.stats())["pending"] == 0


async def _true(items: list) -> bool:
    return bool(items)
