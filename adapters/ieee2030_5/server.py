"""The 2030.5 I/O edge: aiohttp routes over mutual TLS, certificate -> scope, <Error> bodies.

Every handler is small: parse (hardened, validated), call the function set with the
client's scope, serialise the answer. Domain and document errors become a 2030.5 <Error>
once, in the middleware.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestPayloadError

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import MEDIA_TYPE, DocumentError, parse, serialize
from adapters.ieee2030_5.feedback import Feedback
from adapters.ieee2030_5.function_sets import documents as views
from adapters.ieee2030_5.function_sets import programs
from adapters.ieee2030_5.function_sets.end_devices import EndDeviceRegistry
from adapters.ieee2030_5.function_sets.pubsub import Notifier
from adapters.ieee2030_5.function_sets.reach import ReachTracker
from adapters.ieee2030_5.function_sets.scope import ClientScope, identity_of
from adapters.ieee2030_5.function_sets.tree import ResourceTree
from adapters.ieee2030_5.render import Renderer
from adapters.ieee2030_5.settings import Settings
from adapters.ieee2030_5.state import AdapterState, EndDeviceRecord
from gateway.errors import GatewayError, NotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Parts:
    """What the routes call (built by adapter.py): one adapter's function sets."""

    settings: Settings
    state: AdapterState
    registry: EndDeviceRegistry
    tree: ResourceTree
    renderer: Renderer
    notifier: Notifier
    feedback: Feedback
    reach: ReachTracker


SERVICE = web.AppKey("ieee2030_5_parts", Parts)
MAX_BODY = web.AppKey("ieee2030_5_max_body", int)
SCOPE = web.RequestKey("ieee2030_5_scope", ClientScope)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REASON_FORMAT, REASON_VALUES = 0, 1


def error_response(status: int, reason: int = REASON_VALUES) -> web.Response:
    return web.Response(status=status, body=serialize(m.Error(reasonCode=reason)),
                        content_type=MEDIA_TYPE)


def xml(model: Any, status: int = 200, location: str | None = None) -> web.Response:
    headers = {"Location": location} if location else None
    return web.Response(status=status, body=serialize(model), content_type=MEDIA_TYPE,
                        headers=headers)


