"""The Subscription/Notification function set: who subscribed to what, and the fan-out.

Notifications are never POSTed inline: they are committed as deliveries (the core's outbox
with retries) in the same transaction as the change they announce, so a slow or absent
receiver cannot hold up a request, and a crash cannot lose one half of a change. Each
carries the subject `sub:<id>`: deleting the Subscription (or its EndDevice) cancels what is
still pending for it in the same transaction as the deletion.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import replace
from typing import Any

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import MEDIA_TYPE, serialize
from adapters.ieee2030_5.state import AdapterState, Subscription, subscription_key
from gateway.errors import InvalidInput
from gateway.ports import Outgoing, RecordWrite

UrlCheck = Callable[[str], Awaitable[None]]
SUBSCRIBABLE_SUFFIXES = ("/edev", "/fsa", "/derp", "/derc", "/dderc")
STATUS_DEFAULT = 0
SUBJECT_PREFIX = "sub:"


class LimitReached(InvalidInput):
    """2030.5 Error reasonCode 2: resource limit reached."""

    reason_code = 2


class Unsupported(InvalidInput):
    """2030.5 Error reasonCode 3: conditional subscription field not supported."""

    reason_code = 3


def subscribable(href: str) -> bool:
    return href.rstrip("/").endswith(SUBSCRIBABLE_SUFFIXES)


def subject(sub_id: int) -> str:
    """The delivery subject of a Subscription's notifications."""
    return f"{SUBJECT_PREFIX}{sub_id}"


def subscription_of(delivery_subject: str | None) -> int | None:
    """The Subscription id a delivery subject names (None: not a subscription's)."""
    if not delivery_subject or not delivery_subject.startswith(SUBJECT_PREFIX):
        return None
    tail = delivery_subject[len(SUBJECT_PREFIX):]
    return int(tail) if tail.isdigit() else None


def edev_of(href: str) -> int | None:
    """The EndDevice id an href lies under (/edev/{e}/...), None for /edev itself."""
    parts = href.strip("/").split("/")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "edev" and parts[1].isdigit() \
        else None


class Notifier:
    """Subscriptions (cached, written through to the records) and notification fan-out."""

    def __init__(self, state: AdapterState, tls_name: str | None, check_url: UrlCheck) -> None:
        self.state = state
        self.tls_name = tls_name
        self.check_url = check_url  # the gateway's one outbound guard (raises InvalidInput)
        self._by_id: dict[int, Subscription] = {}
        # The same subscriptions by holder and by subscribed href: a change to one DER's list
        # finds its few subscribers without going through its aggregator's thousands.
        self._subs: dict[int, dict[int, Subscription]] = {}
        self._to: dict[str, dict[int, Subscription]] = {}

    async def load(self) -> None:
        self._subs, self._by_id, self._to = {}, {}, {}
        for sub in await self.state.subscriptions():
            self._keep(sub)

    async def reread(self, keys: Iterable[str]) -> None:
        """Another process wrote these Subscriptions (record keys): keep them as the store
        has them now (added, or gone)."""
        keys = list(keys)
        stored = await self.state.subscriptions_by_key(keys)
        for key in keys:
            sub = stored.get(key)
            if sub is not None:
                self._keep(sub)
            elif (old := self._by_id.get(int(key.rsplit("/", 1)[-1]))) is not None:
                self.forget([old])

    def _keep(self, sub: Subscription) -> None:
        old = self._by_id.get(sub.id)
        if old is not None:
            self.forget([old])
        self._subs.setdefault(sub.edev_id, {})[sub.id] = sub
        self._to.setdefault(sub.resource, {})[sub.id] = sub
        self._by_id[sub.id] = sub

    def subscriptions(self, edev_id: int) -> list[Subscription]:
        return list(self._subs.get(edev_id, {}).values())

    def to(self, href: str, holders: set[int]) -> list[Subscription]:
        """The subscriptions to `href` held by these EndDevices."""
        return [s for s in self._to.get(href, {}).values() if s.edev_id in holders]

    def by_id(self, sub_id: int) -> Subscription | None:
        return self._by_id.get(sub_id)

    def count(self, edev_ids: Collection[int]) -> int:
        """Subscriptions held by these EndDevices (few hold any: go through the smaller)."""
        if len(self._subs) < len(edev_ids):
            return sum(len(held) for e, held in self._subs.items() if e in edev_ids)
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
        self._keep(sub)
        return sub

    async def unsubscribe(self, edev_id: int, sub_id: int) -> bool:
        """Delete a Subscription and cancel its pending notifications, in one transaction:
        once the client has its 204, nothing more is sent for it."""
        sub = self._by_id.get(sub_id)
        if sub is None or sub.edev_id != edev_id:
            return False
        await self.state.write(self.removal([sub]))
        self.forget([sub])
        return True

    def removal(self, subs: Iterable[Subscription]) -> RecordWrite:
        """The deletion of these Subscriptions and of what is still pending for them."""
        gone = list(subs)
        return RecordWrite(deletes=[subscription_key(s.edev_id, s.id) for s in gone],
                           cancel=[subject(s.id) for s in gone])

    def forget(self, subs: Iterable[Subscription]) -> None:
        """Drop deleted Subscriptions from the cache (after their deletion committed)."""
        for sub in subs:
            self._by_id.pop(sub.id, None)
            _drop(self._subs, sub.edev_id, sub.id)
            _drop(self._to, sub.resource, sub.id)

    def about(self, edev_ids: set[int]) -> list[Subscription]:
        """Every Subscription held by, or to a resource under, these EndDevices (what goes
        when they go)."""
        return [s for s in self._by_id.values()
                if s.edev_id in edev_ids or edev_of(s.resource) in edev_ids]

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
            items.append(Outgoing(sub.notification_uri, serialize(note), MEDIA_TYPE,
                                  tls=self.tls_name, subject=subject(sub.id)))
        return items

    async def send(self, items: list[Outgoing],
                   puts: dict[str, dict[str, dict[str, Any]]] | None = None) -> int:
        """Commit notifications (and the records whose change they announce) together."""
        if items or puts:
            await self.state.write(RecordWrite(puts=puts or {}, deliveries=items))
        return len(items)

    async def announce(self, subs: list[Subscription], href: str, resource: Any) -> int:
        return await self.send(self.notifications(subs, href, resource))


def _drop[K](index: dict[K, dict[int, Subscription]], group: K, sub_id: int) -> None:
    members = index.get(group)
    if members is not None:
        members.pop(sub_id, None)
        if not members:
            del index[group]


def resource_for(resource: Any, limit: int) -> Any:
    """A list resource cut to the subscription's limit (results reflects the cut)."""
    for name in ("EndDevice", "FunctionSetAssignments", "DERProgram", "DERControl"):
        items = getattr(resource, name, None)
        if isinstance(items, list):
            kept = items[:limit]
            return replace(resource, **{name: kept, "results": len(kept)})
    return resource
