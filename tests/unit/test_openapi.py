"""The served OpenAPI document and the router never drift apart."""

from __future__ import annotations

from gateway.api.app import build_openapi, make_platform_app
from gateway.bus import InProcessBus
from gateway.services import GatewayServices
from gateway.store.engine import Database


async def test_every_route_is_documented_and_every_documented_path_is_routed(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")

    async def status() -> dict:
        return {}

    app = make_platform_app(GatewayServices(db), InProcessBus(), db, status=status)
    routed = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None
              and not r.resource.canonical.startswith("/ui")}  # HTML pages, not the API
    document = build_openapi()
    documented = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    documented.add(("GET", "/v1/openapi.json"))
    documented.add(("GET", "/metrics"))  # documented by make_platform_app beside the adapters
    assert routed == documented
    for item in document["paths"].values():
        for op in item.values():
            assert op["summary"] and op["operationId"]
    await db.close()
