"""Subscriptions and notifications: who subscribed to what, and the durable fan-out.

Notifications are committed to the core's DeliveryQueue (an outbox with retries), never
POSTed inline, so a slow or absent receiver cannot hold up a request or lose a change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import MEDIA_TYPE, serialize
from adapters.ieee2030_5.state import AdapterState, Subscription
from gateway.delivery import Outgoing
from gateway.errors import InvalidInput

UrlCheck = Callable[[str], Awaitable[None]]
SUBSCRIBABLE_SUFFIXES = ("/edev", "/fsa", "/derp", "/derc", "/dderc")
STATUS_DEFAULT = 0


class LimitReached(InvalidInput):
    """2030.5 Error reasonCode 2: resource limit reached."""

    reason_code = 2


class Unsupported(InvalidInput):
    """2030.5 Error reasonCode 3: conditional subscription field not supported."""

    reason_code = 3


def subscribable(href: str) -> bool:
    return href.rstrip("/").endswith(SUBSCRIBABLE_SUFFIXES)


class Notifier:
    """Subscriptions (cached, written through to the records) and notification fan-out."""

    def __init__(self, state: AdapterState, deliveries: Any, ssl_name: str | None,
                 check_url: UrlCheck) -> None:
        self.state = state
        self.deliveries = deliveries
        self.ssl_name = ssl_name
        self.check_url = check_url  # the gateway's one outbound guard (raises InvalidInput)
        self._subs: dict[int, list[Subscription]] = {}

    async def load(self) -> None:
        self._subs = {}
        for sub in await self.state.subscriptions():
            self._subs.setdefault(sub.edev_id, []).append(sub)

    def subscriptions(self, edev_id: int) -> list[Subscription]:
        return list(self._subs.get(edev_id, ()))

    def count(self, edev_ids: list[int]) -> int:
        return sum(len(self._subs.get(e, ())) for e in edev_ids)

    async def subscribe(self, edev_id: int, doc: m.Subscription,
                        allowed: Callable[[str], bool], *, held: int, cap: int) -> Subscription:
        """`held`: how many subscriptions the client already holds; `cap`: how many it may."""
        if not subscribable(doc.subscribedResource) or not allowed(doc.subscribedResource):
            raise InvalidInput("subscribedResource is not a subscribable resource of this client")
        if doc.limit < 1:
            raise InvalidInput("limit must be at least 1")
        if doc.Condition is not None:
            raise Unsupported("conditional subscriptions are not supported")
        if held >= cap:
            raise LimitReached(f"this client holds {held} subscriptions, the most it may")
        await self.check_url(doc.notificationURI)  # scheme, credentials, address ranges
        sub = Subscription(id=await self.state.next_id("sub"), edev_id=edev_id,
                           resource=doc.subscribedResource, notification_uri=doc.notificationURI,
                           limit=doc.limit, encoding=doc.encoding, level=doc.level)
        await self.state.save_subscription(sub)
        self._subs.setdefault(edev_id, []).append(sub)
        return sub

    async def unsubscribe(self, edev_id: int, sub_id: int) -> bool:
        removed = await self.state.delete_subscription(edev_id, sub_id)
        self._subs[edev_id] = [s for s in self._subs.get(edev_id, []) if s.id != sub_id]
        return removed

    def notifications(self, subs: list[Subscription], href: str, resource: Any
                      ) -> list[Outgoing]:
        """One Notification per subscription to `href`."""
        items = []
        for sub in subs:
            if sub.resource != href:
                continue
            note = m.Notification(
                subscribedResource=href, Resource=resource_for(resource, sub.limit),
                status=STATUS_DEFAULT, subscriptionURI=f"/edev/{sub.edev_id}/sub/{sub.id}")
            items.append(Outgoing(sub.notification_uri, serialize(note), MEDIA_TYPE, None,
                                  self.ssl_name))
        return items

    async def send(self, items: list[Outgoing]) -> int:
        """Commit notifications to the delivery outbox, in one transaction."""
        if items:
            await self.deliveries.enqueue_many(items)
        return len(items)

    async def announce(self, subs: list[Subscription], href: str, resource: Any) -> int:
        return await self.send(self.notifications(subs, href, resource))


def resource_for(resource: Any, limit: int) -> Any:
    """A list resource cut to the subscription's limit (results reflects the cut)."""
    for name in ("EndDevice", "FunctionSetAssignments", "DERProgram", "DERControl"):
        items = getattr(resource, name, None)
        if isinstance(items, list):
            kept = items[:limit]
            return replace(resource, **{name: kept, "results": len(kept)})
    return resource
