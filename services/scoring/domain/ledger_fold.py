"""The ledger folded with the contract's rules, remembering which events produced what: the basis of
statements (a rep's credited deals and activities in a period, each traced to its ledger events), of
restatements after a close, and of what-if runs over history. Pure: events in, facts out.

`LedgerFold.add` takes the ledger's events in sequence order. For each deal it keeps the snapshot applied
last (the contract's ordering rule: a stale snapshot is ignored) and the chain of events that were applied;
activities are kept as facts. `lines` then answers "what does rep R earn under metric M in period K, and
from which events" — for a manager plan, from the team members' credit rolled up by the roster the fold is
given (services/scoring/domain/rollup.py), as live scoring rolls it up.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from msgspec.structs import replace

from schemas.kpis import ACTIVITY_PREFIX, OVERLAY, PRIMARY
from services.scoring.domain.credits import CREDIT_MEASURES, Credit, contribution, rolled_up
from services.scoring.domain.deals import DealSnapshot, is_newer
from services.scoring.domain.fx import ONE, FxTable, Rate, both_credits, convert
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.periods import Calendar, PeriodKind
from services.scoring.domain.rollup import Documents, rollup_of

__all__ = ["ActivityFact", "AppliedEvent", "DealHistory", "LedgerFold", "Line"]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class AppliedEvent:
    seq: int
    event_id: str


@dataclass(slots=True)
class DealHistory:
    applied: DealSnapshot | None = None
    chain: list[AppliedEvent] = field(default_factory=list)
    """The deal's snapshots that were applied (not stale), in ledger order."""


@dataclass(frozen=True, slots=True)
class ActivityFact:
    seq: int
    event_id: str
    rep_id: str
    kind: str
    at: datetime


