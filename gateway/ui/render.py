"""Templates (jinja2, autoescaped) and the headers every page carries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jinja2
from aiohttp import web

# The page loads only its own scripts and styles; uPlot sets element styles from script,
# which CSP's style-src does not govern. No frames, no foreign form targets.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; "
                                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make form POSTs say "Origin: null"
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def when(value: datetime | None) -> str:
    """A UTC time the way operators read it: 2026-06-01 13:00:05Z."""
    if value is None:
        return "open"
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def watts(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:,.1f} kW" if abs(value) >= 1000 else f"{value:,.0f} W"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("gateway.ui", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = when
    env.filters["watts"] = watts
    return env


def page(env: jinja2.Environment, template: str, status: int = 200,
         **context: Any) -> web.Response:
    body = env.get_template(template).render(**context)
    return web.Response(text=body, status=status, content_type="text/html",
                        charset="utf-8", headers=SECURITY_HEADERS)
