"""The WebSocket hub: each screen gets its own sender task and a bounded mailbox in which a newer
snapshot replaces an unsent older one, so a slow screen never stalls the others; a screen that stays
stuck past a limit is disconnected with a reason."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections import defaultdict, deque
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.common.buckets import Bucket

log = logging.getLogger("salespulse.api.hub")

CLOSE_TOO_SLOW = 4408
CLOSE_AT_CAPACITY = 1013  # "try again later"
CLOSE_REVOKED = 4401
CLOSE_POLICY = 1008  # "policy violation"
# Screens only listen. uvicorn closes a connection that sends a bigger message with 1009 (ws_max_size);
# a screen that keeps sending small ones is closed once it exceeds a burst and a steady rate.
MAX_SCREEN_MESSAGE = 4096
FLOOD_BURST = 50
FLOOD_RATE = 10.0


class HubMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge(
            "salespulse_ws_connected_clients", "Connected WebSocket screens by channel", ["channel"], registry=registry
        )
        self.sent = Counter("salespulse_ws_messages_sent_total", "Messages written to screens", ["channel"],
                            registry=registry)
        self.coalesced = Counter(
            "salespulse_ws_messages_coalesced_total",
            "Updates replaced by a newer one before being sent, or skipped as unchanged",
            ["channel"],
            registry=registry,
        )
        self.dropped = Counter(
            "salespulse_ws_messages_dropped_total", "One-off messages dropped because a screen's queue was full",
            ["channel"], registry=registry,
        )
        self.disconnected_slow = Counter(
            "salespulse_ws_disconnected_slow_total", "Screens disconnected for staying behind", ["channel"],
            registry=registry,
        )
        self.rejected = Counter(
            "salespulse_ws_rejected_total", "Connections refused at the connection limit", registry=registry
        )
        self.flooded = Counter(
            "salespulse_ws_disconnected_flooding_total", "Screens disconnected for sending too many messages",
            ["channel"], registry=registry,
        )
        self.event_to_screen = Histogram(
            "salespulse_event_to_screen_seconds",
            "From an event's acceptance by ingest to its effect being written to a screen",
            ["channel"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )


def _kind_of(channel: str) -> str:
    return channel.split(":", 1)[0]


class Screen:
    """One connected WebSocket: a latest-wins slot per message kind plus a short queue of one-off events.

    An idle screen owns no task: a sender task exists only while there is something to send, which keeps
    ten thousand idle screens cheap."""

    __slots__ = ("ws", "channel", "kind", "metrics", "latest", "events", "max_events", "send_timeout", "closed",
                 "sender", "key_hash")

    def __init__(self, ws: WebSocket, channel: str, metrics: HubMetrics, *, max_events: int, send_timeout: float):
        self.ws = ws
        self.channel = channel
        self.kind = _kind_of(channel)
        self.metrics = metrics
        # Payloads are the one JSON text of a message, shared by every screen it goes to (encoded once).
        self.latest: dict[str, tuple[str, int]] = {}
        self.events: deque[tuple[str, int]] | None = None
        self.max_events = max_events
        self.send_timeout = send_timeout
        self.closed = False
        self.sender: asyncio.Task[None] | None = None
        self.key_hash = ""

    def offer_state(self, kind: str, payload: str, accepted_ms: int = 0) -> None:
        if kind in self.latest:
            self.metrics.coalesced.labels(self.kind).inc()
        self.latest[kind] = (payload, accepted_ms)
        self._kick()

    def offer_event(self, payload: str, accepted_ms: int = 0) -> None:
        if self.events is None:
            self.events = deque()
        if len(self.events) >= self.max_events:
            self.metrics.dropped.labels(self.kind).inc()
            return
        self.events.append((payload, accepted_ms))
        self._kick()

    def _kick(self) -> None:
        if self.sender is None and not self.closed:
            self.sender = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Send whatever is pending; give up on a screen stuck past the limit."""
        try:
            while (self.latest or self.events) and not self.closed:
                if self.events:
                    payload, accepted_ms = self.events.popleft()
                else:
                    kind = next(iter(self.latest))
                    payload, accepted_ms = self.latest.pop(kind)
                try:
                    async with asyncio.timeout(self.send_timeout):
                        await self.ws.send_text(payload)
                except TimeoutError:
                    self.metrics.disconnected_slow.labels(self.kind).inc()
                    log.info("disconnecting a %s screen that stayed behind", self.kind)
                    await self.close(CLOSE_TOO_SLOW, "too slow: this screen did not read its updates")
                    return
                except Exception:  # noqa: BLE001  (the socket went away; the receive side cleans up)
                    self.closed = True
                    return
                self.metrics.sent.labels(self.kind).inc()
                if accepted_ms:
                    self.metrics.event_to_screen.labels(self.kind).observe(max(0.0, time.time() - accepted_ms / 1000))
        finally:
            self.sender = None

    async def close(self, code: int, reason: str) -> None:
        self.closed = True
        try:
            await asyncio.wait_for(self.ws.close(code=code, reason=reason), 2.0)
        except Exception:  # noqa: BLE001  (already gone)
            pass


