"""Team battles (docs/plans-and-boards.md, Team battles): a board whose teams go head to head, each the sum of
its members' values; who leads and by how much."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas.config import Board
from services.api.tally import BoardTally
from services.scoring.domain.standings import Entry

WINDOW = {"starts_at": "2026-12-11T13:00:00Z", "ends_at": "2026-12-11T21:00:00Z"}


def battle(metric: str = "revenue", **extra: object) -> Board:
    return Board.model_validate({"board_id": "friday", "title": "East vs West", "metric": metric, "window": WINDOW,
                                 "battle": {"teams": ["east", "west", "north"]}, **extra})


def tally(board: Board, values: dict[tuple[str, str], str]) -> BoardTally:
    t = BoardTally(board, None, date(2026, 12, 11), "window", team_names={"east": "East", "west": "West"})
    t.entries = {rep: Entry(rep, Decimal(v), name=rep.title(), team_id=team) for (rep, team), v in values.items()}
    return t


def test_each_team_is_the_sum_of_its_members_and_the_gap_is_to_the_second() -> None:
    board = battle()
    found = tally(board, {("ana", "east"): "1200.50", ("bo", "east"): "300", ("cy", "west"): "900.25",
                          ("dee", "west"): "100", ("eve", None): "5000"}).message()  # type: ignore[dict-item]
    assert found["battle"] == {
        "teams": [
            {"team_id": "east", "name": "East", "rank": 1, "value": 1500.5, "members": 2},
            {"team_id": "west", "name": "West", "rank": 2, "value": 1000.25, "members": 2},
            {"team_id": "north", "name": "north", "rank": 3, "value": 0.0, "members": 0},
        ],
        "leader": "east",
        "gap": 500.25,
    }
    assert [e["rep_id"] for e in found["entries"]][:2] == ["eve", "ana"]  # the reps' own ranking stays


def test_a_tie_at_the_top_has_no_leader_and_shares_the_rank() -> None:
    found = tally(battle("activities"), {("ana", "east"): "7", ("cy", "west"): "7"}).battle()
    assert found["leader"] is None and found["gap"] == 0.0
    assert [(t["team_id"], t["rank"]) for t in found["teams"]] == [("east", 1), ("west", 1), ("north", 3)]  # type: ignore[union-attr]


def test_a_battle_board_is_scoped_to_its_teams_and_sums_only_what_adds_up() -> None:
    assert battle().scope.teams == ["east", "west", "north"]
    with pytest.raises(ValidationError, match="win_rate is a ratio"):
        battle("win_rate")
    with pytest.raises(ValidationError, match="must be its battle.teams"):
        battle(scope={"teams": ["east"]})
    with pytest.raises(ValidationError, match="each team once"):
        Board.model_validate({"board_id": "b", "title": "T", "metric": "revenue", "period": "month",
                              "battle": {"teams": ["east", "east"]}})
    plain = Board.model_validate({"board_id": "b", "title": "T", "metric": "revenue", "period": "month"})
    assert "battle" not in plain.model_dump(mode="json") and "battle" not in tally(plain, {}).message()
