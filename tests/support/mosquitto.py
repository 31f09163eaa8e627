"""A throwaway Mosquitto broker on loopback for tests (skips when it is not installed).

Started with the dynamic-security plugin, as a VTN's broker would be: anonymous access off,
one administrative client for the VTN (it publishes notifications and manages the VENs'
broker clients and topic ACLs through the plugin's control topic).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.gateway import free_port
from tests.support.required import missing

DYNSEC_PLUGINS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
)
CONTROL = "$CONTROL/dynamic-security/#"


@dataclass(frozen=True)
class Broker:
    url: str  # mqtt://127.0.0.1:PORT
    host: str
    port: int
    username: str  # the VTN's administrative client
    password: str


def _dynsec_client(username: str, password: str, roles: list[str]) -> dict[str, object]:
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return {"username": username, "textName": "", "iterations": 101,
            "password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "roles": [{"rolename": r} for r in roles]}


def _dynsec_config(username: str, password: str) -> dict[str, object]:
    acl = [("publishClientSend", "#"), ("publishClientSend", CONTROL),
           ("subscribePattern", CONTROL), ("publishClientReceive", CONTROL)]
    return {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True,
                             "subscribe": False, "unsubscribe": True},
        "clients": [_dynsec_client(username, password, ["vtn"])],
        "groups": [],
        "roles": [{"rolename": "vtn", "acls": [
            {"acltype": t, "topic": topic, "priority": 0, "allow": True} for t, topic in acl]}],
    }


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {log.read_text(errors='replace')}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError("mosquitto did not start listening")


@contextmanager
def mosquitto_broker(port: int | None = None, password: str | None = None) -> Iterator[Broker]:
    """Yield a running broker (on `port`, or a free one; the VTN's client with `password`,
    or a random one); stop it and remove its files afterwards."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    plugin = next((p for p in DYNSEC_PLUGINS if Path(p).exists()), None)
    if binary is None or plugin is None:
        missing("mosquitto (with its dynamic-security plugin) is not installed")
    folder = Path(tempfile.mkdtemp(prefix="dergw-mqtt-"))
    password = password or base64.urlsafe_b64encode(os.urandom(18)).decode()
    (folder / "dynsec.json").write_text(json.dumps(_dynsec_config("vtn", password)))
    port = port or free_port()
    (folder / "mosquitto.conf").write_text(
        "per_listener_settings false\n"
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous false\n"
        f"plugin {plugin}\n"
        f"plugin_opt_config_file {folder / 'dynsec.json'}\n"
        "persistence false\n"
        "log_dest stderr\n")
    if os.geteuid() == 0:  # mosquitto drops to its own user when started as root
        shutil.chown(folder, "mosquitto", "mosquitto")
        for child in folder.iterdir():
            shutil.chown(child, "mosquitto", "mosquitto")
    log = folder / "log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "-c", str(folder / "mosquitto.conf")],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process, log)
        yield Broker(f"mqtt://127.0.0.1:{port}", "127.0.0.1", port, "vtn", password)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
