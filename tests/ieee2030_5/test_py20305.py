"""An independent CSIP client against the real gateway: PyPI `py20305` with its own runner
(`py20305 --config ...`) and its no-hardware device (the print connector).

It runs as a pre-registered device (the platform registered its LFDI) and as an in-band
registered one (it POSTs its own EndDevice), long enough to post readings. Judged by what
the platform API shows (DERStatus, DERCapability, DERSettings, DERAvailability, readings)
and by both sides' logs: no failed write, no 5xx.

py20305 is installed into a virtual environment of its own (its pins are its own), cached
under var/py20305/ between runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pki.devpki import DevPki
from tests.support.gateway import GatewayProcess, free_port
from tests.support.seed import seed_platform

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / "var" / "py20305" / "venv"
VERSION = "0.16.1"
RUN_S = 45.0
# What in py20305's log means a write or a poll failed.
FAILURE_MARKS = ("HTTP 5", " 500 ", " 502 ", " 503 ", "status=5", "Traceback", "failed to PUT",
                 "failed to POST", "rejected", "ERROR")


def py20305() -> Path:
    exe = VENV / "bin" / "py20305"
    if exe.exists():
        return exe
    python = shutil.which("python3.12") or sys.executable
    try:
        subprocess.run([python, "-m", "venv", str(VENV)], check=True, timeout=120)
        subprocess.run([str(VENV / "bin/pip"), "install", "-q", f"py20305[cli]=={VERSION}"],
                       check=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(VENV, ignore_errors=True)
        pytest.fail(f"could not install py20305 {VERSION}: {exc}")
    return exe


def client_config(tmp: Path, pki: Path, name: str, url: str, lfdi: str, *, inband: bool
                  ) -> Path:
    base = pki / "ieee2030_5"
    config = {
        "server": {"url": url, "server_2018_compat": True},  # (we serve 2030.5-2018)
        "tls": {"client_cert": str(base / f"clients/{name}-chain.pem"),
                "client_key": str(base / f"clients/{name}.key"),
                "ca_cert": str(base / "ca-chain.pem"), "check_hostname": False},
        "devices": [{"type": "print_demo", "lfdi": lfdi}],
        "telemetry": {"post_rate_seconds": 5, "der_settings_poll_rate_seconds": 5,
                      "der_capability_poll_rate_seconds": 5},
        "logging": {"level": "INFO", "file": str(tmp / f"{name}.log")},
        "connection": {"initial_delay_seconds": 1.0, "max_delay_seconds": 5.0},
        "register_on_start": inband,
        "history": {"enabled": False},  # (it would write a database into the cwd)
    }
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(config, indent=2))
    return path


async def run_client(exe: Path, config: Path, seconds: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(exe), "--config", str(config), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        await asyncio.sleep(seconds)
    finally:
        if proc.returncode is None:
            proc.terminate()
        out, _ = await proc.communicate()
    return out.decode(errors="replace")


def failures(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(mark in line for mark in FAILURE_MARKS)]


@pytest.mark.parametrize("inband", [False, True], ids=["pre-registered", "in-band"])
async def test_py20305_runs_against_the_gateway(tmp_path, inband):
    exe = await asyncio.to_thread(py20305)
    listen = f"https://127.0.0.1:{free_port()}"
    gateway_config = {"listen": listen}
    if inband:  # in-band DERs join the platform at this connection point, owned by agg-x
        gateway_config |= {"inband_connection_point": "cp-a1", "inband_owner": "agg-x"}
    (tmp_path / "gw").mkdir()
    proc = GatewayProcess(tmp_path / "gw", ieee2030_5=gateway_config)
    gw = await proc.start()
    try:
        name = "py20305-device"
        DevPki(gw.pki).issue_2030_5_client(name)
        lfdi = DevPki(gw.pki).write_identities()[f"ieee2030_5/{name}"]["lfdi"]
        resources = [] if inband else [{
            "id": "py-der", "connection_point_id": "cp-a1", "kind": "pv",
            "nameplate": {"export_max_w": 10_000}, "aggregator_id": "agg-x",
            "binding": {"protocol": "ieee2030_5", "address": {"lfdi": lfdi}}}]
        clients = await seed_platform(gw, resources)
        admin = clients["admin"]
        await admin.ok("PUT", "/v1/adapters/ieee2030_5/rates/post",
                       {"resource": "MirrorUsagePoint", "seconds": 5})
        config = client_config(tmp_path, gw.pki, name, listen, lfdi, inband=inband)
        out = await run_client(exe, config, RUN_S)
        log = (tmp_path / f"{name}.log").read_text() if (tmp_path / f"{name}.log").exists() \
            else ""
        rid = "py-der" if not inband else f"2030.5-{lfdi.lower()}"
        status, docs = await admin.get(f"/v1/adapters/ieee2030_5/ders/{rid}")
        assert status == 200, (docs, out[-3000:])
        missing = [k for k in ("DERCapability", "DERSettings", "DERStatus", "DERAvailability")
                   if not docs.get(k)]
        assert not missing, (missing, log[-4000:] or out[-4000:])
        status, readings = await admin.get(f"/v1/readings?resource_id={rid}")
        rows = readings if isinstance(readings, list) else readings["items"]
        assert status == 200 and rows, (readings, log[-4000:] or out[-4000:])
        assert not failures(log + out), failures(log + out)[:20]
    finally:
        code = await proc.stop()
        gw_log = proc.log()
    assert code == 0
    assert "2030.5 " not in gw_log or " failed" not in gw_log, gw_log[-3000:]
