"""`salespulse up`: the whole stack on one machine — broker, ingest, scoring, gateway — as supervised
processes with prefixed logs, health waits, and a clean shutdown on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import stat
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.cli.renewal import BrokerWatch
from services.cli.supervisor import GaveUp, Process, Supervised, Supervisor
from services.common import db
from services.common.auth import Role, Scope
from services.common.background import cancel_and_wait
from services.common.broker import broker_command, ensure_topics, port_is_free, wait_for_port
from services.common.checkpoints import replay_start_for_empty_broker
from services.common.settings import Settings, get_settings
from services.ingest.relay import reset_relay_cursor

EMBEDDED_SESSION_TIMEOUT = 10.0
"""Consumer-group session timeout (seconds) of `up`'s children on the embedded broker, unless set."""

COLORS = {
    "broker": "35", "ingest": "36", "relay": "96", "scoring": "33", "api": "32", "notifier": "31", "demo": "34"
}


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    pump: asyncio.Task[None] | None = field(default=None, repr=False)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20), repr=False)


class StartupError(Exception):
    pass


def read_secret(path: Path) -> str | None:
    """A key kept in the data directory, or None when there is none. One that others may read is refused:
    it may have been copied already, and it would go on being exposed."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise StartupError(
            f"{path} can be read by other users (mode {stat.S_IMODE(mode):04o}); a key file must be private. "
            f"Run `chmod 600 {path}` (and consider revoking the key if others could read it), then start again."
        )
    return path.read_text().strip()


def write_secret(path: Path, secret: str) -> None:
    """Write a key file that is private from its first byte (created 0600 under a temporary name, then renamed
    into place), so it is never briefly readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def admin_key(settings: Settings) -> str:
    """SALESPULSE_ADMIN_KEY, or a key generated once and kept in the data directory."""
    if settings.admin_key:
        return settings.admin_key
    path = settings.data_dir / "admin.key"
    key = read_secret(path)
    if key is None:
        key = "sp_" + secrets.token_urlsafe(32)
        write_secret(path, key)
    return key


async def screens_key(settings: Settings, file: str, role: Role, name: str, scope: Scope | None = None) -> str:
    """A key for the screens' URLs in the banner: generated once, kept in the data directory (like the admin
    key), registered again if the database no longer knows it. Never the admin key: screen URLs are shared and
    shown on TVs."""
    from services.common.auth import KeyStore, create_key

    path = settings.data_dir / file
    key = read_secret(path)
    engine = db.create_engine(settings.db_url)
    try:
        sessions = db.sessionmaker(engine)
        principal = await KeyStore(sessions).lookup(key) if key else None
        if principal is None or principal.role != role or principal.scope != (scope or Scope()):
            _, key = await create_key(sessions, role=role, name=name, scope=scope)
            write_secret(path, key)
    finally:
        await engine.dispose()
    assert key is not None
    return key


def check_ports(settings: Settings) -> None:
    wanted = {
        "SALESPULSE_API_PORT": settings.api_port,
        "SALESPULSE_INGEST_PORT": settings.ingest_port,
        "SALESPULSE_RELAY_PORT": settings.relay_port,
        "SALESPULSE_NOTIFIER_PORT": settings.notifier_port,
        "SALESPULSE_SUPERVISOR_PORT": settings.supervisor_port,
    }
    if settings.embedded_broker:
        wanted["SALESPULSE_BROKER_PORT"] = settings.broker_port
    taken = [f"{name}={port}" for name, port in wanted.items() if not port_is_free(port, settings.host)]
    if taken:
        raise StartupError(
            "these ports are already in use: "
            + ", ".join(taken)
            + ". Stop whatever holds them, or choose other ports with those variables."
        )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prefix(name: str) -> bytes:
    color = COLORS.get(name, "0")
    if sys.stdout.isatty():
        return f"\x1b[{color}m{name:>8} |\x1b[0m ".encode()
    return f"{name:>8} | ".encode()


async def _pump(name: str, stream: asyncio.StreamReader, tail: deque[str] | None = None) -> None:
    prefix = _prefix(name)
    out = sys.stdout.buffer
    while line := await stream.readline():
        out.write(prefix + line)
        out.flush()
        if tail is not None:
            tail.append(line.decode(errors="replace").rstrip())


async def _spawn(child: Child) -> None:
    child.proc = await asyncio.create_subprocess_exec(
        *child.argv,
        env=child.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
    )
    assert child.proc.stdout is not None
    child.pump = asyncio.create_task(_pump(child.name, child.proc.stdout, child.tail))


