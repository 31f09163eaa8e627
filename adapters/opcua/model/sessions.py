"""Open sessions follow their operator's area while it changes.

The area of a session is not fixed at activation. When the platform topology changes (a DER
registered, moved or deleted, an embedded LDC attached or detached) or an operator's account
changes (another participant or role, or the user removed), open sessions see the new area
from their next request, and their monitored items follow it:

- an item whose node leaves the session's area delivers one value with status
  Bad_NodeIdUnknown, then nothing while the node stays outside; if the node comes back (a DER
  moved back, a host re-attached), the item delivers the node's current value again. The item
  itself is not deleted: the client created it and is the one to delete it (OPC UA Part 4
  gives the server no way to tell a client that an item vanished);
- an item whose node is deleted (a DER removed from the platform) gets the same
  Bad_NodeIdUnknown value from `AddressSpace.remove` and stays silent for good, as for any
  deleted node;
- every notification is also checked against the session's area when it is queued (one
  dict lookup), so nothing leaks in the moment between a change and `AreaFollower` noticing it;
- the sessions of a removed user are closed (their subscriptions deleted) and every further
  request on them answers Bad_UserAccessDenied; a replaced user's sessions act with the new
  account (role and participant) from their next request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from asyncua import ua
from asyncua.server.monitored_item_service import MonitoredItemService
from asyncua.ua.status_codes import StatusCodes

from adapters.opcua.model.access import AreaAccess, AreaView
from adapters.opcua.model.users import OperatorAccount, UserDirectory
from adapters.opcua.model.wire import status
from gateway.ports import GatewayPort

if TYPE_CHECKING:
    from adapters.opcua.model.security import OperatorInternalServer

log = logging.getLogger(__name__)

Scope = Callable[[], "tuple[AreaAccess, AreaView] | None"]


def _unknown() -> ua.DataValue:
    return ua.DataValue(StatusCode=status(StatusCodes.BadNodeIdUnknown))


class AreaMonitoredItems(MonitoredItemService):
    """asyncua's monitored items of one subscription, each delivering only while its node
    lies in the area of the session owning the subscription (`scope`, read at each use)."""

    def __init__(self, isub: Any, aspace: Any, scope: Scope) -> None:
        super().__init__(isub, aspace)
        self._scope = scope
        self.hidden: set[int] = set()  # outside the area: told Bad_NodeIdUnknown once
        self.gone: set[int] = set()  # their node was deleted
        self._owners: dict[int, tuple[int, str | None]] = {}  # mid -> (generation, owner)

    def _shown(self, mid: int) -> bool:
        """Whether the item's node lies in the area now. Its owner is looked up again only
        after the model's structure changed (`generation`): a notification costs a dict
        lookup or two."""
        scope = self._scope()
        mdata = self._monitored_items.get(mid)
        if scope is None or mdata is None or mdata.read_value_id is None:
            return True
        access, view = scope
        if view.everything:
            return True
        generation = access.generation
        cached = self._owners.get(mid)
        if cached is not None and cached[0] == generation:
            return view.sees(cached[1])
        owner = access.owner(mdata.read_value_id.NodeId)
        self._owners[mid] = (generation, owner)
        return view.sees(owner)

    async def datachange_callback(self, handle: int, value: ua.DataValue,
                                  error: ua.StatusCode | None = None) -> None:
        mid = self._monitored_datachange.get(handle)
        if mid is None or mid in self.gone:
            return
        if error is not None:  # the node was deleted (AddressSpace.remove)
            if mid not in self.hidden:
                await self._deliver(mid, _unknown())
            self.gone.add(mid)
            self.hidden.discard(mid)
            return
        if mid in self.hidden:
            return
        if not self._shown(mid):
            await self._hide(mid)
            return
        await self._deliver(mid, value)

    async def _deliver(self, mid: int, value: ua.DataValue) -> None:
        """asyncua's data-change handling, without its deepcopy of every value (most of the
        cost of a notification): our DataValues are never changed once made - a write makes
        a new one (`AddressSpace.flush`), as asyncua's own writes do."""
        mdata = self._monitored_items[mid]
        if mdata.mode == ua.MonitoringMode.Disabled:
            return
        values = mdata.mvalue
        values.old_dvalue, values.current_dvalue = values.current_dvalue, value
        if mdata.filter:
            changed = (self._is_data_changed(values, mdata.filter.Trigger)
                       and self._is_deadband_exceeded(values, mdata.filter))
        else:
            changed = self._is_data_changed(values, ua.DataChangeTrigger.StatusValue)
        if changed:  # (built with its Value: the default would make and drop a DataValue)
            event = ua.MonitoredItemNotification(ClientHandle=mdata.client_handle, Value=value)
            await self.isub.enqueue_datachange_event(mid, event, mdata.queue_size)

    def _is_deadband_exceeded(self, values: Any, flt: ua.DataChangeFilter) -> bool:
        """asyncua's deadband, except that a change of status always notifies (Part 4,
        7.22.2: the deadband applies to the value) and so does a value appearing or going
        (null -> number: asyncua would subtract None)."""
        cur, old = values.get_current_datavalue(), values.get_old_datavalue()
        if cur is None or old is None or cur.StatusCode != old.StatusCode:
            return True
        if (cur.Value is None or old.Value is None or cur.Value.Value is None
                or old.Value.Value is None):
            return True
        return bool(super()._is_deadband_exceeded(values, flt))

    async def trigger_event(self, event: Any, mid: int | None = None) -> bool:
        """An event about a node (its SourceNode) outside the area is not delivered: alarms
        of another LDC's DERs stay unknown to this session, as the DERs do."""
        scope = self._scope()
        source = getattr(event, "SourceNode", None)
        if scope is not None and isinstance(source, ua.NodeId):
            access, view = scope
            if not access.visible(view, source):
                return False
        return await super().trigger_event(event, mid)

    async def _hide(self, mid: int) -> None:
        mdata = self._monitored_items[mid]
        self.hidden.add(mid)
        if mdata.callback_handle is not None:
            await self._deliver(mid, _unknown())

    async def follow_area(self) -> None:
        """Hide the items whose node left the area, show again those whose node is back."""
        for mid, mdata in list(self._monitored_items.items()):
            if mdata.callback_handle is None or mdata.read_value_id is None or mid in self.gone:
                continue  # an event item (server object only), or a deleted node's
            shown = self._shown(mid)
            if not shown and mid not in self.hidden:
                await self._hide(mid)
            elif shown and mid in self.hidden:
                self.hidden.discard(mid)
                if mdata.mode != ua.MonitoringMode.Disabled:
                    await self.trigger_datachange(mdata.callback_handle,
                                                  mdata.read_value_id.NodeId,
                                                  mdata.read_value_id.AttributeId)

    def _delete_monitored_items(self, mid: int) -> ua.StatusCode:
        self.hidden.discard(mid)
        self.gone.discard(mid)
        self._owners.pop(mid, None)
        return super()._delete_monitored_items(mid)


