"""The supervisor of `salespulse up`: a child that exits is started again, so one crash does not blank every
screen.

- A service (ingest, scoring, gateway, notifier) that exits is restarted after a back-off (1 s, doubling up to
  30 s; back to 1 s once it has run for a minute).
- The embedded broker keeps everything in memory: when it exits, its topics are gone, so the supervisor runs
  the repair an operator would — stop the services, start the broker, recreate the topics, replay the ledger
  into them (relay cursor back to 0) and start the services, which rebuild scoring's tables and the read
  models from the replay. Screens show "reconnecting" meanwhile, then the same numbers as before.
- A child that keeps failing at start (`GIVE_UP_AFTER` exits in a row, each within `EARLY_EXIT` seconds of
  its start) stops the stack with a message that names it, its exit code and its last lines.
- Each restart is logged and counted: `salespulse_supervisor_restarts_total{child}` on the supervisor's
  /metrics (SALESPULSE_SUPERVISOR_PORT).
- A planned renewal of the embedded broker (`renew`, asked for by services/cli/renewal.py when the broker has
  grown) runs the same repair between two looks at the children, so no stopped child is taken for a crash;
  counted in `salespulse_supervisor_broker_renewals_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from services.common.background import wait_set
from services.common.backoff import Backoff

log = logging.getLogger("salespulse.supervisor")

EARLY_EXIT = 10.0
"""Seconds: a child that exits sooner after its start counts as failing at start."""

GIVE_UP_AFTER = 5
"""Exits in a row, each early, after which the stack stops instead of trying again."""

HEALTHY_AFTER = 60.0
"""Seconds of running after which a child's back-off starts again from its first step."""


class Process(Protocol):
    @property
    def returncode(self) -> int | None: ...
    @property
    def pid(self) -> int: ...

    async def wait(self) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def kill(self) -> None: ...


@dataclass
class Supervised:
    """One child: how to start it (and wait until it serves), and what the supervisor knows about it."""

    name: str
    start: Callable[[], Awaitable[Process]]
    proc: Process | None = None
    started_at: float = 0.0
    early_exits: int = 0
    backoff: Backoff = field(default_factory=lambda: Backoff(first=1.0, most=30.0, jitter=0.2))
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))


class GaveUp(Exception):
    """A child kept failing at start."""


class Supervisor:
    def __init__(
        self,
        children: Sequence[Supervised],
        *,
        broker: str | None = None,
        repair: Callable[[], Awaitable[None]] | None = None,
        registry: CollectorRegistry | None = None,
        out: Callable[[str], None] | None = None,
    ) -> None:
        self.children = {child.name: child for child in children}
        self.broker = broker
        self._repair = repair
        self.registry = registry or CollectorRegistry()
        self.restarts = Counter("salespulse_supervisor_restarts", "Children of `salespulse up` started again after "
                                "they exited, by child", ["child"], registry=self.registry)
        for name in self.children:
            self.restarts.labels(name)
        self.renewals = Counter("salespulse_supervisor_broker_renewals", "Planned renewals of the embedded broker "
                                "(its topics replayed into a new one to keep its fetches cheap)",
                                registry=self.registry)
        self.renewal_seconds = Gauge("salespulse_supervisor_broker_renewal_seconds", "How long the last renewal of "
                                     "the embedded broker took, services stopped to services started again",
                                     registry=self.registry)
        self._renewals: asyncio.Queue[tuple[str, asyncio.Future[None]]] = asyncio.Queue()
        self._out = out or (lambda line: print(line, file=sys.stderr, flush=True))

    def serve_metrics(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)

    async def run(self, stop: asyncio.Event) -> None:
        """Watch every child until `stop` is set; restart what exits. Raises GaveUp on a crash loop."""
        stopper = asyncio.create_task(stop.wait())
        renewal = asyncio.create_task(self._renewals.get())
        try:
            while not stop.is_set():
                watchers = {asyncio.create_task(child.proc.wait()): child
                            for child in self.children.values() if child.proc is not None}
                done, _ = await asyncio.wait([stopper, renewal, *watchers], return_when=asyncio.FIRST_COMPLETED)
                for task in watchers:
                    task.cancel()
                if stop.is_set():
                    return
                exited = [child for task, child in watchers.items() if task in done]
                for child in exited:
                    await self._restart(child, stop)
                if renewal in done:
                    reason, answered = renewal.result()
                    renewal = asyncio.create_task(self._renewals.get())
                    try:
                        await self._renew(reason)
                    except BaseException as exc:
                        answered.set_exception(exc)
                        raise
                    answered.set_result(None)
        finally:
            stopper.cancel()
            renewal.cancel()

    async def renew(self, reason: str) -> None:
        """Renew the embedded broker (the repair, planned); returns once the services are started again."""
        if self.broker is None or self._repair is None:
            raise RuntimeError("no embedded broker to renew")
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._renewals.put((reason, answered))
        await answered

    async def _renew(self, reason: str) -> None:
        assert self._repair is not None
        started = time.monotonic()
        self._out(f"salespulse: renewing the embedded broker ({reason}); ingest keeps accepting events, screens "
                  "reconnect once the services are back")
        await self._repair()
        took = time.monotonic() - started
        self.renewals.inc()
        self.renewal_seconds.set(took)
        self._out(f"salespulse: the embedded broker was renewed in {took:.1f} s; the services replay what the last "
                  "checkpoint does not hold")

    async def _restart(self, child: Supervised, stop: asyncio.Event) -> None:
        assert child.proc is not None
        code = child.proc.returncode
        ran = time.monotonic() - child.started_at
        if ran < EARLY_EXIT:
            child.early_exits += 1
        else:
            child.early_exits = 0
        if ran >= HEALTHY_AFTER:
            child.backoff.reset()
        if child.early_exits >= GIVE_UP_AFTER:
            last = "\n".join(child.tail) or "(no output)"
            raise GaveUp(f"{child.name} keeps failing at start (exit code {code}, {child.early_exits} times in a "
                         f"row within {EARLY_EXIT:.0f} s of starting); its last lines:\n{last}")
        delay = child.backoff.next()
        self._out(f"salespulse: {child.name} exited (code {code}) after {ran:.0f} s; "
                  f"starting it again in {delay:.1f} s")
        if await wait_set(stop, delay):
            return
        self.restarts.labels(child.name).inc()
        if child.name == self.broker and self._repair is not None:
            self._out("salespulse: the embedded broker lost its topics; replaying the ledger into new ones")
            await self._repair()
            self._out("salespulse: repaired; every service restarted on the replayed topics")
            return
        await self.start(child)

    async def start(self, child: Supervised) -> None:
        child.proc = await child.start()
        child.started_at = time.monotonic()

    async def stop_children(self, names: Sequence[str], grace: float = 10.0) -> None:
        """SIGTERM each (in the order given), SIGKILL what is still running after `grace` seconds."""
        for name in names:
            proc = self.children[name].proc
            if proc is None or proc.returncode is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
