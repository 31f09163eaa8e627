"""Subscriptions cannot make the gateway attack its own network (issue 12, finding 1).

The guard is the core's one outbound check; these tests hold the 2030.5 edge to it: every
refused notificationURI gets a 2030.5 <Error> 400 with nothing stored, in every notation.
"""

from __future__ import annotations

import pytest
from lxml import etree

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import serialize

SEP = "urn:ieee:std:2030.5:ns"
CT = {"Content-Type": "application/sep+xml"}
REFUSED = [
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_",
    "javascript:alert(1)",
    "ftp://example.org/x",
    "https://user:secret@example.org/n",  # credentials in the URL
    "https://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
    "https://10.1.2.3/n",
    "https://172.16.0.1/n",
    "https://192.168.1.1/n",
    "https://167772161/n",  # 10.0.0.1 in decimal
    "https://0x0a000001/n",  # hex
    "https://012.0.0.1/n",  # octal 10.0.0.1
    "https://10.1/n",  # short form
    "https://3221225985/n",  # 192.0.2.1, reserved for documentation
    "https://[::ffff:10.0.0.1]/n",  # IPv4-mapped IPv6
    "https://[fd00::1]/n",  # unique local IPv6
    "https://127.0.0.1/n",  # loopback (production)
    "https://2130706433/n",  # loopback in decimal
    "https://localhost/n",
    "https://[::1]/n",
    "http://example.org/n",  # plain HTTP in production
]


async def subscribe(server, uri: str):
    async with server.client("device-1") as c:
        await c.get("/edev")
        edev = server.service.registry.by_resource("der-1").id
        sub = m.Subscription(subscribedResource=f"/edev/{edev}/derp/1/derc", encoding=0,
                             level="+S1", limit=1, notificationURI=uri)
        async with c.post(f"/edev/{edev}/sub", data=serialize(sub), headers=CT) as resp:
            return resp.status, etree.fromstring(await resp.read() or b"<x/>"), edev


@pytest.mark.parametrize("uri", REFUSED)
async def test_a_forbidden_notification_uri_is_refused_with_an_error(server, uri):
    server.guard["dev_mode"] = False
    status, body, edev = await subscribe(server, uri)
    assert status == 400, uri
    assert body.tag == f"{{{SEP}}}Error"
    assert await server.service.state.subscriptions(edev) == []


async def test_loopback_is_allowed_in_development_mode_only(server):
    status, _, _ = await subscribe(server, "https://127.0.0.1:9/n")
    assert status == 201
    server.guard["dev_mode"] = False
    status, _, _ = await subscribe(server, "https://127.0.0.1:9/n")
    assert status == 400
