"""What a key may read on the gateway, by role and scope (CONTRACT.md §6, docs/security.md "Scopes").

- `admin` and `viewer` read every board, team and rep (only `admin` sees personal data).
- `screen` reads its named boards, the teams shown on them (a board over all teams shows every team) and the
  roster entries of the reps on them — what a TV draws; no rep's progress, KPIs or notifications.
- `rep` reads its own rep's KPIs, progress, notifications, preferences and roster entry, and its team's name.
- `manager` reads its team (KPIs, roster entry), the reps currently on it (KPIs, progress, notifications,
  preferences), and the boards that show only that team.
- Plans are the rules everyone is paid by, readable by every reading role.

Out of scope is 403 on a route (decided before any lookup, so it does not tell whether the thing exists) and
4403 on a socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.api.gateway import Gateway
from services.common.auth import Principal
from services.common.problems import Problem

CLOSE_OUT_OF_SCOPE = 4403


def may_read_rep(who: Principal, gw: Gateway, rep_id: str) -> bool:
    """A rep's KPIs, progress, notifications and preferences."""
    if who.reads_everything:
        return True
    if who.role == "rep":
        return rep_id == who.scope.rep_id
    if who.role == "manager":
        return gw.config.state.reps().get(rep_id, {}).get("team_id") == who.scope.team_id
    return False


def may_read_team(who: Principal, gw: Gateway, team_id: str) -> bool:
    """A team's KPIs."""
    if who.reads_everything:
        return True
    if who.role == "manager":
        return team_id == who.scope.team_id
    if who.role == "screen":
        return any(_board_shows_team(gw, board_id, team_id) for board_id in who.scope.boards)
    return False


def may_read_board(who: Principal, gw: Gateway, board_id: str) -> bool:
    """A board's definition and standings, REST and socket."""
    if who.reads_everything:
        return True
    if who.role == "screen":
        return board_id in who.scope.boards
    if who.role == "manager":
        board = gw.board(board_id)
        return board is not None and set(board.scope.teams) == {who.scope.team_id}
    return False


def entry_filter(who: Principal, gw: Gateway, kind: str) -> Callable[[str], bool]:
    """Which configuration entries of `kind` (GET /v1/{reps,teams,plans,boards,...}) `who` may see: what the
    scope's screens need to draw. Worked out once per request, then asked per entry id."""
    if kind == "chat":  # webhook URLs carry their secret: admins only
        return lambda _: who.sees_personal_data
    if who.reads_everything or kind in ("plan", "achievement", "streak"):
        return lambda _: True
    if kind == "board":
        return lambda board_id: may_read_board(who, gw, board_id)
    if kind == "team":
        own_team = gw.config.state.reps().get(who.scope.rep_id or "", {}).get("team_id") if who.role == "rep" else None
        return lambda team_id: team_id == own_team or may_read_team(who, gw, team_id)
    if kind == "rep" and who.role == "screen":
        shown: set[str] = set()
        for board_id in who.scope.boards:
            board = gw.board(board_id)
            shown.update(gw.board_reps(board) if board is not None else ())
        return shown.__contains__
    if kind == "rep":
        return lambda rep_id: may_read_rep(who, gw, rep_id)
    return lambda _: False


def without_personal_data(who: Principal, kind: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as `who` may see it: a rep's e-mail address only for admins."""
    if kind == "rep" and not who.sees_personal_data and entry.get("email") is not None:
        return {**entry, "email": None}
    return entry


def out_of_scope(who: Principal, what: str) -> Problem:
    return Problem(403, f"This {who.role} key reads only {who.scope.describe(who.role)}; {what} is outside it.")


def require_rep(who: Principal, gw: Gateway, rep_id: str) -> None:
    if not may_read_rep(who, gw, rep_id):
        raise out_of_scope(who, f"rep {rep_id!r}")


def require_team(who: Principal, gw: Gateway, team_id: str) -> None:
    if not may_read_team(who, gw, team_id):
        raise out_of_scope(who, f"team {team_id!r}")


def require_board(who: Principal, gw: Gateway, board_id: str) -> None:
    if not may_read_board(who, gw, board_id):
        raise out_of_scope(who, f"board {board_id!r}")


def _board_shows_team(gw: Gateway, board_id: str, team_id: str) -> bool:
    board = gw.board(board_id)
    if board is None:
        return False
    return team_id in board.scope.teams if board.scope.teams else team_id in gw.config.state.teams()


__all__ = [
    "CLOSE_OUT_OF_SCOPE",
    "entry_filter",
    "may_read_board",
    "may_read_rep",
    "may_read_team",
        "out_of_scope",
    "require_board",
    "require_rep",
    "require_team",
    "without_personal_data",
]