@dataclass(frozen=True)
class Line:
    """One statement line: a deal's credit to the rep (or an activity kind's count) under the plan's metric."""

    key: str
    """`deal:<deal_id>` (`deal:<deal_id>:overlay` for an overlay) or `activity:<kind>` — what a line is about,
    stable across recomputations."""
    credit: Decimal
    event_ids: tuple[str, ...]
    deal_id: str | None = None
    stage: str | None = None
    amount: Decimal | None = None
    share: Decimal | None = None
    closed_at: datetime | None = None
    kind: str | None = None
    count: int | None = None
    last_seq: int = 0
    """The ledger sequence of the newest event behind the line."""
    role: str | None = None
    """A deal line's credit role: primary, or overlay (credit on top of the deal's split)."""
    member_rep_id: str | None = None
    """On a manager's statement: the team member whose credit the line rolls up."""
    currency: str | None = None
    """A deal in another currency than the reporting one: its currency (`amount` is in it)..."""
    rate: Decimal | None = None
    """...and the FX rate its credit was converted at (services/scoring/domain/fx.py)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "credit": str(self.credit), "event_ids": list(self.event_ids)}
        if self.deal_id is not None:
            out.update(type="deal", deal_id=self.deal_id, stage=self.stage,
                       amount=None if self.amount is None else str(self.amount),
                       share=None if self.share is None else str(self.share),
                       closed_at=None if self.closed_at is None else self.closed_at.isoformat(), role=self.role)
            if self.member_rep_id is not None:
                out["member_rep_id"] = self.member_rep_id
            if self.currency is not None:
                out.update(currency=self.currency, rate=None if self.rate is None else str(self.rate))
        else:
            out.update(type="activity", kind=self.kind, count=self.count)
        return out


class LedgerFold:
    def __init__(
        self, reps: Documents | None = None, teams: Documents | None = None, fx: FxTable | None = None
    ) -> None:
        """`reps` and `teams`: the roster documents the manager roll-up follows (none: no roll-up); `fx`: the rates
        a deal in another currency is converted at, as live scoring converts it (none: every deal is in the
        reporting currency)."""
        self.roster_reps: Documents = reps or {}
        self.roster_teams: Documents = teams or {}
        self.fx = fx
        self.deals: dict[str, DealHistory] = {}
        self.activities: list[ActivityFact] = []
        self.last_seq = 0
        self._period_cache: dict[tuple[str, str, int], dict[str, KpiTotals]] = {}
        self._rep_index: dict[str, list[str]] = {}
        self._manager_index: dict[str, list[str]] = {}
        self._index_seq = -1

    def add(self, seq: int, event: Mapping[str, Any]) -> None:
        """Fold one ledger event (its JSON body) at ledger sequence `seq`."""
        self.last_seq = max(self.last_seq, seq)
        if event.get("type") == "deal":
            snapshot = DealSnapshot.from_event(event)
            history = self.deals.setdefault(snapshot.deal_id, DealHistory())
            if is_newer(snapshot, history.applied):
                history.applied = snapshot
                history.chain.append(AppliedEvent(seq, str(event["event_id"])))
        elif event.get("type") == "activity":
            at = datetime.fromisoformat(str(event["occurred_at"]).replace("Z", "+00:00"))
            self.activities.append(ActivityFact(seq, str(event["event_id"]), str(event["rep_id"]),
                                                str(event["kind"]), at))

    def add_all(self, events: Iterable[tuple[int, Mapping[str, Any]]]) -> LedgerFold:
        for seq, event in events:
            self.add(seq, event)
        return self

    def totals(self, rep_id: str, kind: PeriodKind, key: str, calendar: Calendar) -> KpiTotals:
        """The rep's KPI sums in one period, as scoring would hold them (a copy: the caller may change it)."""
        found = self.period_totals(kind, key, calendar).get(rep_id)
        return KpiTotals() if found is None else found.copy()

    def period_totals(self, kind: PeriodKind, key: str, calendar: Calendar) -> dict[str, KpiTotals]:
        """Every rep's KPI sums in one period, in one pass over the fold (kept until the fold changes)."""
        cached = self._period_cache.get((kind, key, self.last_seq))
        if cached is not None:
            return cached
        by_rep: dict[str, KpiTotals] = {}
        for history in self.deals.values():
            if history.applied is None or history.applied.stage == "open":
                continue
            credits, native = both_credits(
                history.applied, self._rate(history.applied, calendar), None if self.fx is None else self.fx.reporting
            )
            for credit in credits + rolled_up(credits, self._managers(history.applied)) + native:
                if calendar.key(credit.at, kind) == key:
                    by_rep.setdefault(credit.rep_id, KpiTotals()).apply_credit(credit)
        for fact in self.activities:
            if calendar.key(fact.at, kind) == key:
                by_rep.setdefault(fact.rep_id, KpiTotals()).add_activity(fact.kind)
        self._period_cache[(kind, key, self.last_seq)] = by_rep
        return by_rep

    def open_deals_of(self, rep_id: str, calendar: Calendar) -> Callable[[datetime], list[Credit]]:
        """The rep's open deals as the credits they would give if won at a given instant (the rep's part), converted
        at that day's rate (a deal whose currency has no rate would be held: it adds nothing)."""
        deals = [h.applied for h in self.deals.values()
                 if h.applied is not None and h.applied.stage == "open"
                 and rep_id in h.applied.rep_ids()]

        def credits(at: datetime) -> list[Credit]:
            found = []
            for snapshot in deals:
                won = replace(snapshot, stage="won", closed_at=at)
                found += [c for c in self._credits(won, calendar)[0] if c.rep_id == rep_id]
            return found

        return credits

    def reps(self) -> set[str]:
        found = {fact.rep_id for fact in self.activities}
        for history in self.deals.values():
            if history.applied is not None:
                found.update(credit.rep_id for credit in contribution(history.applied))
        return found

    def _rate(self, snapshot: DealSnapshot, calendar: Calendar) -> Rate:
        """The rate the snapshot's credit is converted at (services/scoring/domain/fx.py)."""
        return ONE if self.fx is None else self.fx.deal_rate(snapshot, calendar.zone)

    def _credits(self, snapshot: DealSnapshot, calendar: Calendar) -> tuple[list[Credit], Rate]:
        """What the snapshot credits in the reporting currency, and the rate it was converted at."""
        rate = self._rate(snapshot, calendar)
        return convert(contribution(snapshot), rate), rate

    def _managers(self, snapshot: DealSnapshot) -> dict[str, str]:
        """Whom the snapshot's credit rolls up to, by rep."""
        return rollup_of(snapshot, self.roster_reps, self.roster_teams)

    def lines(
        self, rep_id: str, metric: str, kind: PeriodKind, key: str, calendar: Calendar, roles: Collection[str],
        *, rollup: bool = False,
    ) -> list[Line]:
        """What the rep is credited with under `metric` in the period, line by line, each with its events; deal
        lines for the credit of `roles` only (primary, overlay). With `rollup`, the lines of a manager plan: the
        team members' credit that rolls up to the manager `rep_id`, a line per deal and member.

        For an additive metric the lines' credits sum to the metric's value; for a rate (win_rate,
        avg_deal_size, retention_rate) the lines are its parts (won and lost deals), credited by revenue or
        share as the rate's numerator counts them."""
        if rollup:
            return sorted(self._deal_lines(rep_id, metric, kind, key, calendar, roles, rollup=True),
                          key=lambda line: line.key)
        deal_lines = self._deal_lines(rep_id, metric, kind, key, calendar, roles)
        return sorted(deal_lines, key=lambda line: line.key) + sorted(
            self._activity_lines(rep_id, metric, kind, key, calendar), key=lambda line: line.key
        )

    def _deal_lines(
        self, rep_id: str, metric: str, kind: PeriodKind, key: str, calendar: Calendar, roles: Collection[str],
        *, rollup: bool = False,
    ) -> Iterator[Line]:
        measures = _deal_measures(metric)
        if not measures:
            return
        for deal_id in self._rolled_up_to(rep_id) if rollup else self._deals_of(rep_id):
            history = self.deals[deal_id]
            snapshot = history.applied
            if snapshot is None:
                continue
            managers = self._managers(snapshot) if rollup else {}
            credits, rate = self._credits(snapshot, calendar)
            foreign = snapshot.currency if rate != ONE else None
            for credit in credits:
                role = OVERLAY if credit.overlay else PRIMARY
                mine = managers.get(credit.rep_id) == rep_id if rollup else credit.rep_id == rep_id
                if not mine or role not in roles or calendar.key(credit.at, kind) != key:
                    continue
                value = sum((getattr(credit, name) for name in measures), ZERO)
                if not value and not any(getattr(credit, name) for name in CREDIT_MEASURES):
                    continue
                share = dict(snapshot.overlays if credit.overlay else snapshot.splits).get(credit.rep_id)
                line_key = f"deal:{deal_id}:rep:{credit.rep_id}" if rollup else f"deal:{deal_id}"
                yield Line(
                    key=f"{line_key}:overlay" if credit.overlay else line_key,
                    credit=value, event_ids=tuple(e.event_id for e in history.chain),
                    deal_id=deal_id, stage=snapshot.stage, amount=snapshot.amount, share=share,
                    closed_at=snapshot.closed_at, last_seq=history.chain[-1].seq if history.chain else 0, role=role,
                    member_rep_id=credit.rep_id if rollup else None, currency=foreign,
                    rate=rate if foreign else None,
                )

    def _deals_of(self, rep_id: str) -> list[str]:
        """The deals whose applied snapshot names the rep (an index kept until the fold changes)."""
        self._index()
        return self._rep_index.get(rep_id, [])

    def _rolled_up_to(self, manager_id: str) -> list[str]:
        """The deals whose applied snapshot's credit rolls up (in part) to the manager."""
        self._index()
        return self._manager_index.get(manager_id, [])

    def _index(self) -> None:
        if self._index_seq == self.last_seq:
            return
        index: dict[str, list[str]] = {}
        managed: dict[str, list[str]] = {}
        for deal_id, history in self.deals.items():
            if history.applied is not None:
                for rep in history.applied.rep_ids():
                    index.setdefault(rep, []).append(deal_id)
                for manager in dict.fromkeys(self._managers(history.applied).values()):
                    managed.setdefault(manager, []).append(deal_id)
        self._rep_index, self._manager_index, self._index_seq = index, managed, self.last_seq

    def _activity_lines(
        self, rep_id: str, metric: str, kind: PeriodKind, key: str, calendar: Calendar
    ) -> Iterator[Line]:
        if metric != "activities" and not metric.startswith(ACTIVITY_PREFIX):
            return
        wanted = None if metric == "activities" else metric[len(ACTIVITY_PREFIX):]
        by_kind: dict[str, list[ActivityFact]] = {}
        for fact in self.activities:
            if fact.rep_id == rep_id and (wanted is None or fact.kind == wanted) and calendar.key(fact.at, kind) == key:
                by_kind.setdefault(fact.kind, []).append(fact)
        for activity_kind, facts in by_kind.items():
            yield Line(key=f"activity:{activity_kind}", credit=Decimal(len(facts)),
                       event_ids=tuple(f.event_id for f in facts), kind=activity_kind, count=len(facts),
                       last_seq=max(f.seq for f in facts))


def _deal_measures(metric: str) -> tuple[str, ...]:
    """The credit measures whose sum is a line's credit under `metric` (rates: their numerator's measure)."""
    if metric in CREDIT_MEASURES:
        return (metric,)
    return {"win_rate": ("deals_won",), "avg_deal_size": ("revenue",), "retention_rate": ("renewals_won",)}.get(
        metric, ()
    )
