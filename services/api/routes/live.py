"""WebSockets: a rep's live progress, and boards pushed at most once per 250 ms each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, WebSocket
from starlette.routing import WebSocketRoute

from services.api.admission import admit
from services.api.gateway import Gateway
from services.api.read_model import RepView
from services.api.scope import CLOSE_OUT_OF_SCOPE, may_read_board, may_read_rep
from services.api.tally import BoardTally
from services.common.auth import READERS, Principal
from services.common.background import BackgroundLoop, wait_set

log = logging.getLogger("salespulse.api.live")


def install_sockets(app: FastAPI) -> None:
    """Plain Starlette WebSocket routes: no per-connection dependency machinery (memory per screen)."""
    app.router.routes.append(WebSocketRoute("/v1/ws/reps/{rep_id}", rep_socket))
    app.router.routes.append(WebSocketRoute("/v1/ws/boards/{board_id}", board_socket))


def rep_channel(rep_id: str) -> str:
    return f"rep:{rep_id}"


def board_channel(board_id: str) -> str:
    return f"board:{board_id}"


def progress_message(gw: Gateway, rep_id: str) -> dict[str, Any]:
    return {
        "type": "progress", "rep_id": rep_id, "plans": gw.live_progress(rep_id), "kpis": gw.current_kpis(rep_id),
        "achievements": gw.earned(rep_id, BADGES_SHOWN), "streaks": gw.rep_streaks(rep_id),
    }


BADGES_SHOWN = 12
"""The newest achievements a rep screen's progress message carries (GET /v1/reps/{id}/achievements has them all)."""


CLOSE_CATCHING_UP = 1013
""""Try again later": the pipeline is still catching up with the ledger; its numbers would be partial."""


async def _refused_while_catching_up(ws: WebSocket, gw: Gateway) -> bool:
    """While the pipeline catches up, say how far it is and close (the screen shows "catching up" and comes
    back): a screen never shows partial totals as if they were true."""
    progress = gw.readiness.progress()
    if progress.caught_up:
        return False
    await ws.send_json({"type": "catching_up", **progress.as_json()})
    eta = f", about {progress.eta_seconds:.0f} s" if progress.eta_seconds is not None else ""
    await ws.close(code=CLOSE_CATCHING_UP, reason=f"catching up: {progress.behind:,} events behind{eta}"[:120])
    return True


async def _open(ws: WebSocket, in_scope: Callable[[Principal, Gateway], bool], what: str) -> tuple[Gateway, str] | None:
    """Admit and accept a screen's socket: the gateway and the key's hash, or None when it was refused (origin,
    connection budget, key: see admission.py), closed because `what` is outside the key's scope (4403), or
    closed because the pipeline is still catching up."""
    admitted = await admit(ws, READERS)
    if admitted is None:
        return None
    who, key_hash = admitted
    gw: Gateway = ws.app.state.gateway
    await ws.accept()
    if not in_scope(who, gw):
        reason = f"this {who.role} key reads only {who.scope.describe(who.role)}; not {what}"
        await ws.close(code=CLOSE_OUT_OF_SCOPE, reason=reason[:120])
        return None
    if await _refused_while_catching_up(ws, gw):
        return None
    return gw, key_hash


async def rep_socket(ws: WebSocket) -> None:
    """WS /v1/ws/reps/{rep_id}: the rep's progress now, then on every change."""
    rep_id = ws.path_params["rep_id"]
    opened = await _open(ws, lambda who, gw: may_read_rep(who, gw, rep_id), f"rep {rep_id}")
    if opened is None:
        return
    gw, key_hash = opened
    await gw.hub.serve(ws, rep_channel(rep_id), progress_message(gw, rep_id), key_hash=key_hash)


async def board_socket(ws: WebSocket) -> None:
    """WS /v1/ws/boards/{board_id}: standings now, then at most every 250 ms when they change."""
    board_id = ws.path_params["board_id"]
    opened = await _open(ws, lambda who, gw: may_read_board(who, gw, board_id), f"board {board_id}")
    if opened is None:
        return
    gw, key_hash = opened
    board = gw.board(board_id)
    if board is None:
        await ws.close(code=4404, reason=f"no board {board_id!r}")
        return
    first = {"type": "standings", **await gw.standings(board)}
    await gw.hub.serve(ws, board_channel(board_id), first, key_hash=key_hash)


