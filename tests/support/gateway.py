"""Start the real gateway for tests: in-process (fast) or as a `der-gateway serve` subprocess.

Both listen on real loopback sockets with real TLS and a dev PKI generated for the test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.settings import Settings, load_settings
from pki.devpki import DevPki
from pki.tls import client_context


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LISTENING = {"ieee2030_5": "https", "openadr3": "https", "opcua": "opc.tcp"}


def test_settings(tmp: Path, **adapters: dict[str, Any]) -> dict[str, str]:
    """Environment for a gateway under `tmp` with free ports; adapters default to disabled
    unless given (so each test starts only what it exercises)."""
    env = {
        "DERGW_DATA_DIR": str(tmp / "var"),
        "DERGW_PKI_DIR": str(tmp / "certs"),
        "DERGW_PLATFORM_LISTEN": f"https://127.0.0.1:{free_port()}",
        "DERGW_DEV_MODE": "true",
    }
    for name in ("ieee2030_5", "openadr3", "opcua", "modbus"):
        config = adapters.get(name)
        if config is None:
            env[f"DERGW_ADAPTERS__{name.upper()}__ENABLED"] = "false"
            continue
        if name in LISTENING and "listen" not in config:
            config = {**config, "listen": f"{LISTENING[name]}://127.0.0.1:{free_port()}"}
        for key, value in config.items():
            env[f"DERGW_ADAPTERS__{name.upper()}__{key.upper()}"] = (
                value if isinstance(value, str) else __import__("json").dumps(value))
    return env


class PlatformClient:
    """The platform API as a participant sees it: a client certificate or a bearer token."""

    def __init__(self, base: str, pki: Path, name: str | None = "admin",
                 token: str | None = None) -> None:
        self.base = base
        cert = pki / f"platform/clients/{name}.pem" if name and not token else None
        if cert is not None and not cert.exists():
            DevPki(pki).issue_platform_client(name)  # type: ignore[arg-type]
        self.cert = cert
        self.ssl = client_context(pki / "platform/ca.pem", cert,
                                  cert.with_suffix(".key") if cert else None)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def request(self, method: str, path: str, body: Any = None, *,
                      headers: dict[str, str] | None = None, data: bytes | None = None
                      ) -> tuple[int, Any]:
        async with aiohttp.ClientSession(headers=self.headers) as http, http.request(
            method, self.base + path, json=body if data is None else None, data=data,
            ssl=self.ssl, headers=headers,
        ) as resp:
            ctype = resp.headers.get("Content-Type", "")
            payload = await resp.json(content_type=None) if "json" in ctype else await resp.text()
            return resp.status, payload

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", path, body, **kw)

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, payload = await self.request(method, path, body)
        assert status < 300, (status, payload)
        return payload


@dataclass
class GatewayHandle:
    settings: Settings
    env: dict[str, str]
    gateway: Any = None  # the in-process Gateway, if any
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pki(self) -> Path:
        return self.settings.pki_dir

    @property
    def platform_url(self) -> str:
        return self.settings.platform_listen

    def client(self, name: str | None = "admin", token: str | None = None) -> PlatformClient:
        return PlatformClient(self.platform_url, self.pki, name, token)

    def adapter_listen(self, name: str) -> str:
        return self.settings.adapter_config(name)["listen"]


@asynccontextmanager
async def gateway_in_process(tmp: Path, **adapters: dict[str, Any]) -> AsyncIterator[GatewayHandle]:
    from gateway.runtime import running_gateway

    env = test_settings(tmp, **adapters)
    settings = load_settings(environ=env)
    async with running_gateway(settings) as gw:
        yield GatewayHandle(settings, env, gateway=gw)


async def wait_healthy(url: str, pki: Path, timeout: float = 30.0,
                       process: subprocess.Popen[bytes] | None = None) -> None:
    ssl_ctx = None
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as http:
        while asyncio.get_running_loop().time() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"gateway exited with {process.returncode}")
            try:
                if ssl_ctx is None and (pki / "platform/ca.pem").exists():
                    ssl_ctx = client_context(pki / "platform/ca.pem")
                if ssl_ctx is not None:
                    async with http.get(url + "/v1/health", ssl=ssl_ctx) as resp:
                        if resp.status == 200:
                            return
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"gateway at {url} did not become healthy")


class GatewayProcess:
    """`der-gateway serve` as a child process, as an operator would run it."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None,
                 **adapters: dict[str, Any]) -> None:
        self.tmp = tmp
        self.env = env or test_settings(tmp, **adapters)
        self.settings = load_settings(environ=self.env)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / "gateway.log"

    async def start(self, extra_env: dict[str, str] | None = None) -> GatewayHandle:
        env = {**os.environ, **self.env, **(extra_env or {})}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - a child we supervise
                [sys.executable, "-m", "gateway.cli", "serve"], cwd=self.tmp, env=env,
                stdout=log, stderr=subprocess.STDOUT)
        await wait_healthy(self.settings.platform_listen, self.settings.pki_dir,
                           process=self.process)
        return GatewayHandle(self.settings, self.env, process=self.process,
                             log_path=self.log_path)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        for _ in range(int(timeout * 10)):
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        else:
            self.process.kill()
        code = self.process.wait()
        self.process = None
        return code

    async def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        for _ in range(int(timeout * 10)):
            if self.process.poll() is not None:
                return self.process.returncode
            await asyncio.sleep(0.1)
        raise TimeoutError("gateway did not exit")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
