"""The four services as real processes (``python -m services.<name>``), on topics, consumer
groups and a database of their own, with any number of replicas per consumer service."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import aiohttp

from shared.settings import TOPIC_FIELDS, KafkaSettings
from tests.chaos.infra import REPO, free_port

WORKERS = ("ingestion", "storage", "linking")
SERVICES = (*WORKERS, "gateway")


class Services:
    """Processes of one run. ``replicas`` gives the count per service (default 1 each)."""

    def __init__(self, prefix: str, logs: pathlib.Path, *, bootstrap_servers: str, mongo_url: str,
                 replicas: dict[str, int] | None = None, extra_env: dict[str, str] | None = None) -> None:
        base = KafkaSettings(bootstrap_servers=bootstrap_servers)
        self.prefix = prefix
        self.kafka = base.model_copy(update={n: f"{prefix}.{getattr(base, n)}" for n in TOPIC_FIELDS})
        self.database = prefix.replace("-", "_").replace(".", "_")
        self.replicas = {name: 1 for name in SERVICES} | (replicas or {})
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.gateway_port = free_port()
        self.ops_ports = {(name, r): free_port() for name in SERVICES for r in range(self.replicas[name])}
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "KAZPOST_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers, "KAZPOST_MONGO_URL": mongo_url,
            "KAZPOST_LOG_LEVEL": "WARNING", "KAZPOST_LOG_FORMAT": "json",
            "KAZPOST_MONGO_DATABASE": self.database,
            # Production settings except shorter backoffs (the attempt budget stays the default).
            "KAZPOST_RETRY_INITIAL_BACKOFF_S": "0.1", "KAZPOST_RETRY_MAX_BACKOFF_S": "2",
            **{f"KAZPOST_KAFKA_{n.upper()}": getattr(self.kafka, n) for n in TOPIC_FIELDS},
            **{f"KAZPOST_{s.upper()}_GROUP_ID": f"{prefix}-{s}" for s in WORKERS},
            "KAZPOST_GATEWAY_PORT": str(self.gateway_port),
            "KAZPOST_GATEWAY_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.gateway_port}",
            "KAZPOST_GATEWAY_LINKING_URL": f"http://127.0.0.1:{self.ops_ports[('linking', 0)]}",
            **(extra_env or {}),
        }
        self.procs: dict[tuple[str, int], subprocess.Popen] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def instance_env(self, name: str, replica: int) -> dict[str, str]:
        env = dict(self.env)
        env[f"KAZPOST_{name.upper()}_OPS_PORT"] = str(self.ops_ports[(name, replica)])
        if name == "linking":
            env["KAZPOST_LINKING_SNAPSHOT_PATH"] = str(self.logs / f"linking-{replica}.snapshot")
        return env

    def start(self, name: str, replica: int = 0) -> None:
        log = open(self.logs / f"{name}-{replica}.log", "ab")
        self.procs[(name, replica)] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"], env=self.instance_env(name, replica), cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def start_all(self) -> None:
        for name in SERVICES:
            for r in range(self.replicas[name]):
                self.start(name, r)

    def kill(self, name: str, replica: int = 0) -> None:
        """SIGKILL: no shutdown code runs, nothing is committed or flushed."""
        proc = self.procs[(name, replica)]
        proc.kill()
        proc.wait()

    def alive(self) -> dict[str, bool]:
        return {f"{n}-{r}": p.poll() is None for (n, r), p in self.procs.items()}

    def stop_all(self, timeout: float = 30) -> dict[str, int | None]:
        """SIGTERM every running process, wait; returns their exit codes (None: had to be killed)."""
        running = {key: proc for key, proc in self.procs.items() if proc.poll() is None}
        for proc in running.values():
            proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + timeout
        for (name, r), proc in running.items():
            try:
                codes[f"{name}-{r}"] = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes[f"{name}-{r}"] = None
        return codes

    def ready_urls(self) -> list[str]:
        urls = [f"{self.base_url}/readyz"]
        for (name, r), port in self.ops_ports.items():
            if name != "gateway" and (name, r) in self.procs and self.procs[(name, r)].poll() is None:
                urls.append(f"http://127.0.0.1:{port}/readyz")
        return urls

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = 120) -> None:
        import asyncio

        deadline = time.monotonic() + timeout
        pending = self.ready_urls()
        while pending:
            for (name, r), proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name}-{r} exited with {proc.returncode} during start-up; "
                                       f"see {self.logs / f'{name}-{r}.log'}")
            still = []
            for url in pending:
                try:
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                        if r.status != 200:
                            still.append(url)
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    still.append(url)
            pending = still
            if pending:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not ready after {timeout}s: {pending}")
                await asyncio.sleep(0.3)
