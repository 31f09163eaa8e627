"""Which nodes an operator may see: the platform's area of the participant it acts for.

An operator acting for an LDC (or for a SCADA participant of an LDC) sees the nodes of that
LDC and of every LDC embedded below it (a host LDC sees its embedded LDCs' DERs, as the
platform's tri-party rule says); an operator acting for a participant the platform lets see
everything (the admin, the ISO) sees the whole fleet; anyone else
sees only the shared nodes (the `DerFleet` folder, the types, the server object).

asyncua's permission ruleset decides per *service* (it can only refuse a whole request), and
its AccessLevel/UserAccessLevel attributes are the same for every user and are checked on
writes only. So the per-node check is done where the session serves Read, Browse,
TranslateBrowsePathsToNodeIds, CreateMonitoredItems and Call (`security.OperatorSession`),
with the functions below. A node outside the operator's area answers Bad_NodeIdUnknown, the
status asyncua gives for a node that does not exist: the operator's address space simply has
no such node, so neither a read nor a call tells it which DER ids other LDCs have (the same
choice as the platform API, whose GET /v1/resources/{id} answers 404 outside the caller's view).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from asyncua import ua
from asyncua.ua.status_codes import StatusCodes

from adapters.opcua.model.addressspace import AddressSpace
from adapters.opcua.model.users import OperatorAccount
from adapters.opcua.model.wire import status
from gateway.domain import Participant, Role
from gateway.ports import GatewayPort


class Topology(Protocol):
    """What the areas are computed from (the platform's topology, `GatewayPort.topology`)."""

    @property
    def participants(self) -> Mapping[str, Participant]: ...
    def area_ldcs(self, ldc_id: str) -> list[str]: ...


# Participants the platform lets see every DER (`authz.area_of` is None for them).
SEES_EVERYTHING = frozenset({Role.ADMIN, Role.ISO})
HIDDEN = StatusCodes.BadNodeIdUnknown
# asyncua answers Browse, TranslateBrowsePaths and Call on an absent node with
# Bad_NodeIdInvalid (the spec's code for a malformed id); we answer Bad_NodeIdUnknown, so that
# an absent node and a hidden one look the same.
_ABSENT = StatusCodes.BadNodeIdInvalid


@dataclass(frozen=True, slots=True)
class AreaView:
    """The LDC areas one operator sees (`everything`: the whole fleet)."""

    everything: bool = False
    ldcs: frozenset[str] = frozenset()

    def sees(self, owner: str | None) -> bool:
        """Nodes without an owner are shared (fleet folder, types, methods, server)."""
        return owner is None or self.everything or owner in self.ldcs


EVERYTHING = AreaView(everything=True)
NOTHING = AreaView()


def area_view(participant: Participant | None, topology: Topology) -> AreaView:
    """The platform's area of `participant` as a set of LDCs whose nodes it sees."""
    if participant is None:
        return NOTHING
    if participant.role is Role.LDC:
        ldc_id: str | None = participant.id
    elif participant.role is Role.SCADA:
        ldc_id = participant.ldc_id
    elif participant.role is Role.AGGREGATOR:  # its DERs are not a control room's business
        return NOTHING
    else:
        return EVERYTHING if participant.role in SEES_EVERYTHING else NOTHING
    ldc = topology.participants.get(ldc_id or "")
    if ldc is None or ldc.role is not Role.LDC:
        return NOTHING
    return AreaView(ldcs=frozenset(topology.area_ldcs(ldc.id)))


class AreaAccess:
    """The area of each participant that operators act for, shared by all their sessions.

    A request costs one dict lookup (`view`). The views are recomputed once per platform
    topology change (`refresh`, driven by the model's bus follower), not per request; a
    participant seen for the first time is computed from the platform's current topology."""

    def __init__(self, gateway: GatewayPort, space: AddressSpace) -> None:
        self._gateway = gateway
        self._space = space
        self._views: dict[str, AreaView] = {}  # participant id -> its area
        self._topology: Topology | None = None  # the one the views were computed from

    async def view(self, account: OperatorAccount | None) -> AreaView:
        if account is None:
            return NOTHING
        view = self._views.get(account.ldc_id)
        if view is None:
            topology = await self._gateway.topology()
            view = self._views[account.ldc_id] = area_view(
                topology.participants.get(account.ldc_id), topology)
        return view

    def cached_view(self, account: OperatorAccount | None) -> AreaView:
        """`view` without I/O, for notifications (a participant not yet seen is computed from
        the topology of the last refresh)."""
        if account is None:
            return NOTHING
        view = self._views.get(account.ldc_id)
        if view is None:
            if self._topology is None:
                return NOTHING
            view = self._views[account.ldc_id] = area_view(
                self._topology.participants.get(account.ldc_id), self._topology)
        return view

    def refresh(self, topology: Topology) -> bool:
        """Recompute every known participant's area; True if any of them changed."""
        self._topology = topology
        changed = False
        for participant_id, old in list(self._views.items()):
            new = area_view(topology.participants.get(participant_id), topology)
            if new != old:
                self._views[participant_id] = new
                changed = True
        return changed

    def visible(self, view: AreaView, node_id: ua.NodeId) -> bool:
        return view.everything or view.sees(self._space.owner(node_id))

    def owner(self, node_id: ua.NodeId) -> str | None:
        return self._space.owner(node_id)

    @property
    def generation(self) -> int:
        """Changes whenever an owner may have changed (a cached owner is stale then)."""
        return self._space.generation

    # -- the services, filtered -------------------------------------------------------------

    async def read(self, view: AreaView, params: ua.ReadParameters,
                   serve: Callable[[ua.ReadParameters], Awaitable[list[ua.DataValue]]]
                   ) -> list[ua.DataValue]:
        shown = [self.visible(view, r.NodeId) for r in params.NodesToRead]
        return await serve_allowed(
            shown, params.NodesToRead,
            lambda allowed: serve(dataclasses.replace(params, NodesToRead=allowed)),
            lambda: ua.DataValue(StatusCode=status(HIDDEN)))

    def browse(self, view: AreaView, params: ua.BrowseParameters,
               results: list[ua.BrowseResult]) -> list[ua.BrowseResult]:
        """Hidden starting nodes answer Bad_NodeIdUnknown; hidden targets are left out."""
        results = [_unknown_if_absent(r) for r in results]
        if view.everything:
            return results
        out = []
        for desc, result in zip(params.NodesToBrowse, results, strict=True):
            if not self.visible(view, desc.NodeId):
                out.append(ua.BrowseResult(StatusCode=status(HIDDEN)))
                continue
            refs = [r for r in result.References if self.visible(view, r.NodeId)]
            out.append(dataclasses.replace(result, References=refs)
                       if len(refs) != len(result.References) else result)
        return out

    def translate(self, view: AreaView, paths: list[ua.BrowsePath],
                  results: list[ua.BrowsePathResult]) -> list[ua.BrowsePathResult]:
        results = [_unknown_if_absent(r) for r in results]
        if view.everything:
            return results
        out = []
        for path, result in zip(paths, results, strict=True):
            if not self.visible(view, path.StartingNode):
                out.append(ua.BrowsePathResult(StatusCode=status(HIDDEN)))
                continue
            targets = [t for t in result.Targets if self.visible(view, t.TargetId)]
            if len(targets) == len(result.Targets):
                out.append(result)
            elif targets:
                out.append(dataclasses.replace(result, Targets=targets))
            else:
                out.append(ua.BrowsePathResult(
                    StatusCode=status(StatusCodes.BadNoMatch)))
        return out

    async def create_monitored_items(
        self, view: AreaView, params: ua.CreateMonitoredItemsParameters,
        serve: Callable[[ua.CreateMonitoredItemsParameters],
                        Awaitable[list[ua.MonitoredItemCreateResult]]],
    ) -> list[ua.MonitoredItemCreateResult]:
        """Hidden nodes are refused before anything samples them."""
        shown = [self.visible(view, i.ItemToMonitor.NodeId) for i in params.ItemsToCreate]
        return await serve_allowed(
            shown, params.ItemsToCreate,
            lambda allowed: serve(dataclasses.replace(params, ItemsToCreate=allowed)),
            lambda: ua.MonitoredItemCreateResult(StatusCode=status(HIDDEN)))

    async def call(self, view: AreaView, requests: list[ua.CallMethodRequest],
                   serve: Callable[[list[ua.CallMethodRequest]],
                                   Awaitable[list[ua.CallMethodResult]]],
                   ) -> list[ua.CallMethodResult]:
        """A method called on a hidden object: as if the object did not exist."""
        shown = [self.visible(view, r.ObjectId) for r in requests]
        results = await serve_allowed(
            shown, requests, serve,
            lambda: ua.CallMethodResult(StatusCode=status(HIDDEN)))
        return [_unknown_if_absent(r) for r in results]


def _unknown_if_absent[R: (ua.BrowseResult, ua.BrowsePathResult, ua.CallMethodResult)](
    result: R,
) -> R:
    if result.StatusCode.value == _ABSENT:
        return dataclasses.replace(result, StatusCode=status(HIDDEN))
    return result


async def serve_allowed[Item, Result](
    shown: list[bool], items: list[Item], serve: Callable[[list[Item]], Awaitable[list[Result]]],
    hidden: Callable[[], Result],
) -> list[Result]:
    """Serve the items allowed (one request), answer `hidden()` for the others, in order."""
    if all(shown):
        return await serve(items)
    allowed = [item for item, ok in zip(items, shown, strict=True) if ok]
    served = iter(await serve(allowed) if allowed else [])
    return [next(served) if ok else hidden() for ok in shown]
