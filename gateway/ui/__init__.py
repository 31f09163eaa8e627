"""The status page: server-rendered HTML under /ui/ on the platform listener.

Signed in by bearer token or client certificate (gateway.ui.signin), each participant sees
only what the platform API would show it. Plots are drawn in the browser by uPlot, served
from this package (static/; no CDN: the gateway may have no internet).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.ui import signin, views
from gateway.ui.render import environment
from gateway.ui.sessions import SessionStore

STATIC = Path(__file__).parent / "static"


def mount_ui(app: web.Application) -> None:
    """Add the status page's routes to the platform application."""
    app[signin.STORE] = SessionStore()
    app[signin.TEMPLATES] = environment()
    router = app.router
    router.add_get("/ui", _to_fleet)
    router.add_get("/ui/", views.fleet)
    router.add_get("/ui/signin", signin.signin_page)
    router.add_post("/ui/signin", signin.signin)
    router.add_post("/ui/signout", signin.signout)
    router.add_get("/ui/ders/{resource_id}", views.der)
    router.add_get("/ui/instructions", views.instructions)
    router.add_get("/ui/instructions/{instruction_id}", views.instruction)
    router.add_post("/ui/instructions/{instruction_id}/cancel", views.cancel)
    router.add_get("/ui/notices", views.notices)
    router.add_get("/ui/health", views.health)
    router.add_get("/ui/events", views.events)
    router.add_static("/ui/static/", STATIC, append_version=True)


async def _to_fleet(_request: web.Request) -> web.Response:
    return signin.see_other("/ui/")