class LivePusher(BackgroundLoop):
    """Turns read-model changes into pushes: a rep's progress at once (latest wins per screen), and each
    watched board's standings at most once per `interval`, only when they changed.

    Coalescing is on the trailing edge only when needed: a change after a quiet `interval` is pushed at once;
    changes that follow a push within `interval` wait for the rest of it and go out together."""

    loop_name = "board-pusher"

    def __init__(self, gw: Gateway, interval: float = 0.25, refresh: float = 30.0) -> None:
        self.gw = gw
        self.interval = interval
        self.refresh = refresh
        self.dirty: dict[str, int] = {}  # rep id (or "*") -> newest ingest acceptance time behind the change
        self.last_sent: dict[str, Any] = {}
        self.tallies: dict[str, BoardTally] = {}  # watched board -> its standings, kept per rep
        self.wake = asyncio.Event()

    def on_rep(self, view: RepView) -> None:
        rep_id = view.rep_id
        gw = self.gw
        channel = rep_channel(rep_id)
        if gw.hub.watching(channel):
            gw.hub.publish_state(channel, "progress", progress_message(gw, rep_id), view.accepted_ms)
        self.dirty[rep_id] = max(self.dirty.get(rep_id, 0), view.accepted_ms)
        self.wake.set()

    def on_config(self, change: dict[str, Any]) -> None:
        if change["kind"] == "board":
            self.last_sent.pop(change["id"], None)
        self.dirty["*"] = 0
        self.wake.set()


    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + self.refresh
        last_push = loop.time() - self.interval
        while True:
            await wait_set(self.wake, max(0.0, next_refresh - loop.time()))
            self.wake.clear()
            spacing = last_push + self.interval - loop.time()
            if spacing > 0:  # the rate limit of a board's pushes: what arrives meanwhile goes out together
                await asyncio.sleep(spacing)
            if loop.time() >= next_refresh:
                self.dirty["*"] = 0  # periods roll over and pace moves with time
                next_refresh = loop.time() + self.refresh
            if not self.dirty:
                continue
            dirty, self.dirty = self.dirty, {}
            try:
                published = await self.push_boards(dirty)
            except Exception:  # a bad board must not stop the others
                log.exception("could not push standings")
                published = True  # some boards may have gone out before it failed
            # Counted from the push's end: a push that took a while (reading a board's reps) published late,
            # and the next one must still leave `interval` after it. A round that sent nothing (the periodic
            # refresh, a change no board shows) opens no window: the next change still meets a quiet board.
            if published:
                last_push = loop.time()

    async def push_boards(self, dirty: dict[str, int]) -> bool:
        """Push each watched board that changed; whether any was pushed. A board's tally is built once and then
        updated for the reps that changed; a configuration change or the periodic refresh ("*") or a new period
        builds it again."""
        gw = self.gw
        published = False
        everything = "*" in dirty
        watched = {channel.split(":", 1)[1]: channel for channel in gw.hub.channels("board:")}
        for board_id in set(self.tallies).difference(watched):
            del self.tallies[board_id]
        today = gw.today()
        for board_id, channel in watched.items():
            board = gw.board(board_id)
            if board is None:
                continue
            tally = self.tallies.get(board_id)
            if everything or tally is None or tally.on != today:
                changed = [at for rep_id, at in dirty.items() if rep_id != "*" and gw.on_board(board, rep_id)]
                tally = self.tallies[board_id] = await gw.tally(board, today)
            else:
                reps = [rep_id for rep_id in dirty if gw.on_board(board, rep_id)]
                if not reps:
                    continue
                changed = [dirty[rep_id] for rep_id in reps]
                await gw.retally(tally, reps)
            standings = tally.message()
            comparable = {k: v for k, v in standings.items() if k != "updated_at"}
            if self.last_sent.get(board_id) == comparable:
                gw.hub.metrics_coalesced()
                continue
            self.last_sent[board_id] = comparable
            gw.hub.publish_state(channel, "standings", {"type": "standings", **standings}, max(changed, default=0))
            published = True
        return published
