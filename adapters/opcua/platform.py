"""Platform routes to provision OPC UA operators (mounted under /v1/adapters/opcua).

The core checks each route's `Access` first (the caller's role, then that every participant
the call names is in the caller's area). On top of that an operator acts *as* its
participant, so the rule here is narrower than the area: the admin manages every user
(and alone may create users acting for the admin participant, who see the whole fleet,
read-only); an LDC manages the users acting for itself or for its own SCADA participants -
not for an LDC embedded below it, which would let the host issue instructions in the embedded
LDC's name. Passwords are hashed on arrival and never returned.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from adapters.opcua.model.users import OperatorAccount, UserDirectory, account_from_doc
from adapters.opcua.state import OperatorRecords
from gateway.domain import Participant, Role
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound
from gateway.ports import Access, AdapterContext, Concern, PlatformRoute, actor

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_MANAGERS = frozenset({Role.ADMIN, Role.LDC})


class UserRoutes:
    def __init__(self, ctx: AdapterContext, users: UserDirectory,
                 records: OperatorRecords) -> None:
        self.ctx = ctx
        self.users = users
        self.records = records

    def routes(self) -> list[PlatformRoute]:
        return [
            # the list shows each caller only its own users (`_visible`): nothing area-bound
            PlatformRoute("GET", "/users", self.list_users, "OPC UA operators visible to the "
                          "caller", Access(_MANAGERS), openapi=_LIST),
            PlatformRoute("PUT", "/users/{name}", self.put_user, "Create or replace an OPC UA "
                          "operator (password stored hashed)",
                          Access(_MANAGERS, concerns=self._put_concerns), openapi=_PUT),
            PlatformRoute("DELETE", "/users/{name}", self.delete_user, "Remove an OPC UA "
                          "operator", Access(_MANAGERS, concerns=self._delete_concerns),
                          openapi=_DELETE),
        ]

    async def _body(self, request: web.Request) -> dict[str, Any]:
        """The JSON body (the access check reads it too: the body reader keeps it)."""
        body = await self.ctx.body.read_json(request)
        if not isinstance(body, dict) or "password_hash" in body:
            raise InvalidInput("expected {password, role, ldc_id}")
        return body

    async def _put_concerns(self, request: web.Request) -> Concern:
        """The participant the user will act for, and the one it acts for now."""
        body = await self._body(request)
        named = {str(body.get("ldc_id", ""))} - {""}
        existing = self.users.get(request.match_info["name"])
        if existing is not None:
            named.add(existing.ldc_id)
        return Concern(participants=frozenset(named))

    async def _delete_concerns(self, request: web.Request) -> Concern:
        existing = self.users.get(request.match_info["name"])
        return Concern(participants=frozenset({existing.ldc_id} if existing else set()))

    async def _may_manage(self, caller: Participant, ldc_id: str) -> None:
        if caller.role is Role.ADMIN:
            return
        target = await self.ctx.gateway.participant(ldc_id)
        owner = target.ldc_id if target is not None and target.role is Role.SCADA else ldc_id
        if caller.role is not Role.LDC or owner != caller.id:
            raise Forbidden("an LDC manages only the OPC UA users acting for itself")

    def _visible(self, caller: Participant, account: OperatorAccount) -> bool:
        return caller.role is Role.ADMIN or account.ldc_id == caller.id

    async def list_users(self, request: web.Request) -> web.Response:
        caller = actor(request)
        return web.json_response(
            [a.public() for a in self.users.all() if self._visible(caller, a)])

    async def put_user(self, request: web.Request) -> web.Response:
        caller = actor(request)
        name = request.match_info["name"]
        if not _NAME.match(name):
            raise InvalidInput("user names are 1-64 characters of A-Z a-z 0-9 _ . @ -")
        account = account_from_doc({**await self._body(request), "name": name})
        participant = await self.ctx.gateway.participant(account.ldc_id)
        acts_for = {Role.LDC, Role.SCADA} | ({Role.ADMIN} if caller.role is Role.ADMIN else set())
        if participant is None or participant.role not in acts_for:
            raise InvalidInput(f"ldc_id {account.ldc_id!r} is not an LDC or SCADA participant"
                               + (" (or the admin)" if caller.role is Role.ADMIN else ""))
        await self._may_manage(caller, account.ldc_id)
        if self.users.is_fixed(name):
            raise Conflict("this user is defined in the configuration file")
        existing = self.users.get(name)
        if existing is not None:
            await self._may_manage(caller, existing.ldc_id)
        await self.records.put(account)
        return web.json_response(account.public(), status=200 if existing else 201)

    async def delete_user(self, request: web.Request) -> web.Response:
        caller = actor(request)
        name = request.match_info["name"]
        account = self.users.get(name)
        if account is None:
            raise NotFound(f"no OPC UA user {name!r}")
        if self.users.is_fixed(name):
            raise Conflict("this user is defined in the configuration file")
        await self._may_manage(caller, account.ldc_id)
        await self.records.delete(name)
        return web.Response(status=204)


_USER = {"type": "object", "properties": {
    "name": {"type": "string"}, "role": {"enum": ["viewer", "controller"]},
    "ldc_id": {"type": "string"}}}
_LIST = {"responses": {"200": {"description": "list", "content": {"application/json": {
    "schema": {"type": "array", "items": _USER}}}}}}
_PUT = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["password", "role", "ldc_id"],
        "properties": {"password": {"type": "string", "minLength": 8},
                       "role": {"enum": ["viewer", "controller"]},
                       "ldc_id": {"type": "string"}}}}}},
    "responses": {"201": {"description": "created"}, "200": {"description": "replaced"}},
}
_DELETE = {"responses": {"204": {"description": "removed"}}}
