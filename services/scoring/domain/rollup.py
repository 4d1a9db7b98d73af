"""Manager roll-up: whose team number a rep's credit counts in (docs/plans-and-boards.md, Manager roll-up).

A credit at instant `at` rolls up to the manager of the team the rep was a member of at `at`, as that team was
managed at `at`. The roster keeps both histories (a rep's `team_history`, a team's `manager_history`: the
earlier values, each with the time it ended); before the first recorded change the first value applies, so a
roster set up after a year of history counts that year for the teams it was set up with. Pure: roster
documents (as the config topic carries them) in, a manager id out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from services.scoring.domain.credits import Credit, contribution, net, rolled_up
from services.scoring.domain.deals import DealSnapshot
from services.scoring.domain.fx import ONE, Rate, both_credits, convert

__all__ = ["deal_delta", "held_at", "manager_at", "managers_at", "restatement", "rollup_delta", "rollup_of"]

Documents = Mapping[str, Mapping[str, Any]]


def held_at(current: Any, history: Sequence[Mapping[str, Any]], field: str, at: datetime) -> Any:
    """The value of `field` at instant `at`: the first history entry that ended after `at`, else `current`."""
    for spell in history:
        if at < datetime.fromisoformat(spell["until"]):
            return spell[field]
    return current


def manager_at(reps: Documents, teams: Documents, rep_id: str, at: datetime) -> str | None:
    """The manager `rep_id`'s credit at `at` rolls up to, or None (no team, no manager, not on the roster)."""
    rep = reps.get(rep_id)
    if rep is None:
        return None
    team_id = held_at(rep.get("team_id"), rep.get("team_history", ()), "team_id", at)
    team = None if team_id is None else teams.get(team_id)
    if team is None:
        return None
    manager: str | None = held_at(team.get("manager_rep_id"), team.get("manager_history", ()), "manager_rep_id", at)
    return manager


def managers_at(reps: Documents, teams: Documents, rep_ids: Iterable[str], at: datetime) -> dict[str, str]:
    """For each of `rep_ids` that has one at `at`, the manager its credit rolls up to."""
    found = {}
    for rep_id in rep_ids:
        manager = manager_at(reps, teams, rep_id, at)
        if manager is not None:
            found[rep_id] = manager
    return found


def rollup_of(snapshot: DealSnapshot, reps: Documents, teams: Documents) -> dict[str, str]:
    """Whom a snapshot's credit rolls up to, by rep (nothing for an open deal)."""
    if snapshot.stage == "open" or snapshot.closed_at is None:
        return {}
    return managers_at(reps, teams, snapshot.rep_ids(), snapshot.closed_at)


def deal_delta(
    previous: DealSnapshot | None,
    rolled_before: Mapping[str, str] | None,
    current: DealSnapshot,
    reps: Documents,
    teams: Documents,
    *,
    rate_before: Rate = ONE,
    rate: Rate = ONE,
    reporting: str | None = None,
) -> tuple[list[Credit], dict[str, str]]:
    """What applying `current` (converted at `rate`, services/scoring/domain/fx.py) after `previous` (as it was
    converted, at `rate_before`) credits, the roll-up included, and whom `current`'s credit rolls up to (to keep
    with it). The roll-up is what `current` credits, counted for the managers at its close instant, less exactly
    what `previous` rolled up (`rolled_before`, to whomever it went then): a correction never takes credit back
    from a manager who did not get it. A deal in another currency than `reporting` also credits its own amounts
    in its currency (`native_credits`)."""
    now, now_native = both_credits(current, rate, reporting)
    before, before_native = both_credits(previous, rate_before, reporting)
    credits = net(now + now_native, before + before_native)
    managers = rollup_of(current, reps, teams)
    return credits + rollup_delta(now, managers, before, rolled_before), managers


def restatement(
    snapshot: DealSnapshot,
    before: tuple[Mapping[str, str] | None, Rate],
    after: tuple[Mapping[str, str], Rate],
) -> list[Credit]:
    """What moves when the same snapshot, credited with `before` (managers, rate), is credited with `after`
    instead: a roster change moves its roll-up, a rate that arrived or was corrected converts it anew."""
    (rolled_before, rate_before), (managers, rate) = before, after
    credits = contribution(snapshot)
    old, new = convert(credits, rate_before), convert(credits, rate)
    moved = net(new, old) if rate != rate_before else []
    return moved + rollup_delta(new, managers, old, rolled_before)


def rollup_delta(
    now: Sequence[Credit],
    managers: Mapping[str, str],
    before: Sequence[Credit],
    rolled_before: Mapping[str, str] | None,
) -> list[Credit]:
    """The roll-up credits that move from `before` as it rolled up (`rolled_before`) to `now` as it rolls up
    (`managers`): a deal's new snapshot, or the same snapshot moved by a roster change."""
    if not managers and not rolled_before:
        return []
    return net(rolled_up(now, managers), rolled_up(before, rolled_before or {}))