def created(location: str) -> web.Response:
    return web.Response(status=201, headers={"Location": location})


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Identify the client from its certificate; map every refusal to an <Error>."""
    parts = request.app[SERVICE]
    try:
        identity = identity_of(request.transport)
        if identity is None:
            return error_response(403)
        request[SCOPE] = await parts.registry.scope(identity)
        edev = request.match_info.get("e", "")
        if edev.isdigit() and parts.registry.by_id(int(edev)) is None:
            await parts.registry.recall(int(edev))  # (made by another process a moment ago?)
        return await handler(request)
    except DocumentError as exc:
        log.info("refused document: %s", exc.detail)
        return error_response(exc.status, REASON_FORMAT)
    except GatewayError as exc:
        return error_response(exc.status, getattr(exc, "reason_code", REASON_VALUES))
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(exc.status, REASON_FORMAT)
        raise
    except Exception:  # a fault of ours: logged, and still answered in 2030.5's own form
        log.exception("2030.5 %s %s failed", request.method, request.path)
        return error_response(500, REASON_VALUES)


# --- helpers ------------------------------------------------------------------------------


def scope_of(request: web.Request) -> ClientScope:
    return request[SCOPE]


def service_of(request: web.Request) -> Parts:
    return request.app[SERVICE]


def _int(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except (KeyError, ValueError):
        raise NotFound("no such resource") from None


def _item_time(item: Any) -> int | None:
    for name in ("createdDateTime", "creationTime", "changedTime", "dateTimeRegistered"):
        value = getattr(item, name, None)
        if value is not None:
            return int(value)
    return None


def page(request: web.Request, items: list[Any],
         time_of: Callable[[Any], int | None] | None = None) -> tuple[list[Any], int]:
    """Apply 2030.5 paging: `a` (after: items at or after that time, for time-stamped
    items), then `s` (start index) and `l` (limit); `all` counts the whole list.
    `time_of` reads an item's time where the items are records, not documents, so a
    long list is cut before its documents are built."""
    try:
        start = int(request.query.get("s", "0"))
        limit = int(request.query.get("l", "255"))
        after = int(request.query["a"]) if "a" in request.query else None
    except ValueError:
        raise DocumentError("s, a and l must be integers") from None
    if start < 0 or limit < 0:
        raise DocumentError("s and l must not be negative")
    total = len(items)
    if after is not None:
        when = time_of or _item_time
        items = [i for i in items if (t := when(i)) is None or t >= after]
    return items[start:start + limit], total


async def body(request: web.Request, *roots: str) -> Any:
    try:
        data = await request.content.read(request.app[MAX_BODY] + 1)
    except (RequestPayloadError, HttpProcessingError) as exc:
        # e.g. Content-Encoding: gzip over bytes that are not gzip
        raise DocumentError(f"the body could not be decoded: {exc.__class__.__name__}") from None
    return parse(data, roots or None, request.app[MAX_BODY]).model


def record(request: web.Request) -> EndDeviceRecord:
    return service_of(request).registry.get(scope_of(request), _int(request, "e"))


def der_record(request: web.Request) -> EndDeviceRecord:
    rec = record(request)
    if rec.resource_id is None and not rec.inband:
        raise NotFound("this EndDevice has no DERs")
    return rec


# --- discovery, time, end devices ---------------------------------------------------------


async def get_dcap(request: web.Request) -> web.Response:
    parts, scope = service_of(request), scope_of(request)
    return xml(parts.tree.device_capability(scope, await parts.feedback.mup_count(scope)))


async def get_time(request: web.Request) -> web.Response:
    return xml(views.time_doc(service_of(request).tree.rates))


async def get_edev_list(request: web.Request) -> web.Response:
    svc, scope = service_of(request), scope_of(request)
    rows, total = page(request, svc.registry.visible(scope), lambda r: r.changed_time)
    return xml(svc.tree.end_device_list(scope, rows, total))


async def post_edev(request: web.Request) -> web.Response:
    doc = await body(request, "EndDevice")
    parts, scope = service_of(request), scope_of(request)
    rec = await parts.registry.register_inband(scope, doc)
    await parts.renderer.announce_end_devices(scope)
    return created(views.Hrefs(rec.id).root)


async def get_edev(request: web.Request) -> web.Response:
    return xml(service_of(request).tree.end_device_doc(scope_of(request), record(request)))


async def get_rg(request: web.Request) -> web.Response:
    return xml(views.registration(record(request), service_of(request).tree.rates))


async def get_cp(request: web.Request) -> web.Response:
    rec = der_record(request)
    if not rec.connection_point_id:
        raise NotFound("no connection point recorded")
    return xml(m.ConnectionPoint(href=views.Hrefs(rec.id).path("cp"),
                                 connectionPointId=rec.connection_point_id[:32]))


async def put_cp(request: web.Request) -> web.Response:
    """PUT (or POST) the CSIP-AUS ConnectionPoint: an NMI, or a platform connection point."""
    rec = der_record(request)
    doc = await body(request, "ConnectionPoint")
    await service_of(request).registry.set_connection_point(rec, doc.connectionPointId)
    return created(views.Hrefs(rec.id).path("cp"))


# --- function set assignments, programs, controls -----------------------------------------


async def get_fsa_list(request: web.Request) -> web.Response:
    lst = service_of(request).tree.fsa_list(der_record(request))
    items, total = page(request, lst.FunctionSetAssignments)
    return xml(replace(lst, all=total, results=len(items), FunctionSetAssignments=items))


async def get_fsa(request: web.Request) -> web.Response:
    return xml(service_of(request).tree.fsa(der_record(request), _int(request, "f")))


async def get_derp_list(request: web.Request) -> web.Response:
    """The DER's programs (/edev/{e}/derp) or one FSA's (/edev/{e}/fsa/{f}/derp)."""
    svc, rec = service_of(request), der_record(request)
    fsa = _int(request, "f") if "f" in request.match_info else None
    if fsa is not None:
        svc.tree.fsa(rec, fsa)  # 404 for an FSA the DER does not have
    lst = await svc.tree.program_list(rec, fsa)
    items, total = page(request, lst.DERProgram)
    return xml(replace(lst, all=total, results=len(items), DERProgram=items))


def _program_of(request: web.Request) -> tuple[EndDeviceRecord, programs.ProgramSpec]:
    rec = der_record(request)
    return rec, service_of(request).tree.program_spec(rec, _int(request, "p"))


async def get_derp(request: web.Request) -> web.Response:
    return xml(await service_of(request).tree.program(*_program_of(request)))


def served(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=MEDIA_TYPE)


async def control_document(request: web.Request, kind: str) -> web.Response:
    """A program's DERControlList, ActiveDERControlList or DefaultDERControl, as rendered;
    its DER's control has now been fetched (the core's delivery state)."""
    parts = service_of(request)
    rec, spec = _program_of(request)
    body = await parts.renderer.rendered(rec, spec, kind)
    parts.reach.fetched(rec)
    return served(body)


async def get_derc_list(request: web.Request) -> web.Response:
    rec, spec = _program_of(request)
    if not request.query_string:  # the whole list, as rendered
        return await control_document(request, "derc")
    items, total = page(request, await service_of(request).tree.controls(rec, spec))
    return xml(m.DERControlList(href=views.Hrefs(rec.id).program(spec.index, "derc"),
                                all=total, results=len(items), subscribable=1,
                                DERControl=items))


async def get_actderc(request: web.Request) -> web.Response:
    rec, spec = _program_of(request)
    if not request.query_string:
        return await control_document(request, "actderc")
    active = await service_of(request).tree.controls(rec, spec, active_only=True)
    items, total = page(request, active)
    return xml(m.DERControlList(href=views.Hrefs(rec.id).program(spec.index, "actderc"),
                                all=total, results=len(items), DERControl=items))


async def get_derc(request: web.Request) -> web.Response:
    rec, spec = _program_of(request)
    mrid = request.match_info["mrid"].upper()
    for control in await service_of(request).tree.controls(rec, spec):
        if control.mRID == mrid:
            return xml(control)
    raise NotFound("no such DERControl")


async def get_dderc(request: web.Request) -> web.Response:
    _rec, spec = _program_of(request)
    if "default" not in spec.carries:
        raise NotFound("this DERProgram carries no DefaultDERControl")
    return await control_document(request, "dderc")


async def get_curve_list(request: web.Request) -> web.Response:
    rec, spec = _program_of(request)
    items, total = page(request, await service_of(request).tree.curves(rec, spec))
    return xml(m.DERCurveList(href=views.Hrefs(rec.id).program(spec.index, "dc"), all=total,
                              results=len(items), DERCurve=items))


async def get_curve(request: web.Request) -> web.Response:
    curves = await service_of(request).tree.curves(*_program_of(request))
    n = _int(request, "n")
    if not 1 <= n <= len(curves):
        raise NotFound("no such DERCurve")
    return xml(curves[n - 1])


# --- DER and its documents ----------------------------------------------------------------


async def get_der_list(request: web.Request) -> web.Response:
    svc, rec = service_of(request), der_record(request)
    items, total = page(request, [views.der(rec, svc.tree.layout_of(rec))])
    return xml(m.DERList(href=views.Hrefs(rec.id).path("der"), all=total, results=len(items),
                         pollRate=svc.tree.poll_rate("DERList"), DER=items))


def _der_which(request: web.Request) -> tuple[Any, str]:
    rec = der_record(request)
    which = request.match_info["which"]
    if _int(request, "d") != 1 or which not in views.DER_DOCS:
        raise NotFound("no such DER resource")
    return rec, which


async def get_der(request: web.Request) -> web.Response:
    svc, rec = service_of(request), der_record(request)
    if _int(request, "d") != 1:
        raise NotFound("no such DER")
    return xml(views.der(rec, svc.tree.layout_of(rec)))


async def get_der_doc(request: web.Request) -> web.Response:
    rec, which = _der_which(request)
    data = await service_of(request).feedback.der_document(rec, which)
    return web.Response(body=data, content_type=MEDIA_TYPE)


async def put_der_doc(request: web.Request) -> web.Response:
    rec, which = _der_which(request)
    doc = await body(request, views.DER_DOCS[which])
    await service_of(request).feedback.put_der_document(rec, which, doc)
    return web.Response(status=204)


# --- subscriptions and log events ---------------------------------------------------------


async def get_sub_list(request: web.Request) -> web.Response:
    svc, rec = service_of(request), record(request)
    subs = svc.notifier.subscriptions(rec.id)
    docs = [_subscription(s) for s in subs]
    items, total = page(request, docs)
    return xml(m.SubscriptionList(href=views.Hrefs(rec.id).path("sub"), all=total,
                                  results=len(items),
                                  pollRate=svc.tree.poll_rate("SubscriptionList"),
                                  Subscription=items))


def _subscription(s: Any) -> m.Subscription:
    return m.Subscription(href=f"/edev/{s.edev_id}/sub/{s.id}", subscribedResource=s.resource,
                          encoding=s.encoding, level=s.level, limit=s.limit,
                          notificationURI=s.notification_uri)


# Subscribable lists under /edev/{e}/: FSAs, programs (all, or one FSA's), each program's
# DERControlList and DefaultDERControl.
SUBSCRIBABLE_TAIL = re.compile(r"fsa|derp|fsa/(\d+)/derp|derp/(\d+)/(derc|dderc)")


def _may_subscribe(svc: Parts, scope: ClientScope) -> Callable[[str], bool]:
    """Whether an href is a subscribable list of an EndDevice this client may see."""

    def allowed(href: str) -> bool:
        if href == "/edev":
            return True
        parts = href.strip("/").split("/", 2)
        if len(parts) < 3 or parts[0] != "edev" or not parts[1].isdigit():
            return False
        try:
            record = svc.registry.get(scope, int(parts[1]))
        except NotFound:
            return False
        found = SUBSCRIBABLE_TAIL.fullmatch(parts[2])
        if found is None:
            return False
        layout = svc.tree.layout_of(record)
        fsa, program, what = found.groups()
        if fsa is not None:
            return int(fsa) in programs.fsa_numbers(layout)
        if program is not None:
            spec = programs.by_index(layout, int(program))
            return spec is not None and (what == "derc" or "default" in spec.carries)
        return True

    return allowed


SUBSCRIBED_EDEV = re.compile(r"^/edev/(\d+)/")


async def post_sub(request: web.Request) -> web.Response:
    svc, rec = service_of(request), record(request)
    doc = await body(request, "Subscription")
    scope = scope_of(request)
    subscribed = SUBSCRIBED_EDEV.match(doc.subscribedResource or "")
    if subscribed is not None:  # (an EndDevice another process made a moment ago?)
        await svc.registry.recall(int(subscribed.group(1)))
    visible = svc.registry.visible_set(scope)
    held = svc.notifier.count(visible.ids)
    ders = visible.ders
    cap = svc.settings.max_subscriptions + svc.settings.max_subscriptions_per_der * ders
    if held >= cap:  # before refusing: this process may not have every EndDevice made yet
        ders = max(ders, await svc.registry.platform_der_count(scope))
        cap = svc.settings.max_subscriptions + svc.settings.max_subscriptions_per_der * ders
    sub = await svc.notifier.subscribe(rec.id, doc, _may_subscribe(svc, scope),
                                       held=held, cap=cap)
    return created(f"/edev/{rec.id}/sub/{sub.id}")


async def get_sub(request: web.Request) -> web.Response:
    svc, rec = service_of(request), record(request)
    sub_id = _int(request, "s")
    for s in svc.notifier.subscriptions(rec.id):
        if s.id == sub_id:
            return xml(_subscription(s))
    raise NotFound("no such Subscription")


async def delete_sub(request: web.Request) -> web.Response:
    svc, rec = service_of(request), record(request)
    if not await svc.notifier.unsubscribe(rec.id, _int(request, "s")):
        raise NotFound("no such Subscription")
    return web.Response(status=204)


async def get_log_list(request: web.Request) -> web.Response:
    svc, rec = service_of(request), record(request)
    events = [parse_stored(x) for _, x in await svc.state.log_events(rec.id)]
    items, total = page(request, events)
    return xml(m.LogEventList(href=views.Hrefs(rec.id).path("lel"), all=total, results=len(items),
                              pollRate=svc.tree.poll_rate("LogEventList"), LogEvent=items))


def parse_stored(text: str) -> Any:
    return parse(text.encode()).model


async def get_log(request: web.Request) -> web.Response:
    svc, rec = service_of(request), record(request)
    stored = await svc.state.log_event(rec.id, _int(request, "n"))
    if stored is None:
        raise NotFound("no such LogEvent")
    return xml(parse_stored(stored))


async def post_log(request: web.Request) -> web.Response:
    svc, rec = service_of(request), record(request)
    doc = await body(request, "LogEvent")
    return created(await svc.feedback.log_event(rec, doc))


# --- responses ----------------------------------------------------------------------------


async def get_rsps(request: web.Request) -> web.Response:
    svc = service_of(request)
    sets = [m.ResponseSet(href=f"/rsps/{views.RESPONSE_SET}", mRID=svc.tree.response_set_mrid(),
                          description="DERControl responses",
                          ResponseListLink=m.ListLink(href=f"/rsps/{views.RESPONSE_SET}/rsp"))]
    items, total = page(request, sets)
    return xml(m.ResponseSetList(href="/rsps", all=total, results=len(items),
                                 pollRate=svc.tree.poll_rate("ResponseSetList"), ResponseSet=items))


async def get_rsp_set(request: web.Request) -> web.Response:
    svc = service_of(request)
    if _int(request, "r") != views.RESPONSE_SET:
        raise NotFound("no such ResponseSet")
    return xml(m.ResponseSet(href=f"/rsps/{views.RESPONSE_SET}", mRID=svc.tree.response_set_mrid(),
                             description="DERControl responses",
                             ResponseListLink=m.ListLink(href=f"/rsps/{views.RESPONSE_SET}/rsp")))


def _response_doc(r: Any) -> m.Response:
    return m.DERControlResponse(href=f"/rsps/{r.set_id}/rsp/{r.id}", createdDateTime=r.created,
                                endDeviceLFDI=r.lfdi, status=r.status, subject=r.subject)


async def get_rsp_list(request: web.Request) -> web.Response:
    svc, scope = service_of(request), scope_of(request)
    if _int(request, "r") != views.RESPONSE_SET:
        raise NotFound("no such ResponseSet")
    seen: dict[str, bool] = {}
    rows = [r for r in await svc.state.responses(views.RESPONSE_SET)
            if seen.setdefault(r.lfdi, svc.registry.sees_lfdi(scope, r.lfdi))]
    rows, total = page(request, rows, lambda r: r.created)
    items = [_response_doc(r) for r in rows]
    return xml(m.ResponseList(href=f"/rsps/{views.RESPONSE_SET}/rsp", all=total,
                              results=len(items), Response=items))


async def post_rsp(request: web.Request) -> web.Response:
    svc = service_of(request)
    if _int(request, "r") != views.RESPONSE_SET:
        raise NotFound("no such ResponseSet")
    doc = await body(request, "Response", "DERControlResponse")
    stored = await svc.feedback.respond(scope_of(request), doc)
    return created(f"/rsps/{stored.set_id}/rsp/{stored.id}")


async def get_rsp(request: web.Request) -> web.Response:
    svc, scope = service_of(request), scope_of(request)
    r = await svc.state.response(_int(request, "r"), _int(request, "n"))
    if r is None or not svc.registry.sees_lfdi(scope, r.lfdi):
        raise NotFound("no such Response")
    return xml(_response_doc(r))


# --- mirror usage points ------------------------------------------------------------------


def _mup_doc(svc: Parts, r: Any) -> m.MirrorUsagePoint:
    return m.MirrorUsagePoint(
        href=f"/mup/{r.id}", mRID=r.mrid, description=r.description, roleFlags=r.role_flags,
        serviceCategoryKind=r.service_category, status=r.status, deviceLFDI=r.lfdi,
        postRate=r.post_rate or svc.tree.rates.get("post", {}).get("MirrorUsagePoint", 60))


async def get_mup_list(request: web.Request) -> web.Response:
    svc = service_of(request)
    rows = await svc.feedback.mups(scope_of(request))
    items, total = page(request, [_mup_doc(svc, r) for r in rows])
    return xml(m.MirrorUsagePointList(href="/mup", all=total, results=len(items),
                                      pollRate=svc.tree.poll_rate("MirrorUsagePointList"),
                                      MirrorUsagePoint=items))


async def post_mup(request: web.Request) -> web.Response:
    doc = await body(request, "MirrorUsagePoint")
    stored = await service_of(request).feedback.upsert_mup(scope_of(request), doc)
    return created(f"/mup/{stored.id}")


async def get_mup(request: web.Request) -> web.Response:
    svc = service_of(request)
    return xml(_mup_doc(svc, await svc.feedback.mup(scope_of(request), _int(request, "m"))))


async def post_mup_readings(request: web.Request) -> web.Response:
    doc = await body(request, "MirrorMeterReading", "MirrorMeterReadingList")
    mmrs = doc.MirrorMeterReading if isinstance(doc, m.MirrorMeterReadingList) else [doc]
    mup_id = _int(request, "m")
    await service_of(request).feedback.post_readings(scope_of(request), mup_id, mmrs)
    return created(f"/mup/{mup_id}")


async def delete_mup(request: web.Request) -> web.Response:
    await service_of(request).feedback.delete_mup(scope_of(request), _int(request, "m"))
    return web.Response(status=204)


# --- the application ----------------------------------------------------------------------

E = "/edev/{e:\\d+}"
P = E + "/derp/{p:\\d+}"
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/dcap", get_dcap),
    ("GET", "/tm", get_time),
    ("GET", "/edev", get_edev_list),
    ("POST", "/edev", post_edev),
    ("GET", E, get_edev),
    ("GET", E + "/rg", get_rg),
    ("GET", E + "/cp", get_cp),
    ("PUT", E + "/cp", put_cp),
    ("POST", E + "/cp", put_cp),
    ("GET", E + "/fsa", get_fsa_list),
    ("GET", E + "/fsa/{f:\\d+}", get_fsa),
    ("GET", E + "/fsa/{f:\\d+}/derp", get_derp_list),
    ("GET", E + "/derp", get_derp_list),
    ("GET", P, get_derp),
    ("GET", P + "/derc", get_derc_list),
    ("GET", P + "/derc/{mrid:[0-9A-Fa-f]+}", get_derc),
    ("GET", P + "/actderc", get_actderc),
    ("GET", P + "/dderc", get_dderc),
    ("GET", P + "/dc", get_curve_list),
    ("GET", P + "/dc/{n:\\d+}", get_curve),
    ("GET", E + "/der", get_der_list),
    ("GET", E + "/der/{d:\\d+}", get_der),
    ("GET", E + "/der/{d:\\d+}/{which}", get_der_doc),
    ("PUT", E + "/der/{d:\\d+}/{which}", put_der_doc),
    ("GET", E + "/sub", get_sub_list),
    ("POST", E + "/sub", post_sub),
    ("GET", E + "/sub/{s:\\d+}", get_sub),
    ("DELETE", E + "/sub/{s:\\d+}", delete_sub),
    ("GET", E + "/lel", get_log_list),
    ("POST", E + "/lel", post_log),
    ("GET", E + "/lel/{n:\\d+}", get_log),
    ("GET", "/rsps", get_rsps),
    ("GET", "/rsps/{r:\\d+}", get_rsp_set),
    ("GET", "/rsps/{r:\\d+}/rsp", get_rsp_list),
    ("POST", "/rsps/{r:\\d+}/rsp", post_rsp),
    ("GET", "/rsps/{r:\\d+}/rsp/{n:\\d+}", get_rsp),
    ("GET", "/mup", get_mup_list),
    ("POST", "/mup", post_mup),
    ("GET", "/mup/{m:\\d+}", get_mup),
    ("POST", "/mup/{m:\\d+}", post_mup_readings),
    ("DELETE", "/mup/{m:\\d+}", delete_mup),
)


def create_app(parts: Parts, max_body: int = 64 * 1024,
               middlewares: Sequence[Middleware] = ()) -> web.Application:
    """The 2030.5 application; TLS and the listener are the caller's (see adapter.py).
    `middlewares` run first (the gateway's request metrics), then the <Error> edge."""
    app = web.Application(middlewares=[*middlewares, edge], client_max_size=max_body)
    app[SERVICE] = parts
    app[MAX_BODY] = max_body
    for method, path, handler in ROUTES:
        if method == "GET":  # HEAD too, wherever GET is served
            app.router.add_get(path, handler, allow_head=True)
        else:
            app.router.add_route(method, path, handler)
    return app