async def _wait_http(url: str, child: Child, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if child.proc is not None and child.proc.returncode is not None:
                raise StartupError(f"{child.name} exited with code {child.proc.returncode} while starting")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise StartupError(f"{child.name} did not become healthy at {url} within {timeout:.0f} s")


async def _wait_ready(url: str, child: Child, stall: float = 90.0) -> None:
    """Wait for the gateway's /v1/ready. While the pipeline catches up with the ledger, say how far it is
    (every 5 s); give up only when nothing moved for `stall` seconds."""
    moved_at = time.monotonic()
    said_at = 0.0
    last_behind: int | None = None
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() - moved_at < stall:
            if child.proc is not None and child.proc.returncode is not None:
                raise StartupError(f"{child.name} exited with code {child.proc.returncode} while starting")
            try:
                answer = await client.get(url)
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
                continue
            if answer.status_code == 200:
                return
            progress = answer.json().get("progress") or {}
            behind = progress.get("behind")
            if behind != last_behind:
                moved_at, last_behind = time.monotonic(), behind
            if behind and time.monotonic() - said_at >= 5.0:
                eta = progress.get("eta_seconds")
                print(f"catching up with the ledger: {behind:,} events behind ({progress.get('stage')})"
                      + (f", about {eta:.0f} s to go" if eta else ""), flush=True)
                said_at = time.monotonic()
            await asyncio.sleep(0.2)
    raise StartupError(f"{child.name} was not ready at {url}: no progress for {stall:.0f} s")


async def _stop(children: list[Child]) -> None:
    for child in reversed(children):
        proc = child.proc
        if proc is None or proc.returncode is not None:
            continue
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if child.pump:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(child.pump, timeout=2)


async def run_stack(settings: Settings, *, demo: bool, rate: float, stop: asyncio.Event) -> None:
    check_ports(settings)
    key = admin_key(settings)
    await asyncio.to_thread(db.migrate, settings.db_url)
    env = dict(os.environ)
    env.update(
        {
            "SALESPULSE_ADMIN_KEY": key,
            "SALESPULSE_DATA_DIR": str(settings.data_dir.resolve()),
            "SALESPULSE_SCORING_WEB_PORT": str(_free_port()),
            "PYTHONUNBUFFERED": "1",
            # The relay runs in its own process, so publishing never competes with ingest's requests for an
            # event loop or an interpreter; ingest wakes it after each commit.
            "SALESPULSE_RELAY": "external",
        }
    )
    python = [sys.executable, "-m", "services.cli.main"]
    children: list[Child] = []
    try:
        if settings.embedded_broker:
            broker = Child("broker", broker_command(settings.broker_port, settings.host), env)
            children.append(broker)
            await _spawn(broker)
            await asyncio.to_thread(wait_for_port, settings.broker_port, settings.host)
            env["SALESPULSE_KAFKA_BOOTSTRAP"] = settings.bootstrap
            # The embedded broker holds a consumer group's first join for half the session timeout (measured:
            # 15 s at the default 30 s, 5 s at 10 s), which every start and every restart of a worker waits out.
            env.setdefault("SALESPULSE_BROKER_SESSION_TIMEOUT", str(EMBEDDED_SESSION_TIMEOUT))
            # The embedded broker keeps nothing on disk: rebuild every topic from the ledger after the scoring
            # checkpoint (scoring restores its tables from the checkpoint, the gateway from scoring's snapshots).
            await reset_relay_cursor(settings, await replay_start_for_empty_broker(settings))
        await ensure_topics(settings)
        ingest = Child("ingest", [*python, "ingest"], env)
        relay = Child("relay", [*python, "relay"], env)
        scoring = Child("scoring", [*python, "scoring"], env)
        api = Child("api", [*python, "api"], env)
        notifier = Child("notifier", [*python, "notifier"], env)
        for child in (ingest, relay, scoring, api, notifier):
            children.append(child)
            await _spawn(child)
        base = f"http://{settings.host}"
        await _wait_http(f"{base}:{settings.ingest_port}/v1/health", ingest)
        await _wait_http(f"{base}:{settings.relay_port}/v1/health", relay)
        await _wait_http(f"{base}:{env['SALESPULSE_SCORING_WEB_PORT']}/metrics", scoring)
        await _wait_ready(f"{base}:{settings.api_port}/v1/ready", api)
        await _wait_http(f"{base}:{settings.notifier_port}/v1/health", notifier)
        # The data dir's generated key is shown so the demo can be tried; a key from the environment is not echoed.
        kept = settings.data_dir / "admin.key"
        shown = "from SALESPULSE_ADMIN_KEY" if settings.admin_key else f"{key} (kept in {kept})"
        viewer = await screens_key(settings, "screens.key", "viewer", "screens index (salespulse up)")
        tv = await screens_key(settings, "tv.key", "screen", "TV board floor (salespulse up)",
                               Scope(boards=frozenset({"floor"})))
        screens = f"{base}:{settings.api_port}/screens"
        later = "" if demo else "   (once a board `floor` exists)"
        print(
            "\nsalespulse is up\n"
            f"  console       {base}:{settings.api_port}/console/   (sales ops: sign in with the admin key below)\n"
            f"  screens       {screens}/?token={viewer}\n"
            f"  TV board      {screens}/board/floor?token={tv}{later}\n"
            f"  API gateway   {base}:{settings.api_port}   (docs: {base}:{settings.api_port}/docs)\n"
            f"  ingest        {base}:{settings.ingest_port}/v1/events\n"
            f"  relay         {base}:{settings.relay_port}/metrics\n"
            f"  notifier      {base}:{settings.notifier_port}/metrics\n"
            f"  broker        {settings.bootstrap}{' (embedded)' if settings.embedded_broker else ''}\n"
            f"  database      {settings.db_url.split('@')[-1]}\n"
            f"  admin key     {shown}\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        feeder: asyncio.Task[None] | None = None
        if demo:
            feeder = asyncio.create_task(_demo(settings, key, rate, stop))
        supervisor = _supervise(settings, children)
        supervisor.serve_metrics(settings.supervisor_port, settings.host)
        watch: asyncio.Task[None] | None = None
        if settings.embedded_broker:
            async def ready() -> None:
                with contextlib.suppress(StartupError):  # the supervisor deals with a gateway that does not start
                    await _wait_ready(f"{base}:{settings.api_port}/v1/ready", api)

            watch = asyncio.create_task(BrokerWatch(settings, supervisor.renew, ready).run(stop))
        try:
            await supervisor.run(stop)
        except GaveUp as exc:
            print(f"salespulse: {exc}\nsalespulse: shutting down", file=sys.stderr, flush=True)
            raise StartupError(str(exc).splitlines()[0]) from None
        finally:
            stop.set()
            await cancel_and_wait([task for task in (feeder, watch) if task])
    finally:
        await _stop(children)


def _supervise(settings: Settings, children: list[Child]) -> Supervisor:
    """A Supervisor over the running children; the broker's repair replays the ledger into new topics."""
    by_name = {child.name: child for child in children}

    def starter(child: Child) -> Callable[[], Awaitable[Process]]:
        async def start() -> Process:
            await _spawn(child)
            assert child.proc is not None
            return child.proc

        return start

    supervised = [Supervised(child.name, starter(child), proc=child.proc, started_at=time.monotonic(),
                             tail=child.tail) for child in children]
    # Ingest only writes the ledger (the relay, in its own process, publishes it), so it keeps answering while
    # the broker is repaired or renewed: what it accepts meanwhile is replayed with the rest.
    services = [name for name in ("relay", "scoring", "api", "notifier") if name in by_name]

    async def repair() -> None:
        await supervisor.stop_children([*reversed(services), "broker"])
        await supervisor.start(supervisor.children["broker"])
        await asyncio.to_thread(wait_for_port, settings.broker_port, settings.host)
        await reset_relay_cursor(settings, await replay_start_for_empty_broker(settings))
        await ensure_topics(settings)
        for name in services:
            await supervisor.start(supervisor.children[name])

    supervisor = Supervisor(supervised, broker="broker" if "broker" in by_name else None, repair=repair)
    return supervisor


async def _demo(settings: Settings, key: str, rate: float, stop: asyncio.Event) -> None:
    from services.demo.floor import run_floor, seed_config

    prefix = _prefix("demo").decode()

    def log(message: str) -> None:
        print(prefix + message, flush=True)

    base = f"http://{settings.host}"
    await seed_config(f"{base}:{settings.api_port}", key, clock=settings.clock)
    log("demo roster, plans and boards loaded")
    await run_floor(f"{base}:{settings.ingest_port}", key, rate=rate, stop=stop, log=log, clock=settings.clock)


def up(*, demo: bool, rate: float) -> int:
    settings = get_settings()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_stack(settings, demo=demo, rate=rate, stop=stop)

    try:
        asyncio.run(main())
    except StartupError as exc:
        print(f"salespulse: {exc}", file=sys.stderr)
        return 2
    print("salespulse stopped")
    return 0


__all__ = ["admin_key", "run_stack", "up"]