class AreaFollower:
    """Carries platform and account changes to the open sessions, in one task.

    Per change: the views of the participants in use are recomputed once (`AreaAccess
    .refresh`), and only if a view changed, a DER moved, or an account changed are the
    monitored items of the sessions concerned re-checked (one dict lookup per item)."""

    def __init__(self, gateway: GatewayPort, iserver: OperatorInternalServer,
                 users: UserDirectory) -> None:
        self._gateway = gateway
        self._iserver = iserver
        self._users = users
        self._wake = asyncio.Event()
        self._topology = False
        self._moved = False
        self._accounts: set[str] = set()  # user names whose account changed

    def topology_changed(self, moved: bool) -> None:
        """The model changed (`moved`: DERs now hang under other connection points)."""
        self._topology = True
        self._moved |= moved
        self._wake.set()

    def account_changed(self, name: str, account: OperatorAccount | None) -> None:
        """At once, so that the very next request of those sessions uses the new account."""
        for session in self._iserver.sessions_of(name):
            if session.account is not None:  # a removed user's session stays refused
                session.operator_changed(account)
        self._accounts.add(name)
        self._wake.set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self._users.watch(self.account_changed)
        async with asyncio.TaskGroup() as group:
            task = group.create_task(self._loop(), name="opcua-areas")
            try:
                yield
            finally:
                task.cancel()
                self._users.unwatch(self.account_changed)

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.follow()
            except Exception:  # the store may be briefly unavailable; retry on the next change
                log.exception("opcua: carrying an area change to the sessions failed")

    async def follow(self) -> None:
        access = self._iserver.access
        if access is None:
            return
        recheck_all, self._moved = self._moved, False
        if self._topology:
            self._topology = False
            recheck_all |= access.refresh(await self._gateway.topology())
        names, self._accounts = self._accounts, set()
        if not recheck_all and not names:
            return
        for session in self._iserver.all_sessions():
            account = session.account
            changed_user = session.user.name in names
            if changed_user and account is None:
                log.info("opcua: user %s removed; closing its session %s", session.user.name,
                         session.session_id)
                await session.close_session(delete_subs=True)
                continue
            if recheck_all or changed_user:
                await access.view(account)  # a new participant: computed once, then cached
                for items in session.monitored_items():
                    await items.follow_area()
