"""Sign-in (bearer token or client certificate), sign-out, and the guard on every page.

Every request re-checks what the session rests on: the participant still exists, a token is
still valid (not revoked, not expired), a certificate is still the participant's. Every
state-changing form carries the session's CSRF token; the sign-in form itself carries a
double-submit token against login CSRF. POSTs from another origin are refused.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import jinja2
from aiohttp import web

from gateway.api.keys import ACTOR, SERVICES
from gateway.domain import Participant
from gateway.errors import GatewayError, Unauthenticated
from gateway.ui import sessions as s
from gateway.ui.render import page
from pki.identity import sha256_hex
from pki.tls import peer_certificate_der

log = logging.getLogger(__name__)
STORE: web.AppKey[s.SessionStore] = web.AppKey("ui_sessions")
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("ui_templates")
SESSION: web.RequestKey[s.Session] = web.RequestKey("ui_session")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def render(request: web.Request, template: str, status: int = 200,
           **context: Any) -> web.Response:
    session = request.get(SESSION)
    return page(request.app[TEMPLATES], template, status, me=request.get(ACTOR),
                csrf=session.csrf if session else "", **context)


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


async def _peer_participant(request: web.Request) -> tuple[Participant | None, str | None]:
    der = peer_certificate_der(request.transport)
    if der is None:
        return None, None
    fingerprint = sha256_hex(der)
    return await request.app[SERVICES].participant_by_cert(fingerprint), fingerprint


async def _still_valid(request: web.Request, session: s.Session) -> Participant | None:
    services = request.app[SERVICES]
    participant = await services.participant(session.participant_id)
    if participant is None:
        return None
    if session.token is not None:
        try:
            current = await services.authenticate_token(session.token)
        except Unauthenticated:
            return None
        return participant if current.id == participant.id else None
    if session.cert_sha256 is not None and participant.cert_sha256 != session.cert_sha256:
        return None
    return participant


def signed_in(handler: Handler) -> Handler:
    """Run `handler` for a signed-in participant (request[ACTOR]); others go to sign-in."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        store = request.app[STORE]
        session_id = request.cookies.get(s.COOKIE)
        session = store.get(session_id)
        actor = await _still_valid(request, session) if session else None
        if session is None or actor is None:
            store.close(session_id)
            if request.method == "GET":
                return see_other("/ui/signin")
            return render(request, "error.html", 401, title="Signed out",
                          detail="your session ended; sign in again")
        if request.method != "GET":
            form = await request.post()
            supplied = str(form.get("csrf", "")) or request.headers.get("X-CSRF-Token", "")
            if not _same_origin(request) or not s.same_token(supplied, session.csrf):
                return render(request, "error.html", 403, title="Refused",
                              detail="the form is stale or came from another site; reload "
                                     "the page and try again")
        request[SESSION], request[ACTOR] = session, actor
        try:
            return await handler(request)
        except GatewayError as exc:
            return render(request, "error.html", exc.status, title=exc.title,
                          detail=exc.detail)

    return guarded


async def signin_form(request: web.Request, *, status: int = 200,
                      error: str = "") -> web.Response:
    participant, _ = await _peer_participant(request)
    form_token = secrets.token_urlsafe(24)
    response = render(request, "signin.html", status, form_token=form_token, error=error,
                      cert_participant=participant)
    s.set_cookie(response, s.SIGNIN_COOKIE, form_token, max_age=600)
    return response


async def signin(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not _same_origin(request) or not s.same_token(str(form.get("csrf", "")),
                                                     request.cookies.get(s.SIGNIN_COOKIE)):
        return await signin_form(request, status=403,
                                 error="the sign-in form expired; please try again")
    services = request.app[SERVICES]
    method = str(form.get("method", "token"))
    token = cert = None
    try:
        if method == "certificate":
            participant, cert = await _peer_participant(request)
            if participant is None:
                raise Unauthenticated("your browser presented no certificate registered to "
                                      "a participant")
        else:
            token = str(form.get("token", "")).strip()
            if not token:
                raise Unauthenticated("enter your bearer token")
            participant = await services.authenticate_token(token)
    except Unauthenticated as exc:
        log.info("status page sign-in refused (%s)", method)
        return await signin_form(request, status=401, error=f"sign-in refused: {exc.detail}")
    session_id, _ = request.app[STORE].open(participant.id, token=token, cert_sha256=cert)
    log.info("status page: %s signed in (%s)", participant.id, method)
    response = see_other("/ui/")
    s.set_cookie(response, s.COOKIE, session_id, max_age=s.ABSOLUTE_S)
    s.clear_cookie(response, s.SIGNIN_COOKIE)
    return response


@signed_in
async def signout(request: web.Request) -> web.StreamResponse:
    request.app[STORE].close(request.cookies.get(s.COOKIE))
    response = see_other("/ui/signin")
    s.clear_cookie(response, s.COOKIE)
    return response


async def signin_page(request: web.Request) -> web.StreamResponse:
    return await signin_form(request)
