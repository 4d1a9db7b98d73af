"""The WebSocket hub: each screen gets its own sender task and a bounded mailbox in which a newer
snapshot replaces an unsent older one, so a slow screen never stalls the others."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

log = logging.getLogger("salespulse.api.hub")


class Screen:
    """One connected WebSocket: a latest-wins slot per message kind plus a short queue of one-off events."""

    def __init__(self, ws: WebSocket, channel: str, *, max_events: int = 100) -> None:
        self.ws = ws
        self.channel = channel
        self.latest: dict[str, bytes] = {}
        self.events: deque[bytes] = deque()
        self.max_events = max_events
        self.wake = asyncio.Event()
        self.closed = False
        self.replaced = 0

    def offer_state(self, kind: str, payload: bytes) -> None:
        if kind in self.latest:
            self.replaced += 1
        self.latest[kind] = payload
        self.wake.set()

    def offer_event(self, payload: bytes) -> bool:
        if len(self.events) >= self.max_events:
            return False
        self.events.append(payload)
        self.wake.set()
        return True

    async def pump(self) -> None:
        """Send whatever is pending until the socket closes."""
        while not self.closed:
            await self.wake.wait()
            self.wake.clear()
            while self.latest or self.events:
                if self.latest:
                    kind = next(iter(self.latest))
                    payload = self.latest.pop(kind)
                else:
                    payload = self.events.popleft()
                await self.ws.send_text(payload.decode())


class Hub:
    def __init__(self) -> None:
        self.screens: dict[str, set[Screen]] = defaultdict(set)

    def count(self) -> int:
        return sum(len(s) for s in self.screens.values())

    def publish_state(self, channel: str, kind: str, message: dict[str, Any]) -> None:
        screens = self.screens.get(channel)
        if not screens:
            return
        payload = orjson.dumps(message)
        for screen in screens:
            screen.offer_state(kind, payload)

    def publish_event(self, channel: str, message: dict[str, Any]) -> None:
        screens = self.screens.get(channel)
        if not screens:
            return
        payload = orjson.dumps(message)
        for screen in screens:
            screen.offer_event(payload)

    async def serve(self, ws: WebSocket, channel: str, first: dict[str, Any]) -> None:
        """Run one screen: send `first`, then everything published on `channel`, until it disconnects."""
        screen = Screen(ws, channel)
        screen.offer_state(str(first.get("type")), orjson.dumps(first))
        self.screens[channel].add(screen)
        sender = asyncio.create_task(screen.pump())
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
        except WebSocketDisconnect:
            pass
        finally:
            screen.closed = True
            self.screens[channel].discard(screen)
            if not self.screens[channel]:
                del self.screens[channel]
            sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
