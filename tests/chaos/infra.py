"""The infrastructure under test: one Kafka broker and one database (FerretDB on PostgreSQL),
run by ``deploy/local/stack.sh``, which the fault suite may stop, kill and restart."""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass

REPO = pathlib.Path(__file__).resolve().parents[2]
STACK_SH = REPO / "deploy" / "local" / "stack.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Infra:
    state: pathlib.Path
    kafka_port: int
    controller_port: int
    pg_port: int
    mongo_port: int
    python: str = sys.executable

    @classmethod
    def from_env(cls) -> "Infra":
        """The stack the environment points at (what ``stack.sh env`` / ``make test`` export)."""
        env = os.environ
        names = ("KAZPOST_STATE", "KAZPOST_KAFKA_PORT", "KAZPOST_KAFKA_CONTROLLER_PORT", "KAZPOST_PG_PORT", "KAZPOST_MONGO_PORT")
        missing = [n for n in names if not env.get(n)]
        if missing:  # never fall back to the defaults: the suite restarts what it is pointed at
            raise SystemExit(f"set {', '.join(missing)} (e.g. eval \"$(deploy/local/stack.sh env)\"), or run `make chaos`")
        return cls(state=pathlib.Path(env["KAZPOST_STATE"]), kafka_port=int(env["KAZPOST_KAFKA_PORT"]),
                   controller_port=int(env["KAZPOST_KAFKA_CONTROLLER_PORT"]), pg_port=int(env["KAZPOST_PG_PORT"]),
                   mongo_port=int(env["KAZPOST_MONGO_PORT"]))

    @classmethod
    def fresh(cls, state: pathlib.Path) -> "Infra":
        """A new stack of its own on free ports (started with :meth:`start`)."""
        return cls(state=state, kafka_port=free_port(), controller_port=free_port(), pg_port=free_port(),
                   mongo_port=free_port())

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def mongo_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}/"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAZPOST_STATE": str(self.state), "KAZPOST_KAFKA_PORT": str(self.kafka_port),
            "KAZPOST_KAFKA_CONTROLLER_PORT": str(self.controller_port), "KAZPOST_PG_PORT": str(self.pg_port),
            "KAZPOST_MONGO_PORT": str(self.mongo_port), "PYTHON": self.python,
        }

    def stack(self, *args: str, check: bool = True) -> str:
        """Run ``stack.sh ARGS`` against this stack; returns its log lines (stderr)."""
        proc = subprocess.run(["bash", str(STACK_SH), *args], env=self.env(), capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise RuntimeError(f"stack.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc.stderr

    async def astack(self, *args: str) -> str:
        return await asyncio.to_thread(self.stack, *args)

    def start(self) -> None:
        self.stack("start")

    def stop(self, *, remove: bool = False) -> None:
        self.stack("stop", check=False)
        if remove:
            shutil.rmtree(self.state, ignore_errors=True)

    async def restart_kafka(self, *, kill: bool = False, down: float = 0) -> None:
        await self.astack("restart-kafka", *(["--kill"] if kill else []), "--down", str(down))

    async def restart_db(self, *, kill: bool = False, down: float = 0, ferretdb_only: bool = False) -> None:
        await self.astack("restart-db", *(["--kill"] if kill else []), *(["--ferretdb-only"] if ferretdb_only else []),
                          "--down", str(down))

    async def gin_indexes(self, database: str) -> None:
        await self.astack("gin-indexes-db", database)
