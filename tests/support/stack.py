"""Test support: run salespulse services as real processes and wait on conditions with deadlines."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from services.common.broker import broker_command, wait_for_port
from services.common.clock import Clock
from tests.support.clock import TEST_CLOCK, clock_env

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def _port_range() -> range:
    """Ports for test listeners: below the kernel's ephemeral range, so an outgoing connection (which takes
    its local port from that range) can never hold a port between its choice here and the service's bind;
    each pytest-xdist worker gets its own slice, so two workers never choose the same port."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    slot, slots = (int(worker) if worker.isdigit() else 0) % 8, 8
    size = (low - 10_000) // slots
    return range(10_000 + slot * size, 10_000 + (slot + 1) * size)


_PORTS = _port_range()
_next_port = _PORTS.start + (os.getpid() * 7919) % len(_PORTS)


def free_port() -> int:
    """A port nothing listens on now, outside the ephemeral range (see `_port_range`), never the same twice
    in one process until its slice wraps."""
    global _next_port
    for _ in range(len(_PORTS)):
        port = _next_port
        _next_port = _PORTS.start + (_next_port + 1 - _PORTS.start) % len(_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORTS}")


def start_broker_process(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(broker_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return proc


def postgres_available(url: str) -> bool:
    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(url, timeout=3)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def wait_until(probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.05, what: str = "") -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or probe}; last: {last!r}")


async def until(probe: Callable[[], Any], *, timeout: float = 30.0, what: str = "") -> Any:
    """`wait_until` inside an event loop: `probe` may return a coroutine, which is awaited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def stop_processes(procs: list[subprocess.Popen[bytes]], sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
    """Stop process groups as an operator does: `sig` to all at once, then SIGKILL to those still running
    `grace` seconds later (a process waiting for a broker that is gone may never finish its shutdown)."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        os.killpg(proc.pid, sig)
    deadline = time.monotonic() + grace
    for proc in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def child_of(parent: int, marker: str) -> int:
    """The pid of a child process of `parent` whose command line contains `marker`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and marker in cmdline:
            return int(entry.name)
    raise AssertionError(f"no child of {parent} runs {marker!r}")


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Stack:
    """ingest, scoring and api processes sharing one broker (own topic prefix) and one database, all reading
    `clock` (pinned: tests never depend on the day they run)."""

    bootstrap: str
    database_url: str
    data_dir: Path
    topic_prefix: str
    admin_key: str
    extra_env: dict[str, str] = field(default_factory=dict)
    clock: Clock = TEST_CLOCK
    services: dict[str, Service] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def env(self, **more: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "SALESPULSE_KAFKA_BOOTSTRAP": self.bootstrap,
                "SALESPULSE_DATABASE_URL": self.database_url,
                "SALESPULSE_DATA_DIR": str(self.data_dir),
                "SALESPULSE_TOPIC_PREFIX": self.topic_prefix,
                "SALESPULSE_ADMIN_KEY": self.admin_key,
                "SALESPULSE_BROKER_SESSION_TIMEOUT": "6",
                "SALESPULSE_BROKER_HEARTBEAT_INTERVAL": "1",
                "SALESPULSE_LOG_LEVEL": "WARNING",
                # Many stacks share one PostgreSQL (max_connections 100) while suites run two at a time.
                "SALESPULSE_DB_POOL_SIZE": "3",
                "SALESPULSE_DB_MAX_OVERFLOW": "5",
                "PYTHONUNBUFFERED": "1",
                **clock_env(self.clock),
            }
        )
        env.update(self.extra_env)
        env.update(more)
        return env

    @property
    def external_relay(self) -> bool:
        """Whether ingest leaves the relay to `salespulse relay` (SALESPULSE_RELAY=external)."""
        return self.env().get("SALESPULSE_RELAY") == "external"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def ingest(self) -> str:
        return f"http://127.0.0.1:{self.ports['ingest']}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.ports['api']}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def prepare(self) -> None:
        """Migrate the database and create the topics, as `salespulse up` does."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for command in ("migrate", "topics"):
            subprocess.run(
                [sys.executable, "-m", "services.cli.main", command],
                env=self.env(),
                check=True,
                cwd=ROOT,
                capture_output=True,
            )

    def start_service(self, name: str, *, instance: str | None = None, **env: str) -> Service:
        label = instance or name
        extra: dict[str, str] = dict(env)
        if name == "api":
            self.ports.setdefault(label, free_port())
            extra["SALESPULSE_API_PORT"] = str(self.ports[label])
        elif name == "ingest":
            self.ports.setdefault(label, free_port())
            extra["SALESPULSE_INGEST_PORT"] = str(self.ports[label])
            # Where an external relay (SALESPULSE_RELAY=external) listens for wake-ups: one per stack.
            extra["SALESPULSE_RELAY_PORT"] = str(self.ports.setdefault("relay", free_port()))
        elif name == "relay":
            extra["SALESPULSE_RELAY_PORT"] = str(self.ports.setdefault(label, free_port()))
        elif name == "scoring":
            self.ports.setdefault(label, free_port())
            extra["SALESPULSE_SCORING_WEB_PORT"] = str(self.ports[label])
        elif name == "notifier":
            self.ports.setdefault(label, free_port())
            extra["SALESPULSE_NOTIFIER_PORT"] = str(self.ports[label])
        log = self.data_dir / f"{label}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", name],
            env=self.env(**extra),
            cwd=ROOT,
            stdout=open(log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        service = Service(label, proc, log)
        self.services[label] = service
        return service

    def create_key(self, role: str, name: str | None = None, *scope: str) -> tuple[str, str]:
        """`salespulse keys create` as an operator runs it (`scope`: more options, e.g. "--boards", "floor"):
        the new key's (key_id, key)."""
        out = subprocess.run(
            [sys.executable, "-m", "services.cli.main", "keys", "create", "--role", role, "--name", name or role,
             *scope],
            env=self.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return fields["key_id"].strip(), fields["key"].strip()

    def wait_healthy(self, label: str, path: str, timeout: float = 60.0) -> None:
        url = f"http://127.0.0.1:{self.ports[label]}{path}"
        service = self.services[label]

        last: list[str] = []

        def probe() -> bool:
            if service.proc.poll() is not None:
                raise AssertionError(f"{label} exited ({service.proc.returncode}):\n{self.tail(label)}")
            answer = httpx.get(url, timeout=2)
            last[:] = [answer.text[:600]]
            return answer.status_code == 200

        try:
            wait_until(probe, timeout=timeout, what=f"{label} at {url}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its last answer: {last[0] if last else '(none)'}") from None

    def start(self) -> Stack:
        """Migrate, then start ingest, scoring and the gateway (and the relay, when it runs in its own process)."""
        self.prepare()
        self.start_service("ingest")
        if self.external_relay:
            self.start_service("relay")
        self.start_service("scoring")
        self.start_service("api")
        self.wait_healthy("ingest", "/v1/health")
        if self.external_relay:
            self.wait_healthy("relay", "/v1/health")
        self.wait_healthy("scoring", "/metrics")
        self.wait_healthy("api", "/v1/ready")
        return self

    def kill(self, label: str, sig: int = signal.SIGKILL) -> None:
        service = self.services.pop(label)
        if service.proc.poll() is None:
            os.killpg(service.proc.pid, sig)
            service.proc.wait(timeout=30)

    def tail(self, label: str, lines: int = 40) -> str:
        service = self.services.get(label)
        log = service.log if service else self.data_dir / f"{label}.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace: float = 15.0) -> None:
        """Stop every service (SIGTERM to all at once; SIGKILL to those still running after `grace` s)."""
        services = [self.services.pop(label) for label in list(self.services)]
        stop_processes([service.proc for service in services], grace=grace)


def random_admin_key() -> str:
    return "sp_test_" + secrets.token_hex(8)


UP_LISTENERS = ("api", "ingest", "relay", "notifier", "supervisor")
"""What `salespulse up` listens on besides the broker, each by its SALESPULSE_<NAME>_PORT: give every run its own."""


def up_ports(*more: str) -> dict[str, int]:
    """A free port for each listener of `salespulse up` (and `more`), by lower-case name; `up_port_env` turns them
    into its settings."""
    return {name: free_port() for name in (*UP_LISTENERS, *more)}


def up_port_env(ports: dict[str, int]) -> dict[str, str]:
    """SALESPULSE_<NAME>_PORT for each of `ports`."""
    return {f"SALESPULSE_{name.upper()}_PORT": str(port) for name, port in ports.items()}


def sqlite_stack(broker: str, tmp_path_factory: Any, name: str, *, clock: Clock = TEST_CLOCK, **env: str) -> Stack:
    """A Stack (not started) on the shared broker with its own SQLite database, data dir, topic prefix and
    admin key, for a module's or a session's fixture; `env` adds settings."""
    return Stack(
        clock=clock,
        bootstrap=broker,
        database_url=f"sqlite+aiosqlite:///{tmp_path_factory.mktemp(name) / f'{name}.db'}",
        data_dir=tmp_path_factory.mktemp(f"{name}data"),
        topic_prefix=f"{name}{uuid.uuid4().hex[:6]}.",
        admin_key=random_admin_key(),
        extra_env=env,
    )


def run_db(database_url: str, work: Callable[[Any], Any]) -> Any:
    """Run `await work(session)` against the stack's database from a synchronous test."""
    from services.common import db

    async def main() -> Any:
        engine = db.create_engine(database_url)
        try:
            async with db.sessionmaker(engine)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def ledger_count(database_url: str) -> int:
    from sqlalchemy import func, select

    from services.common.models import LedgerEntry

    async def count(session: Any) -> int:
        return int((await session.execute(select(func.count()).select_from(LedgerEntry))).scalar())

    return int(run_db(database_url, count))


def _admin_sql(admin_url: str, statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def create_postgres_database(admin_url: str, prefix: str) -> str:
    """A new, empty database on the server of `admin_url` (postgresql://…); returns its asyncpg URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin_sql(admin_url, f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


def drop_postgres_database(admin_url: str, url: str) -> None:
    _admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
