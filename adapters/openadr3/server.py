"""The VTN's HTTP edge: routes for 3.1.0 and 3.0.1, bearer authentication, problem JSON.

Every error, including aiohttp's own (unknown path 404, wrong method 405 with Allow, body
too large 413, malformed or oversize request line 400), is answered with a problem object.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from adapters.openadr3.codec.common import ClientCredentialRequest
from adapters.openadr3.vtn.auth import AuthError, Credentials, Principal
from adapters.openadr3.vtn.notifiers import MqttNotifierRoutes
from adapters.openadr3.vtn.problems import (
    OadrProblem,
    bad_request,
    from_exception,
    not_found,
    problem_body,
    unauthorized,
)
from adapters.openadr3.vtn.query import parse_query
from adapters.openadr3.vtn.service import VtnService
from adapters.openadr3.vtn.throttle import TokenThrottle
from gateway.errors import GatewayError
from gateway.ports import BodyReader, parse_json

PRINCIPAL = "openadr3.principal"
VERSION = "openadr3.version"
PUBLIC = frozenset({"/auth/token", "/auth/server"})
FORM = "application/x-www-form-urlencoded"
_OBJECT_ID = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
PLURALS = {
    "programs": "program",
    "events": "event",
    "reports": "report",
    "subscriptions": "subscription",
    "vens": "ven",
    "resources": "resource",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data).encode(),
        content_type="application/json",
        headers=headers,
    )


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not _OBJECT_ID.match(value):
        raise bad_request(f"{name} must be an objectID")
    return value


class VtnServer:
    """Builds the aiohttp application; one instance per adapter."""

    def __init__(
        self,
        service: VtnService,
        credentials: Credentials,
        public_url: str,
        max_body_bytes: int,
        throttle: TokenThrottle,
        body: BodyReader,
        mqtt: MqttNotifierRoutes | None = None,
        middlewares: tuple[Any, ...] = (),
    ) -> None:
        self.body = body
        # Told which events a VEN read (the DERs' delivery state): set by the adapter.
        self.fetched: Callable[[str, list[dict[str, Any]]], Awaitable[None]] | None = None
        self.middlewares = middlewares  # outermost first (the core's request metrics)
        self.service = service
        self.credentials = credentials
        self.throttle = throttle
        self.mqtt = mqtt
        self.public_url = public_url.rstrip("/")
        self.max_body_bytes = max_body_bytes

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[*self.middlewares, self._problems, self._authenticate],
            client_max_size=self.max_body_bytes,
        )
        for version in ("3.1.0", "3.0.1"):
            app.router.add_routes(self.routes(version))
        return app

    async def _body(self, request: web.Request) -> Any:
        """The JSON body, by the core's one reader (size, depth, duplicate keys, NaN):
        its refusals are GatewayErrors, answered as problems (400, 413)."""
        raw = await self.body.read_bytes(request)
        if not raw.strip():
            raise bad_request("a JSON body is required")
        return parse_json(raw, max_depth=self.body.max_depth)

    # -- middlewares -----------------------------------------------------------------------

    @web.middleware
    async def _problems(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:  # everything leaves as a problem object
            return from_exception(exc)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        version = request.match_info.get("version") or _version_of(request.path)
        tail = request.path.split(f"/openadr3/{version}", 1)[-1] if version else request.path
        if request.match_info.http_exception is not None or tail in PUBLIC:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        principal = (await self.credentials.authenticate(token.strip())
                     if scheme.lower() == "bearer" and token.strip() else None)
        if principal is None:
            raise unauthorized()
        request[PRINCIPAL] = principal
        return await handler(request)

    # -- routes ----------------------------------------------------------------------------

    def routes(self, version: str) -> list[web.RouteDef]:
        base = f"/openadr3/{version}"
        out: list[web.RouteDef] = []
        kinds = (
            PLURALS
            if version == "3.1.0"
            else {k: v for k, v in PLURALS.items() if k != "resources"}
        )
        for plural, kind in kinds.items():
            out += [
                web.get(f"{base}/{plural}", self._search(version, kind)),
                web.post(f"{base}/{plural}", self._create(version, kind)),
                web.get(f"{base}/{plural}/{{id}}", self._get(version, kind)),
                web.put(f"{base}/{plural}/{{id}}", self._update(version, kind)),
                web.delete(f"{base}/{plural}/{{id}}", self._delete(version, kind)),
            ]
        out.append(web.post(f"{base}/auth/token", self._token(version)))
        if version == "3.1.0":
            out += [
                web.get(f"{base}/auth/server", self._auth_server(version)),
                web.get(f"{base}/notifiers", self._notifiers),
                web.get(f"{base}/notifiers/mqtt/topics/{{tail:.*}}", self._mqtt_topics),
            ]
        else:
            out += self._resources_301(base)
        return out

    def _resources_301(self, base: str) -> list[web.RouteDef]:
        """3.0.1 nests resources under their ven: /vens/{venID}/resources[/{id}]."""
        v = "3.0.1"
        return [
            web.get(f"{base}/vens/{{venID}}/resources", self._search(v, "resource", nested=True)),
            web.post(f"{base}/vens/{{venID}}/resources", self._create(v, "resource", nested=True)),
            web.get(
                f"{base}/vens/{{venID}}/resources/{{id}}", self._get(v, "resource", nested=True)
            ),
            web.put(
                f"{base}/vens/{{venID}}/resources/{{id}}", self._update(v, "resource", nested=True)
            ),
            web.delete(
                f"{base}/vens/{{venID}}/resources/{{id}}", self._delete(v, "resource", nested=True)
            ),
        ]

    async def _scope(self, request: web.Request, version: str, nested: bool) -> str | None:
        """For nested 3.0.1 resources: the venID, which must be a ven the caller can see."""
        if not nested:
            return None
        ven_id = _path_id(request, "venID")
        await self.service.store.fetch(version, "ven", ven_id)
        self.service.get(version, "ven", request[PRINCIPAL], ven_id)
        return ven_id

    def _search(self, version: str, kind: str, nested: bool = False) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            principal = _reader(request)
            scope_id = await self._scope(request, version, nested)
            query = parse_query(version, kind, request.query)
            found = self.service.search(version, kind, principal, query, scope_id=scope_id)
            if kind == "event" and not principal.is_bl and found and self.fetched:
                await self.fetched(version, found)
            return _json(found)

        return handler

    def _create(self, version: str, kind: str, nested: bool = False) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            scope_id = await self._scope(request, version, nested)
            raw = await self._body(request)
            made = await self.service.create(
                version, kind, request[PRINCIPAL], raw, scope_id=scope_id
            )
            return _json(made, 201)

        return handler

    def _get(self, version: str, kind: str, nested: bool = False) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            principal = _reader(request)
            scope_id = await self._scope(request, version, nested)
            object_id = _path_id(request, "id")
            await self.service.store.fetch(version, kind, object_id)  # (made elsewhere?)
            return _json(self.service.get(version, kind, principal, object_id, scope_id=scope_id))

        return handler

    def _update(self, version: str, kind: str, nested: bool = False) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            scope_id = await self._scope(request, version, nested)
            object_id = _path_id(request, "id")
            raw = await self._body(request)
            updated = await self.service.update(
                version, kind, request[PRINCIPAL], object_id, raw, scope_id=scope_id
            )
            return _json(updated)

        return handler

    def _delete(self, version: str, kind: str, nested: bool = False) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            scope_id = await self._scope(request, version, nested)
            object_id = _path_id(request, "id")
            gone = await self.service.delete(
                version, kind, request[PRINCIPAL], object_id, scope_id=scope_id
            )
            return _json(gone)

        return handler

    async def _notifiers(self, request: web.Request) -> web.Response:
        principal = _reader(request)
        body: dict[str, Any] = {"WEBHOOK": True}
        if self.mqtt is not None:
            binding = await self.mqtt.binding(principal, _bearer(request))
            if binding is not None:
                body["MQTT"] = binding
        return _json(body)

    async def _mqtt_topics(self, request: web.Request) -> web.Response:
        principal = _reader(request)
        if self.mqtt is None:
            raise not_found("this VTN offers no MQTT notifier (GET /notifiers)")
        return _json({"topics": self.mqtt.topics(principal, request.match_info["tail"])})

    def _auth_server(self, version: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return _json({"tokenURL": f"{self.public_url}/openadr3/{version}/auth/token"})

        return handler

    def _token(self, version: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            fields = await _token_fields(request)
            try:
                form = ClientCredentialRequest.model_validate(fields)
            except ValueError:
                grant = fields.get("grant_type")
                error = (
                    "unsupported_grant_type"
                    if isinstance(grant, str) and grant and grant != "client_credentials"
                    else "invalid_request"
                )
                raise _oauth_error(
                    400,
                    error,
                    "grant_type=client_credentials, client_id and client_secret are required",
                ) from None
            address = request.remote or ""
            wait = self.throttle.admit(form.client_id, address)
            if wait is not None:
                raise OadrProblem(
                    429,
                    f"too many token requests or failed attempts; retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                    error="slow_down",
                    error_description="retry later",
                )
            try:
                issued = await self.credentials.issue(
                    form.client_id, form.client_secret, form.scope, version
                )
            except AuthError as exc:
                if exc.error == "invalid_client":
                    self.throttle.failed(form.client_id, address)
                status = 401 if exc.error == "invalid_client" else 400
                raise _oauth_error(status, exc.error, exc.description) from None
            self.throttle.succeeded(form.client_id, address)
            body = {
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "scope": issued.scope,
            }
            return _json(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

        return handler


def _bearer(request: web.Request) -> str:
    return request.headers.get("Authorization", "").partition(" ")[2].strip()


def _reader(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL]
    if not principal.may("read"):
        raise OadrProblem(403, "a read scope is required")
    return principal


def _oauth_error(status: int, error: str, description: str) -> OadrProblem:
    """A problem object that is also an RFC 6749 error response (both shapes in one)."""
    headers = {"WWW-Authenticate": 'Basic realm="openadr3"'} if status == 401 else None
    return OadrProblem(
        status, description, headers=headers, error=error, error_description=description
    )


async def _token_fields(request: web.Request) -> dict[str, Any]:
    """Form fields (or a JSON object), with client credentials from HTTP Basic if present."""
    fields: dict[str, Any] = {}
    raw = await request.read()
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise _oauth_error(400, "invalid_request", "the body is not UTF-8") from None
    if request.content_type == "application/json":
        try:
            data = parse_json(text) if text.strip() else {}
        except GatewayError:
            data = None
        if not isinstance(data, dict):
            raise _oauth_error(400, "invalid_request", "the body must be a form or JSON object")
        fields.update(data)
    elif request.content_type in (FORM, "application/octet-stream") or not raw:
        pairs = parse_qsl(text, keep_blank_values=True)
        names = [k for k, _ in pairs]
        if len(names) != len(set(names)):
            raise _oauth_error(400, "invalid_request", "a form field is repeated")
        fields.update(pairs)
    else:
        raise _oauth_error(400, "invalid_request", f"{FORM} is expected")
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = (
                base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            raise _oauth_error(401, "invalid_client", "malformed HTTP Basic credentials") from None
        basic = {"client_id": unquote(user), "client_secret": unquote(password)}
        for key, value in basic.items():
            if fields.get(key) not in (None, value):
                raise _oauth_error(400, "invalid_request", "credentials given twice, differently")
            fields[key] = value
    return fields


def _version_of(path: str) -> str | None:
    match = re.match(r"^/openadr3/(3\.1\.0|3\.0\.1)(/|$)", path)
    return match.group(1) if match else None


# --- aiohttp's own low-level errors (bad request line, oversize headers) ------------------


class ProblemRequestHandler(RequestHandler):
    """Answers HTTP parse errors with a problem object instead of text/plain."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        detail = "malformed request" if status < 500 else "internal error"
        if status == 400 and message:
            detail = message.splitlines()[0][:200]
        resp = web.Response(
            status=status,
            body=json.dumps(problem_body(status, detail)).encode(),
            content_type="application/json",
        )
        resp.force_close()
        return resp


class ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    """An AppRunner whose connections use ProblemRequestHandler (aiohttp offers no hook)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return ProblemServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            **self._kwargs,
        )
