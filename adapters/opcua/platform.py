"""Platform routes to provision OPC UA operators (mounted under /v1/adapters/opcua).

The admin may manage every user, including users acting for the admin participant (who see
the whole fleet, read-only); an LDC manages the users that act for itself. Passwords are
hashed on arrival and never returned.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from adapters.opcua.model.users import OperatorAccount, UserDirectory, account_from_doc
from adapters.opcua.state import OperatorRecords
from gateway.adapters import AdapterContext
from gateway.api.keys import ACTOR
from gateway.domain import Participant, Role
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class UserRoutes:
    def __init__(self, ctx: AdapterContext, users: UserDirectory,
                 records: OperatorRecords) -> None:
        self.ctx = ctx
        self.users = users
        self.records = records

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.get("/users", self.list_users), web.put("/users/{name}", self.put_user),
                web.delete("/users/{name}", self.delete_user)]

    async def _may_manage(self, actor: Participant, ldc_id: str) -> None:
        if actor.role is Role.ADMIN:
            return
        target = await self.ctx.gateway.participant(ldc_id)
        owner = target.ldc_id if target is not None and target.role is Role.SCADA else ldc_id
        if actor.role is not Role.LDC or owner != actor.id:
            raise Forbidden("an LDC manages only the OPC UA users acting for itself")

    def _visible(self, actor: Participant, account: OperatorAccount) -> bool:
        return actor.role is Role.ADMIN or account.ldc_id == actor.id

    async def list_users(self, request: web.Request) -> web.Response:
        actor: Participant = request[ACTOR]
        return web.json_response(
            [a.public() for a in self.users.all() if self._visible(actor, a)])

    async def put_user(self, request: web.Request) -> web.Response:
        actor: Participant = request[ACTOR]
        name = request.match_info["name"]
        if not _NAME.match(name):
            raise InvalidInput("user names are 1-64 characters of A-Z a-z 0-9 _ . @ -")
        try:
            body: Any = await request.json()
        except ValueError as exc:
            raise InvalidInput("the body must be JSON") from exc
        if not isinstance(body, dict) or "password_hash" in body:
            raise InvalidInput("expected {password, role, ldc_id}")
        account = account_from_doc({**body, "name": name})
        participant = await self.ctx.gateway.participant(account.ldc_id)
        acts_for = {Role.LDC, Role.SCADA} | ({Role.ADMIN} if actor.role is Role.ADMIN else set())
        if participant is None or participant.role not in acts_for:
            raise InvalidInput(f"ldc_id {account.ldc_id!r} is not an LDC or SCADA participant"
                               + (" (or the admin)" if actor.role is Role.ADMIN else ""))
        await self._may_manage(actor, account.ldc_id)
        if self.users.is_fixed(name):
            raise Conflict("this user is defined in the configuration file")
        existing = self.users.get(name)
        if existing is not None:
            await self._may_manage(actor, existing.ldc_id)
        await self.records.put(account)
        return web.json_response(account.public(), status=200 if existing else 201)

    async def delete_user(self, request: web.Request) -> web.Response:
        actor: Participant = request[ACTOR]
        name = request.match_info["name"]
        account = self.users.get(name)
        if account is None:
            raise NotFound(f"no OPC UA user {name!r}")
        if self.users.is_fixed(name):
            raise Conflict("this user is defined in the configuration file")
        await self._may_manage(actor, account.ldc_id)
        await self.records.delete(name)
        return web.Response(status=204)


def openapi() -> dict[str, Any]:
    user = {"type": "object", "properties": {
        "name": {"type": "string"}, "role": {"enum": ["viewer", "controller"]},
        "ldc_id": {"type": "string"}}}
    return {
        "/users": {"get": {"summary": "OPC UA operators visible to the caller",
                           "responses": {"200": {"description": "list", "content": {
                               "application/json": {"schema": {"type": "array",
                                                               "items": user}}}}}}},
        "/users/{name}": {
            "put": {"summary": "Create or replace an OPC UA operator (password stored hashed)",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"type": "object", "required": ["password", "role", "ldc_id"],
                                   "properties": {"password": {"type": "string",
                                                               "minLength": 8},
                                                  "role": {"enum": ["viewer", "controller"]},
                                                  "ldc_id": {"type": "string"}}}}}},
                    "responses": {"201": {"description": "created"},
                                  "200": {"description": "replaced"}}},
            "delete": {"summary": "Remove an OPC UA operator",
                       "responses": {"204": {"description": "removed"}}},
        },
    }
