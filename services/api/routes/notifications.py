"""Notifications in the gateway: the delivery log (`GET /v1/notifications`), each rep's preferences
(`PUT|GET /v1/reps/{rep_id}/preferences`), and the feed that pushes the notifier's messages to screens —
`notification` on the rep's socket, `celebration` on every board the rep is on."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import ValidationError

from schemas.messages import decode_notification
from schemas.preferences import Preferences
from services.api.deps import GatewayDep
from services.api.gateway import Gateway
from services.api.responses import KEYED_PROBLEMS
from services.api.routes.config import PUT_PROBLEMS
from services.api.routes.live import board_channel, rep_channel
from services.api.scope import out_of_scope, require_rep
from services.common.deps import AdminKey, ReaderKey
from services.common.follower import TopicFollower
from services.common.notification_log import notification_log
from services.common.preferences import default_preferences, read_preferences, write_preferences
from services.common.problems import Problem
from services.common.topics import NOTIFICATIONS, topic_name

log = logging.getLogger("salespulse.api.notifications")
router = APIRouter(prefix="/v1")

__all__ = ["NotificationFeed", "follow_notifications", "router"]

NOTIFICATION_FETCH_WAIT_MS = 100
"""The notification feed's fetch wait on a quiet topic (the embedded broker answers an empty fetch only at the
end of it, so this is how often the feed polls): a toast 100 ms later is not noticed, 30 fewer polls a second are."""


@router.get(
    "/notifications",
    summary="Tier-crossing notifications and their deliveries, newest first",
    responses=KEYED_PROBLEMS,
)
async def list_notifications(
    gw: GatewayDep,
    who: ReaderKey,
    rep_id: Annotated[str | None, Query(max_length=128, description="only this rep's notifications")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """A rep key reads its own rep's (with or without `rep_id`), a manager key its team's; delivery errors
    are for admins only."""
    among: list[str] | None = None
    if rep_id is not None:
        require_rep(who, gw, rep_id)
    elif who.role == "rep":
        rep_id = who.scope.rep_id
    elif who.role == "manager":
        among = gw.config.state.members(who.scope.team_id or "")
    elif not who.reads_everything:
        raise out_of_scope(who, "the notification log")
    log_entries = await notification_log(gw.sessions, rep_id=rep_id, limit=limit, among=among)
    if not who.sees_personal_data:
        for entry in log_entries:
            for delivery in entry["deliveries"]:
                delivery["last_error"] = None
    return log_entries


def _preferences_body(rep_id: str, prefs: Preferences, *, stored: bool) -> dict[str, Any]:
    return {"rep_id": rep_id, **prefs.model_dump(mode="json"), "default": not stored}


@router.get(
    "/reps/{rep_id}/preferences",
    summary="A rep's notification preferences (defaults if never set)",
    responses=KEYED_PROBLEMS,
)
async def get_preferences(rep_id: str, gw: GatewayDep, who: ReaderKey) -> dict[str, Any]:
    require_rep(who, gw, rep_id)
    prefs = await read_preferences(gw.sessions, rep_id)
    if prefs is None:
        return _preferences_body(rep_id, default_preferences(gw.settings), stored=False)
    return _preferences_body(rep_id, prefs, stored=True)


@router.put(
    "/reps/{rep_id}/preferences",
    summary="Set a rep's channels, quiet hours and hourly cap (admin)",
    responses=PUT_PROBLEMS,
)
async def put_preferences(rep_id: str, gw: GatewayDep, _: AdminKey, body: Annotated[Any, Body()]) -> dict[str, Any]:
    if isinstance(body, dict):
        # What GET returns may be PUT back: rep_id (if it matches) and the read-only `default` are accepted.
        body = dict(body)
        if body.pop("rep_id", rep_id) != rep_id:
            raise Problem(
                422,
                "The body's rep_id differs from the one in the path; make them equal.",
                errors=[{"index": None, "field": "rep_id", "message": "must equal the id in the path"}],
            )
        body.pop("default", None)
    try:
        prefs = Preferences.model_validate(body)
    except ValidationError as exc:
        raise Problem(
            422,
            "The preferences are not valid: " + "; ".join(e["msg"] for e in exc.errors()[:5]),
            errors=[
                {"index": None, "field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
            ],
        ) from exc
    await write_preferences(gw.sessions, rep_id, prefs)
    return _preferences_body(rep_id, prefs, stored=True)


class NotificationFeed:
    """Follows the notifications topic from its end (what arrives while this gateway runs) and pushes each
    message once: a repeat of a notification_id already pushed — a resend after a notifier crash — is
    dropped."""

    def __init__(self, gw: Gateway, remember: int = 50_000) -> None:
        self.gw = gw
        self.seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.remember = remember
        self.pushed = 0
        self.follower = TopicFollower(
            gw.settings, topic_name(gw.settings, NOTIFICATIONS), self.handle, name="notification feed",
            dead_letters=gw.dead_letters, start="end", fetch_wait_ms=NOTIFICATION_FETCH_WAIT_MS,
        )
        self.ready = self.follower.caught_up

    def handle(self, raw: bytes) -> None:
        """Push one `notifications` message to the screens it is for; UnreadableMessage when it is not one."""
        message = decode_notification(raw)
        key = (message.type, message.notification_id)
        if key in self.seen:
            return
        self.seen[key] = None
        if len(self.seen) > self.remember:
            self.seen.popitem(last=False)
        pushed = message.screen_payload()
        hub = self.gw.hub
        if message.type == "notification":
            hub.publish_event(rep_channel(message.rep_id), pushed)
        else:
            for board_id in list(self.gw.config.state.boards()):
                board = self.gw.board(board_id)
                if board is not None and board.celebrations and self.gw.on_board(board, message.rep_id):
                    hub.publish_event(board_channel(board_id), pushed)
        self.pushed += 1

def follow_notifications(gw: Gateway) -> asyncio.Task[None]:
    """Start pushing the notifier's messages to screens; the task runs until cancelled (app shutdown)."""
    feed = NotificationFeed(gw)
    gw.notification_feed = feed  # type: ignore[attr-defined]
    feed.follower.start()
    assert feed.follower.task is not None
    return feed.follower.task
