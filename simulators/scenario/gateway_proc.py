"""`der-gateway serve` as a child process for `simulate --start-gateway`: fresh data and PKI
under a work directory, free loopback ports, every adapter enabled."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from pki.tls import client_context


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Endpoints:
    platform: str
    ieee2030_5: str
    openadr3: str
    opcua: str
    pki: Path


def environment(work: Path, modbus: dict[str, Any] | None = None) -> tuple[dict[str, str],
                                                                           Endpoints]:
    ends = Endpoints(platform=f"https://127.0.0.1:{free_port()}",
                     ieee2030_5=f"https://127.0.0.1:{free_port()}",
                     openadr3=f"https://127.0.0.1:{free_port()}",
                     opcua=f"opc.tcp://127.0.0.1:{free_port()}", pki=work / "certs")
    env = {"DERGW_DATA_DIR": str(work / "var"), "DERGW_PKI_DIR": str(ends.pki),
           "DERGW_PLATFORM_LISTEN": ends.platform, "DERGW_DEV_MODE": "true",
           "DERGW_LOG_LEVEL": os.environ.get("BENCH_GATEWAY_LOG_LEVEL", "WARNING"),
           "DERGW_ADAPTERS__IEEE2030_5__LISTEN": ends.ieee2030_5,
           "DERGW_ADAPTERS__OPENADR3__LISTEN": ends.openadr3,
           "DERGW_ADAPTERS__OPCUA__LISTEN": ends.opcua}
    for key, value in (modbus or {}).items():
        env[f"DERGW_ADAPTERS__MODBUS__{key.upper()}"] = str(value)
    return env, ends


class GatewayChild:
    def __init__(self, work: Path, modbus: dict[str, Any] | None = None,
                 fresh: bool = True, extra_env: dict[str, str] | None = None,
                 workers: int = 1) -> None:
        work = work.resolve()  # the child runs in `work`: relative paths would nest
        if fresh and work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        self.work = work
        self.env, self.endpoints = environment(work, modbus)
        self.env.update(extra_env or {})
        self.log_path = work / "gateway.log"
        self.process: asyncio.subprocess.Process | None = None
        self.workers = workers

    async def start(self, wait_s: float = 60.0) -> Endpoints:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "serve", "--workers", str(self.workers),
                cwd=self.work, env={**os.environ, **self.env}, stdout=log,
                stderr=asyncio.subprocess.STDOUT)
        await self._healthy(wait_s)
        return self.endpoints

    async def _healthy(self, wait_s: float) -> None:
        assert self.process is not None
        ca = self.endpoints.pki / "platform/ca.pem"
        async with asyncio.timeout(wait_s), aiohttp.ClientSession() as http:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"gateway exited ({self.process.returncode}); see "
                                       f"{self.log_path}")
                if ca.exists() and self._banner_printed():
                    try:
                        async with http.get(self.endpoints.platform + "/v1/health",
                                            ssl=client_context(ca)) as resp:
                            if resp.status == 200:
                                return
                    except (aiohttp.ClientError, OSError):
                        pass
                await asyncio.sleep(0.2)

    def _banner_printed(self) -> bool:
        """The platform answers before the adapters are up; the banner comes after them
        (once per worker)."""
        try:
            return self.log_path.read_bytes().count(b"der-gateway is running") >= self.workers
        except OSError:
            return False

    def pids(self) -> list[int]:
        """The gateway's processes: the child and, with workers, every descendant."""
        if self.process is None:
            return []
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children.get(pid, [])
        return found

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by every gateway process."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def peak_rss_by_process_mb(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        out[pid] = int(line.split()[1]) / 1024.0
            except OSError:
                continue
        return out

    def peak_rss_mb(self) -> float | None:
        """The child's peak resident memory (Linux /proc VmHWM)."""
        if self.process is None:
            return None
        status = Path(f"/proc/{self.process.pid}/status")
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    def sample(self) -> dict[str, float]:
        """The child's resident memory (MB), open files and database size (MB) now."""
        if self.process is None:
            return {}
        pid = self.process.pid
        rss = 0.0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024.0
        files = sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
        db = sum(f.stat().st_size for f in (self.work / "var").glob("der-gateway.db*"))
        return {"rss_mb": round(rss, 1), "open_files": files, "db_mb": round(db / 2**20, 2)}

    async def stop(self, wait_s: float = 20.0) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            async with asyncio.timeout(wait_s):
                return await self.process.wait()
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()
