"""Subscriptions and notifications: who subscribed to what, and the durable fan-out.

Notifications are committed to the core's DeliveryQueue (an outbox with retries), never
POSTed inline, so a slow or absent receiver cannot hold up a request or lose a change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import MEDIA_TYPE, serialize
from adapters.ieee2030_5.state import AdapterState, Subscription
from gateway.delivery import Outgoing
from gateway.errors import InvalidInput

SUBSCRIBABLE_SUFFIXES = ("/edev", "/fsa", "/derp", "/derc", "/dderc")
STATUS_DEFAULT = 0


def subscribable(href: str) -> bool:
    return href.rstrip("/").endswith(SUBSCRIBABLE_SUFFIXES)


class Notifier:
    def __init__(self, state: AdapterState, deliveries: Any, ssl_name: str | None) -> None:
        self.state = state
        self.deliveries = deliveries
        self.ssl_name = ssl_name

    async def subscribe(self, edev_id: int, doc: m.Subscription,
                        allowed: Callable[[str], bool]) -> Subscription:
        if not subscribable(doc.subscribedResource) or not allowed(doc.subscribedResource):
            raise InvalidInput("subscribedResource is not a subscribable resource of this client")
        if doc.limit < 1:
            raise InvalidInput("limit must be at least 1")
        sub = Subscription(id=await self.state.next_id("sub"), edev_id=edev_id,
                           resource=doc.subscribedResource, notification_uri=doc.notificationURI,
                           limit=doc.limit, encoding=doc.encoding, level=doc.level)
        await self.state.save_subscription(sub)
        return sub

    async def announce(self, subs: list[Subscription], href: str, resource: Any) -> int:
        """Queue one Notification per subscription to `href`; returns how many."""
        items = []
        for sub in subs:
            if sub.resource != href:
                continue
            body = resource_for(resource, sub.limit)
            note = m.Notification(
                href=None, subscribedResource=href, Resource=body, status=STATUS_DEFAULT,
                subscriptionURI=f"/edev/{sub.edev_id}/sub/{sub.id}")
            items.append(Outgoing(sub.notification_uri, serialize(note), MEDIA_TYPE, None,
                                  self.ssl_name))
        if items:
            await self.deliveries.enqueue_many(items)
        return len(items)


def resource_for(resource: Any, limit: int) -> Any:
    """A list resource cut to the subscription's limit (results reflects the cut)."""
    for name in ("EndDevice", "FunctionSetAssignments", "DERProgram", "DERControl"):
        items = getattr(resource, name, None)
        if isinstance(items, list):
            kept = items[:limit]
            setattr(resource, name, kept)
            resource.results = len(kept)
    return resource
