"""An independent implementation: node-opcua-client reads and subscribes with SignAndEncrypt.

The client lives in tests/opcua/node (package.json pins node-opcua-client); `npm install` runs
there on first use. The test skips, saying why, when node or npm is missing or the install
fails (e.g. no network).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from pki.devpki import load_pair
from tests.opcua.support import ADMIN_VIEWER, CONTROLLER, CORE_WARNINGS, NAMESPACE_URI
from tests.support.required import missing

pytestmark = [pytest.mark.asyncio(loop_scope="module"), *CORE_WARNINGS]
NODE_DIR = Path(__file__).parent / "node"


async def ensure_node_client() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing("node and npm are needed for the node-opcua interoperability test")
    if (NODE_DIR / "node_modules/node-opcua-client").is_dir():
        return
    proc = await asyncio.create_subprocess_exec(
        "npm", "install", "--no-audit", "--no-fund", cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        missing("npm install of node-opcua-client timed out")
    if proc.returncode != 0:
        missing(f"npm install of node-opcua-client failed: {out.decode()[-300:]}")


def node_pki(gw_pki: Path, root: Path) -> Path:
    """node-opcua's PKI folder: it trusts our server certificate and its issuing CA."""
    for sub in ("trusted/certs", "issuers/certs", "trusted/crl", "issuers/crl", "rejected"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(gw_pki / "opcua/server.der", root / "trusted/certs/server.der")
    ca, ca_key = load_pair(gw_pki / "opcua/ca.pem")
    (root / "issuers/certs/ca.der").write_bytes(ca.public_bytes(Encoding.DER))
    # node-opcua insists on knowing the CA's revocation list: an empty one, made now.
    now = datetime.now(UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
           .last_update(now - timedelta(minutes=5)).next_update(now + timedelta(days=1))
           .sign(ca_key, hashes.SHA256()))
    (root / "issuers/crl/ca.crl").write_bytes(crl.public_bytes(Encoding.DER))
    return root


async def test_node_opcua_reads_and_subscribes_with_sign_and_encrypt(served, tmp_path):
    await ensure_node_client()
    gw, clients = served
    cert = gw.pki / "opcua/clients/scada-operator.pem"
    env = {**os.environ, "URL": gw.adapter_listen("opcua"), "NODE_PKI": str(
        node_pki(gw.pki, tmp_path / "node-pki")), "CERT": str(cert),
        "KEY": str(cert.with_suffix(".key")),
        "APP_URI": "urn:der-gateway:opcua:client:scada-operator",
        "OPCUA_USER": ADMIN_VIEWER["name"], "OPCUA_PASSWORD": ADMIN_VIEWER["password"],
        "NS_URI": NAMESPACE_URI, "NODE": "der/d5.Control.ExportLimitW", "CHANGES": "2"}
    proc = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / "client.mjs"), cwd=NODE_DIR, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    events = []
    try:
        async with asyncio.timeout(40):
            while line := await proc.stdout.readline():
                if not line.startswith(b'{"event"'):
                    continue  # node-opcua's own log lines
                event = json.loads(line)
                events.append(event)
                if event["event"] == "subscribed":
                    now = datetime.now(UTC)
                    status, body = await clients["ldc-c"].post("/v1/instructions", {
                        "kind": "limit", "target": {"kind": "resource", "id": "d5"},
                        "start": now.isoformat(), "end": (now + timedelta(hours=1)).isoformat(),
                        "limits": {"export_max_w": 3300}, "reason": "node-opcua check"})
                    assert status == 201, body
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = (await proc.stderr.read()).decode()[-2000:]
    assert proc.returncode == 0, (events, stderr)
    assert events[0] == {"event": "read", "status": "Good", "value": 8000,
                         "ns": events[0]["ns"]}, events
    changes = [e["value"] for e in events if e["event"] == "change"]
    assert changes == [8000, 3300], events


async def test_node_opcua_receives_and_acknowledges_an_alarm(served, tmp_path):
    """node-opcua's own A&C helpers: an event item on the Server object, ConditionRefresh,
    and acknowledgeCondition on the ConditionId the event carried."""
    await ensure_node_client()
    gw, _ = served
    cert = gw.pki / "opcua/clients/scada-operator.pem"
    env = {**os.environ, "URL": gw.adapter_listen("opcua"), "NODE_PKI": str(
        node_pki(gw.pki, tmp_path / "node-pki")), "CERT": str(cert),
        "KEY": str(cert.with_suffix(".key")),
        "APP_URI": "urn:der-gateway:opcua:client:scada-operator",
        "OPCUA_USER": CONTROLLER["name"], "OPCUA_PASSWORD": CONTROLLER["password"],
        "DER": "d1"}
    proc = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / "alarms.mjs"), cwd=NODE_DIR, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    events = []
    try:
        async with asyncio.timeout(40):
            while line := await proc.stdout.readline():
                if not line.startswith(b'{"event"'):
                    continue  # node-opcua's own log lines
                event = json.loads(line)
                events.append(event)
                if event["event"] == "subscribed":  # d1 stops answering, as Modbus marks it
                    await gw.gateway.services.set_online_many({"d1": False})
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await gw.gateway.services.set_online_many({"d1": True})
    stderr = (await proc.stderr.read()).decode()[-2000:]
    assert proc.returncode == 0, (events, stderr)
    assert events[0] == {"event": "subscribed", "refresh": "Good"}, events
    alarms = [e for e in events if e["event"] == "alarm" and e["der"] == "d1"]
    assert alarms[0] | {"condition": None} == {
        "event": "alarm", "der": "d1", "name": "CommunicationLost", "active": True,
        "acked": False, "retain": True, "severity": 700, "user": "", "condition": None}
    assert alarms[0]["condition"].endswith(";s=der/d1.Alarms.CommunicationLost")
    assert {"event": "acknowledged", "status": "Good"} in events
    assert alarms[-1]["acked"] is True and alarms[-1]["user"] == CONTROLLER["name"]
    assert not [e for e in events if e["event"] == "alarm" and e["der"] != "d1"]