class Hub:
    def __init__(
        self, registry: CollectorRegistry, *, max_connections: int = 20_000, send_timeout: float = 10.0,
        max_events: int = 100, max_per_key: int = 2_000,
    ) -> None:
        self.screens: dict[str, set[Screen]] = defaultdict(set)
        self.metrics = HubMetrics(registry)
        self.max_connections = max_connections
        self.max_per_key = max_per_key
        self._per_key: collections.Counter[str] = collections.Counter()
        self.send_timeout = send_timeout
        self.max_events = max_events
        self.flood = Bucket(FLOOD_RATE, FLOOD_BURST, max_entries=max(100_000, 2 * max_connections))
        """What each screen may send: FLOOD_BURST messages at once, FLOOD_RATE a second after (screens listen)."""
        self._count = 0

    def count(self) -> int:
        return self._count

    def watching(self, channel: str) -> bool:
        return bool(self.screens.get(channel))

    def channels(self, prefix: str) -> list[str]:
        return [c for c, s in self.screens.items() if s and c.startswith(prefix)]

    def metrics_coalesced(self, kind: str = "board") -> None:
        self.metrics.coalesced.labels(kind).inc()

    def publish_state(self, channel: str, kind: str, message: dict[str, Any], accepted_ms: int = 0) -> None:
        screens = self.screens.get(channel)
        if not screens:
            return
        payload = orjson.dumps(message).decode()  # once per message, not per screen
        for screen in screens:
            screen.offer_state(kind, payload, accepted_ms)

    def publish_event(self, channel: str, message: dict[str, Any], accepted_ms: int = 0) -> None:
        screens = self.screens.get(channel)
        if not screens:
            return
        payload = orjson.dumps(message).decode()
        for screen in screens:
            screen.offer_event(payload, accepted_ms)

    async def close_where(self, predicate: Any, code: int, reason: str) -> int:
        """Close every screen for which predicate(screen) is true (e.g. opened with a revoked key)."""
        doomed = [s for screens in self.screens.values() for s in screens if predicate(s)]
        for screen in doomed:
            await screen.close(code, reason)
        return len(doomed)

    async def serve(self, ws: WebSocket, channel: str, first: dict[str, Any], *, key_hash: str = "") -> None:
        """Run one screen: send `first`, then everything published on `channel`, until it disconnects."""
        if self._count >= self.max_connections:
            self.metrics.rejected.inc()
            reason = f"at the connection limit ({self.max_connections}); retry later"
            await ws.close(code=CLOSE_AT_CAPACITY, reason=reason)
            return
        if self._per_key[key_hash] >= self.max_per_key:
            self.metrics.rejected.inc()
            reason = f"this key already holds {self.max_per_key:,} screens here (SALESPULSE_WS_MAX_PER_KEY)"
            await ws.close(code=CLOSE_AT_CAPACITY, reason=reason)
            return
        screen = Screen(ws, channel, self.metrics, max_events=self.max_events, send_timeout=self.send_timeout)
        screen.key_hash = key_hash
        screen.offer_state(str(first.get("type")), orjson.dumps(first).decode())
        self.screens[channel].add(screen)
        self._count += 1
        self._per_key[key_hash] += 1
        self.metrics.connected.labels(screen.kind).inc()
        flood_key = f"{id(screen):x}"
        try:
            while not screen.closed:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if self.flood.acquire(flood_key):
                    self.metrics.flooded.labels(screen.kind).inc()
                    reason = f"screens only listen; this one sent more than {FLOOD_RATE:g} messages a second"
                    await screen.close(CLOSE_POLICY, reason)
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            screen.closed = True
            self.flood.forget(flood_key)
            self._count -= 1
            self._per_key[key_hash] -= 1
            if not self._per_key[key_hash]:
                del self._per_key[key_hash]
            self.metrics.connected.labels(screen.kind).dec()
            self.screens[channel].discard(screen)
            if not self.screens[channel]:
                del self.screens[channel]
            sender = screen.sender
            if sender is not None:
                sender.cancel()
                try:
                    await sender
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
