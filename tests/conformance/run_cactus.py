"""Run the CSIP-AUS server conformance procedures (cactus-client) against der-gateway.

    python tests/conformance/run_cactus.py              # the CI set: every S-ALL and S-OPT
                                                        # except S-ALL-41, 44, 45, 46, 50
    python tests/conformance/run_cactus.py --all        # everything except S-ALL-50 (72 h)
    python tests/conformance/run_cactus.py S-ALL-01 S-ALL-10
    python tests/conformance/run_cactus.py --no-notifications ...   # no webhook receiver

It installs cactus-client and our admin plugin (tests/conformance/cactus_plugin) into their
own Python 3.12 virtual environment, and cactus-client-notifications into another (its pins
conflict); enrols dev-PKI 2030.5 clients; then, for each procedure, starts a fresh
`der-gateway serve` on loopback, runs `cactus run ID CLIENT... --headless` and records the
exit code (0 pass). A summary is written to var/conformance/results.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / "var" / "conformance"
CACTUS_VENV = WORK / "venv-cactus"
NOTIFY_VENV = WORK / "venv-notifications"
PKI = WORK / "certs"
PLUGIN = Path(__file__).resolve().parent / "cactus_plugin"
PEN = 37244
PIN = 111115
LONG_WAITING = {"S-ALL-41", "S-ALL-44", "S-ALL-45", "S-ALL-46", "S-ALL-50"}
DEVICES = ("cactus-device-1", "cactus-device-2")
AGGREGATORS = ("cactus-aggregator-1", "cactus-aggregator-2")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def python312() -> str:
    found = shutil.which("python3.12") or sys.executable
    return found


def ensure_venvs(with_notifications: bool) -> None:
    if not (CACTUS_VENV / "bin/cactus").exists():
        run([python312(), "-m", "venv", str(CACTUS_VENV)])
        run([str(CACTUS_VENV / "bin/pip"), "install", "-q", "cactus-client"])
    run([str(CACTUS_VENV / "bin/pip"), "install", "-q", "--no-deps", "-e", str(PLUGIN)])
    if with_notifications and not (NOTIFY_VENV / "bin/python").exists():
        run([python312(), "-m", "venv", str(NOTIFY_VENV)])
        run([str(NOTIFY_VENV / "bin/pip"), "install", "-q", "cactus-client-notifications"])


def ensure_pki() -> dict:
    """Dev PKI for the runs: 2030.5 device/aggregator clients, platform clients."""
    code = (
        "import sys; from pathlib import Path; from pki.devpki import DevPki; "
        f"p = DevPki(Path({str(PKI)!r})); "
        f"p.init(devices={DEVICES!r}, aggregators={AGGREGATORS!r}, "
        "platform_clients=('admin', 'ldc-cactus', 'agg-cactus'))"
    )
    run([sys.executable, "-c", code], cwd=REPO)
    return json.loads((PKI / "identities.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def der_lfdi(name: str) -> str:
    """An aggregator's DER LFDI must differ from its certificate's: derive one from the name."""
    return hashlib.sha256(f"der-of-{name}".encode()).hexdigest()[:40].upper()


def sfdi_of(lfdi: str) -> int:
    value = int(lfdi[:9], 16)
    return value * 10 + (10 - sum(map(int, str(value))) % 10) % 10


def write_config(ids: dict, port: int, notify_url: str | None) -> Path:
    clients = []
    for name in (*DEVICES, *AGGREGATORS):
        entry = ids[f"ieee2030_5/{name}"]
        aggregator = name in AGGREGATORS
        lfdi = der_lfdi(name) if aggregator else entry["lfdi"]
        clients.append({
            "id": name, "type": "aggregator" if aggregator else "device",
            "certificate_file": str(PKI / f"ieee2030_5/clients/{name}-chain.pem"),
            "key_file": str(PKI / f"ieee2030_5/clients/{name}.key"),
            "lfdi": lfdi, "sfdi": entry["sfdi"] if not aggregator else sfdi_of(lfdi),
            "pen": PEN, "pin": PIN, "max_watts": 10000,
        })
    config = {
        "output_dir": str(WORK / "output"),
        "server": {"device_capability_uri": f"https://127.0.0.1:{port}/dcap", "verify_ssl": True,
                   "verify_host_name": True,
                   "serca_pem_file": str(PKI / "ieee2030_5/serca.pem"), "pen": PEN,
                   "notification_uri": notify_url, "notification_admin_uri": notify_url},
        "clients": clients,
    }
    (WORK / "output").mkdir(parents=True, exist_ok=True)
    path = WORK / "cactus.yaml"
    # JSON is YAML: no YAML library needed on this side.
    path.write_text(json.dumps(config, indent=2))
    return path


def procedures(cactus_python: Path) -> dict[str, list[str]]:
    """Procedure id -> client types it requires (in order), read from the installed package."""
    code = (
        "import json, pathlib, yaml, cactus_test_definitions.server as s; "
        "d = pathlib.Path(s.__file__).parent / 'procedures'; out = {}\n"
        "for f in sorted(d.glob('S-*.yaml')):\n"
        "    y = yaml.safe_load(f.read_text())\n"
        "    out[f.stem] = [c.get('client_type') or '' for c in "
        "(y.get('Preconditions') or {}).get('required_clients') or [{}]]\n"
        "print(json.dumps(out))"
    )
    out = subprocess.run([str(cactus_python), "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


def assign_clients(types: list[str]) -> list[str]:
    devices, aggregators = list(DEVICES), list(AGGREGATORS)
    chosen = []
    for kind in types:
        pool = aggregators if kind == "aggregator" else devices
        chosen.append(pool.pop(0))
    return chosen


def wait_healthy(url: str, timeout: float = 30.0) -> None:
    ctx = ssl.create_default_context(cafile=str(PKI / "platform/ca.pem"))
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/v1/health", context=ctx, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("gateway did not become healthy")


def start_notifications() -> tuple[subprocess.Popen, str]:
    """cactus-client-notifications on loopback (plain HTTP: the gateway's dev mode allows
    loopback webhooks), from its own virtual environment."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    code = ("from aiohttp import web; "
            "from cactus_client_notifications.server.main import app; "
            f"web.run_app(app, host='127.0.0.1', port={port}, print=None)")
    env = {**os.environ, "APP_PORT": str(port), "SERVER_URL": url}
    log = (WORK / "notifications.log").open("wb")
    process = subprocess.Popen([str(NOTIFY_VENV / "bin/python"), "-c", code], env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process, url
        time.sleep(0.2)
    process.terminate()
    raise TimeoutError("cactus-client-notifications did not start")


def run_one(proc_id: str, clients: list[str], port: int, config: Path, timeout: int) -> int:
    data = WORK / "runs" / proc_id
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    platform = f"https://127.0.0.1:{free_port()}"
    env = {**os.environ, "DERGW_DATA_DIR": str(data), "DERGW_PKI_DIR": str(PKI),
           "DERGW_PLATFORM_LISTEN": platform, "DERGW_DEV_MODE": "true",
           "DERGW_IANA_PEN": str(PEN),
           "DERGW_ADAPTERS__IEEE2030_5__LISTEN": f"https://127.0.0.1:{port}",
           "DERGW_ADAPTERS__IEEE2030_5__DEFAULT_PIN": str(PIN)}
    for other in ("OPENADR3", "OPCUA", "MODBUS"):
        env[f"DERGW_ADAPTERS__{other}__ENABLED"] = "false"
    with (data / "gateway.log").open("wb") as log:
        gateway = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], cwd=data,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(platform)
        cactus_env = {**os.environ, "DERGW_CACTUS_PLATFORM": platform, "DERGW_CACTUS_PKI": str(PKI)}
        with (data / "cactus.log").open("wb") as log:
            result = subprocess.run(
                [str(CACTUS_VENV / "bin/cactus"), "run", "-c", str(config), "--headless",
                 "--timeout", str(timeout), proc_id, *clients],
                env=cactus_env, stdout=log, stderr=subprocess.STDOUT, check=False)
        return result.returncode
    finally:
        gateway.terminate()
        try:
            gateway.wait(15)
        except subprocess.TimeoutExpired:
            gateway.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="procedure ids (default: the CI set)")
    parser.add_argument("--all", action="store_true", help="every procedure except S-ALL-50")
    parser.add_argument("--timeout", type=int, default=600, help="per procedure, seconds")
    parser.add_argument("--retries", type=int, default=0,
                        help="run a failed procedure again up to N times (reported as such)")
    parser.add_argument("--no-notifications", action="store_true",
                        help="do not run cactus-client-notifications (S-ALL-25..40 then fail)")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    ensure_venvs(not args.no_notifications)
    ids = ensure_pki()
    available = procedures(CACTUS_VENV / "bin/python")
    skip = {"S-ALL-50"} if args.all else LONG_WAITING
    chosen = args.ids or [p for p in available if p not in skip]
    port = free_port()
    receiver, notify_url = (None, None) if args.no_notifications else start_notifications()
    config = write_config(ids, port, notify_url)
    results = {}
    try:
        for proc_id in chosen:
            for attempt in range(1, args.retries + 2):
                started = time.monotonic()
                code = run_one(proc_id, assign_clients(available[proc_id]), port, config,
                               args.timeout)
                results[proc_id] = {"passed": code == 0, "exit": code, "attempts": attempt,
                                    "seconds": round(time.monotonic() - started, 1)}
                verdict = "PASS" if code == 0 else f"FAIL ({code})"
                print(f"{proc_id}: {verdict}" + (f" on attempt {attempt}" if attempt > 1 else ""),
                      flush=True)
                if code == 0:
                    break
                kept = WORK / "runs" / f"{proc_id}.failed-{attempt}"  # its logs, for the record
                shutil.rmtree(kept, ignore_errors=True)
                shutil.move(WORK / "runs" / proc_id, kept)
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait(10)
    passed = sum(r["passed"] for r in results.values())
    (WORK / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    retried = sum(1 for r in results.values() if r["passed"] and r["attempts"] > 1)
    print(f"{passed} passed ({retried} only on a retry), {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
