"""The gateway's notification feed: each notifier message is pushed once (a resend after a notifier crash is
dropped by notification_id), notifications to the rep's socket, celebrations to every board the rep is on."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from schemas.config import Board
from schemas.messages import UnreadableMessage
from services.api.routes.notifications import NotificationFeed
from services.common.config_feed import ConfigState
from services.common.settings import Settings


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish_event(self, channel: str, message: dict[str, Any], accepted_ms: int = 0) -> None:
        self.events.append((channel, message))


def gateway() -> Any:
    state = ConfigState()
    state.apply({"kind": "rep", "id": "ada", "body": {"rep_id": "ada", "name": "Ada", "team_id": "east"},
                 "updated_ms": 1})
    for board_id, teams in (("east", ["east"]), ("west", ["west"]), ("floor", [])):
        body = {"board_id": board_id, "title": board_id, "metric": "revenue", "period": "month",
                "scope": {"teams": teams}}
        state.apply({"kind": "board", "id": board_id, "body": body, "updated_ms": 1})
    roster = state.reps()

    def on_board(board: Board, rep_id: str) -> bool:
        teams = set(board.scope.teams)
        return rep_id in roster and (not teams or roster[rep_id].get("team_id") in teams)

    return SimpleNamespace(
        settings=Settings(),
        dead_letters=None,
        hub=Recorder(),
        config=SimpleNamespace(state=state),
        board=lambda board_id: Board.model_validate(state.boards()[board_id]) if board_id in state.boards() else None,
        on_board=on_board,
    )


TARGET = {"tier_id": "target", "name": "Target", "threshold": 1.0}
NOTE = {"type": "notification", "notification_id": "tc_1", "rep_id": "ada", "name": "Ada", "plan_id": "p",
        "plan_name": "Plan", "period_key": "2026-11", "tier": TARGET, "reward": None,
        "crossed_at": "2026-11-20T10:00:00Z", "attainment": 1.02, "next_tier": None, "gap_to_next": None,
        "text": "Ada reached Target", "sent_ms": 1}
PARTY = {"type": "celebration", "notification_id": "tc_1", "rep_id": "ada", "name": "Ada", "plan_id": "p",
         "period_key": "2026-11", "tier": TARGET, "at": "2026-11-20T10:00:00Z", "sent_ms": 1}


def test_a_resent_notification_is_pushed_once() -> None:
    gw = gateway()
    feed = NotificationFeed(gw)
    for message in (NOTE, NOTE, {**NOTE, "sent_ms": 99}):
        feed.handle(orjson.dumps(message))
    assert gw.hub.events == [("rep:ada", {k: v for k, v in NOTE.items() if k != "sent_ms"})]


def test_a_celebration_goes_to_every_board_the_rep_is_on_once() -> None:
    gw = gateway()
    feed = NotificationFeed(gw)
    feed.handle(orjson.dumps(PARTY))
    feed.handle(orjson.dumps(PARTY))
    feed.handle(orjson.dumps(NOTE))  # the same notification_id on the rep's channel is a different message
    assert sorted(channel for channel, _ in gw.hub.events) == ["board:east", "board:floor", "rep:ada"]


def test_unreadable_messages_are_refused_and_push_nothing() -> None:
    gw = gateway()
    feed = NotificationFeed(gw)
    for raw in (b"not json", orjson.dumps({"type": "notification"}), orjson.dumps({**PARTY, "type": "party"}),
                orjson.dumps({**NOTE, "crossed_at": "yesterday"})):
        with pytest.raises(UnreadableMessage):  # the follower moves it to the dead-letter topic
            feed.handle(raw)
    assert gw.hub.events == []
