"""Period close and commission statements (docs/statements.md).

- **Close** (`close`): for every participant of a plan, the statement of a period is computed from the ledger
  with the pure core (services/scoring/domain/ledger_fold.py and the same `plan_progress` as live progress) and
  frozen: value, quota, attainment, tier, payout, rewards, and the lines behind the value, each with the ledger
  events that produced it. The close records the ledger sequence it reflects (`as_of_seq`).
- **Restatement**: events that change a closed period never alter its frozen statement. The statement of the
  next open period of the same plan carries **adjustment lines**: for each line of the closed period, the
  difference between the period recomputed now and what was frozen (minus what earlier statements already
  carried), with the events that came after the close; and the payout difference. When that period is closed
  in turn, its adjustments are frozen with it, so nothing is carried twice.

Statement ids are the plan, period and rep, base64url-encoded: readable back, safe in a URL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from schemas.config import Plan
from services.common.config_feed import ConfigState
from services.common.db import Sessions
from services.common.models import LedgerEntry, PeriodClose, StatementRow
from services.common.problems import Problem
from services.scoring.domain.fx import FxTable
from services.scoring.domain.incentives import plan_period, plan_progress
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.ledger_fold import LedgerFold
from services.scoring.domain.periods import Calendar, PeriodKind

__all__ = ["StatementBook", "parse_statement_id", "read_fold", "statement_id"]

ZERO = Decimal(0)
READ_CHUNK = 5000


def statement_id(plan_id: str, period_key: str, rep_id: str) -> str:
    raw = json.dumps([plan_id, period_key, rep_id], separators=(",", ":")).encode()
    return "st_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_statement_id(text: str) -> tuple[str, str, str]:
    try:
        if not text.startswith("st_"):
            raise ValueError
        raw = text[3:] + "=" * (-len(text[3:]) % 4)
        plan_id, period_key, rep_id = json.loads(base64.urlsafe_b64decode(raw))
        return str(plan_id), str(period_key), str(rep_id)
    except (ValueError, TypeError):
        hint = "statement ids come from GET /v1/reps/{rep_id}/statements"
        raise Problem(404, f"No statement {text!r}: {hint}.") from None


async def read_fold(
    sessions: Sessions, roster: ConfigState, reporting: str, upto_seq: int | None = None
) -> LedgerFold:
    """The whole ledger (or up to `upto_seq`) folded, read in sequence order a chunk at a time; its manager
    roll-up follows `roster`, its conversion of other currencies than `reporting` the FX rates `roster` holds."""
    fold = LedgerFold(roster.reps(), roster.teams(), FxTable(reporting, roster.fx()))
    after = 0
    while True:
        query = select(LedgerEntry.seq, LedgerEntry.body).where(LedgerEntry.seq > after)
        if upto_seq is not None:
            query = query.where(LedgerEntry.seq <= upto_seq)
        async with sessions() as session:
            rows = (await session.execute(query.order_by(LedgerEntry.seq).limit(READ_CHUNK))).all()
        for seq, body in rows:
            fold.add(seq, json.loads(body))
        if len(rows) < READ_CHUNK:
            return fold
        after = rows[-1][0]


def _money(value: Decimal) -> str:
    return str(value)


@dataclass
class StatementBook:
    """Closes and statements over the gateway's configuration, calendar and database."""

    sessions: Sessions
    calendar: Calendar
    roster: ConfigState
    currency: str
    """The reporting currency."""

    # --- periods ------------------------------------------------------------------------------------------
    def period_bounds(self, plan: Plan, period_key: str) -> tuple[date, date]:
        kind: PeriodKind = plan.period
        try:
            return self.calendar.parse_key(kind, period_key)
        except ValueError as exc:
            raise Problem(422, f"{period_key!r} is not a {kind} period key: {exc}") from None

    def next_key(self, plan: Plan, period_key: str) -> str:
        kind: PeriodKind = plan.period
        _, end = self.calendar.parse_key(kind, period_key)
        return self.calendar.key_for_date(end, kind)

    async def closes(self, plan_id: str) -> dict[str, PeriodClose]:
        async with self.sessions() as session:
            rows = (await session.execute(select(PeriodClose).where(PeriodClose.plan_id == plan_id))).scalars()
            return {row.period_key: row for row in rows}

    async def frozen(self, plan_id: str, rep_id: str) -> dict[str, dict[str, Any]]:
        """period key -> the rep's frozen statement of that period."""
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(StatementRow.period_key, StatementRow.body).where(
                        StatementRow.plan_id == plan_id, StatementRow.rep_id == rep_id
                    )
                )
            ).all()
        return {key: json.loads(body) for key, body in rows}

    # --- one statement ------------------------------------------------------------------------------------
    def compute(
        self, plan: Plan, period_key: str, rep_id: str, team_id: str | None, fold: LedgerFold, now: datetime
    ) -> dict[str, Any] | None:
        """The rep's statement of the period as the ledger stands in `fold` (None: not a participant)."""
        start, _ = self.period_bounds(plan, period_key)
        kind: PeriodKind = plan.period

        progress = plan_progress(plan, rep_id=rep_id, team_id=team_id, totals=self._totals_of(fold, rep_id),
                                 calendar=self.calendar,
                                 on=start, now=now)
        if progress is None or plan_period(plan, self.calendar, start) != period_key:
            return None
        lines = fold.lines(rep_id, plan.metric, kind, period_key, self.calendar, plan.credit_roles,
                           rollup=bool(plan.participants.managers))
        document = progress.to_dict()
        return {
            "statement_id": statement_id(plan.plan_id, period_key, rep_id),
            "plan_id": plan.plan_id,
            "plan_name": plan.name,
            "period": plan.period,
            "period_key": period_key,
            "rep_id": rep_id,
            "metric": plan.metric,
            "value": str(progress.value),
            "quota": str(progress.quota),
            "attainment": document["attainment"],
            "tier": document["tier"],
            "payout": _money(progress.payout),
            "rewards": list(progress.rewards),
            "lines": [line.to_dict() for line in lines],
        }

    def adjustments(
        self,
        plan: Plan,
        rep_id: str,
        team_id: str | None,
        carrier_key: str,
        closes: dict[str, PeriodClose],
        frozen: dict[str, dict[str, Any]],
        fold: LedgerFold,
        now: datetime,
    ) -> list[dict[str, Any]]:
        """Adjustment groups the statement of `carrier_key` carries: one per closed period whose next open period
        it is, each with its lines (credit and payout differences) and the events behind them."""
        groups = []
        for closed_key in sorted(closes):
            if closed_key >= carrier_key or self._carrier(plan, closed_key, closes) != carrier_key:
                continue
            was = frozen.get(closed_key)
            rules = _rules_of(closes[closed_key]) or plan
            now_doc = self.compute(rules, closed_key, rep_id, team_id, fold, now)
            if was is None and now_doc is None:
                continue
            carried = _carried(frozen.values(), closed_key)
            before = {line["key"]: Decimal(line["credit"]) for line in (was or {}).get("lines", [])}
            rates_before = {line["key"]: line["rate"] for line in (was or {}).get("lines", []) if line.get("rate")}
            for key, credit in carried["lines"].items():
                before[key] = before.get(key, ZERO) + credit
            after = {line["key"]: line for line in (now_doc or {}).get("lines", [])}
            as_of = closes[closed_key].as_of_seq
            lines = []
            for key in sorted(set(before) | set(after)):
                delta = (Decimal(after[key]["credit"]) if key in after else ZERO) - before.get(key, ZERO)
                if not delta:
                    continue
                line = {"key": key, "credit": str(delta), "event_ids": self._events_since(fold, key, as_of),
                        **({"deal_id": key[5:]} if key.startswith("deal:") else {"kind": key[9:]})}
                if key in after and after[key].get("currency"):  # converted: the rate now, and at the close
                    line.update(currency=after[key]["currency"], rate=after[key]["rate"])
                    if rates_before.get(key, after[key]["rate"]) != after[key]["rate"]:
                        line["rate_at_close"] = rates_before[key]
                lines.append(line)
            payout_before = Decimal((was or {}).get("payout", "0")) + carried["payout"]
            payout_delta = Decimal((now_doc or {}).get("payout", "0")) - payout_before
            if lines or payout_delta:
                groups.append({"closed_period": closed_key, "lines": lines, "payout": str(payout_delta)})
        return groups

    def _carrier(self, plan: Plan, closed_key: str, closes: dict[str, PeriodClose]) -> str:
        """The first period after `closed_key` that is not closed: where its restatements go."""
        key = self.next_key(plan, closed_key)
        for _ in range(1000):
            if key not in closes:
                return key
            key = self.next_key(plan, key)
        return key

    @staticmethod
    def _events_since(fold: LedgerFold, key: str, as_of: int) -> list[str]:
        if key.startswith("deal:"):
            history = fold.deals.get(key[5:])
            return [e.event_id for e in history.chain if e.seq > as_of] if history else []
        kind = key[9:]
        return [f.event_id for f in fold.activities if f.kind == kind and f.seq > as_of]

    def with_adjustments(self, document: dict[str, Any], groups: list[dict[str, Any]]) -> dict[str, Any]:
        adjustment = sum((Decimal(g["payout"]) for g in groups), ZERO)
        document["adjustments"] = groups
        document["adjustments_payout"] = str(adjustment)
        document["total_payout"] = str(Decimal(document["payout"]) + adjustment)
        return document

    # --- close ----------------------------------------------------------------------------------------------
    async def close(
        self, plan: Plan, period_key: str, *, force: bool, closed_by: str, now: datetime,
        participants: Iterable[tuple[str, str | None]],
    ) -> dict[str, Any]:
        start, end = self.period_bounds(plan, period_key)
        if plan_period(plan, self.calendar, start) != period_key:
            raise Problem(422, f"Plan {plan.plan_id!r} does not apply to {period_key} (effective "
                               f"{plan.effective_from}–{plan.effective_to or 'open-ended'}).")
        closes = await self.closes(plan.plan_id)
        if period_key in closes:
            done = closes[period_key]
            return {"plan_id": plan.plan_id, "period_key": period_key, "closed_at": done.closed_at.isoformat(),
                    "as_of_seq": done.as_of_seq, "already_closed": True}
        ends = datetime.combine(end, datetime.min.time(), self.calendar.zone)
        if now < ends and not force:
            raise Problem(409, f"{period_key} has not ended (it ends {ends.isoformat()}); close it early with "
                               "?force=true.")
        fold = await read_fold(self.sessions, self.roster, self.currency)
        reps = dict(participants)
        for rep in fold.reps():
            reps.setdefault(rep, None)
        rows = []
        for rep_id, team_id in sorted(reps.items()):
            document = self.compute(plan, period_key, rep_id, team_id, fold, now)
            if document is None:
                continue
            frozen = await self.frozen(plan.plan_id, rep_id)
            groups = self.adjustments(plan, rep_id, team_id, period_key, closes, frozen, fold, now)
            document = self.with_adjustments(document, groups)
            document.update(status="closed", closed_at=now.isoformat(), as_of_seq=fold.last_seq)
            rows.append(StatementRow(statement_id=document["statement_id"], plan_id=plan.plan_id,
                                     period_key=period_key, rep_id=rep_id, closed_at=now, body=json.dumps(document)))
        async with self.sessions() as session, session.begin():
            session.add(PeriodClose(plan_id=plan.plan_id, period_key=period_key, closed_at=now,
                                    as_of_seq=fold.last_seq, forced=int(force), closed_by=closed_by,
                                    plan_rules=plan.model_dump_json()))
            session.add_all(rows)
        return {"plan_id": plan.plan_id, "period_key": period_key, "closed_at": now.isoformat(),
                "as_of_seq": fold.last_seq, "already_closed": False, "statements": len(rows)}

    # --- what-if -------------------------------------------------------------------------------------------
    def what_if(
        self, draft: Plan, live: Plan | None, period_key: str, participants: Iterable[tuple[str, str | None]],
        fold: LedgerFold, now: datetime,
    ) -> dict[str, Any]:
        """Every participant's figures under the draft plan next to the live one, and the total cost of each,
        from the ledger as it stands; nothing is written and nothing is sent."""
        start, _ = self.period_bounds(draft, period_key)
        reps = dict(participants)
        for rep in fold.reps():
            reps.setdefault(rep, None)
        rows = []
        cost = {"draft": ZERO, "live": ZERO}
        for rep_id, team_id in sorted(reps.items()):
            figures: dict[str, Any] = {"rep_id": rep_id}
            for name, plan in (("draft", draft), ("live", live)):
                progress = None
                if plan is not None:
                    progress = plan_progress(plan, rep_id=rep_id, team_id=team_id, calendar=self.calendar,
                                             on=start, now=now, totals=self._totals_of(fold, rep_id))
                if progress is not None and progress.period_key != period_key:
                    progress = None
                figures[name] = None if progress is None else _figures(progress)
                if progress is not None:
                    cost[name] += progress.payout
            if figures["draft"] is not None or figures["live"] is not None:
                rows.append(figures)
        return {
            "plan_id": draft.plan_id,
            "period_key": period_key,
            "live_plan": live is not None,
            "participants": rows,
            "total_cost": {"draft": str(cost["draft"]), "live": str(cost["live"]) if live is not None else None,
                           "difference": str(cost["draft"] - cost["live"]) if live is not None else None},
            "as_of_seq": fold.last_seq,
        }

    def _totals_of(self, fold: LedgerFold, rep_id: str) -> Callable[[PeriodKind, str], KpiTotals]:
        return lambda kind, key: fold.totals(rep_id, kind, key, self.calendar)

    def projection(
        self, plans: Iterable[Plan], rep_id: str, team_id: str | None, on: date, fold: LedgerFold, now: datetime
    ) -> list[dict[str, Any]]:
        """For each plan covering the rep: the figures now, and if every open deal of the rep closed won today at
        its amount (the rep's share of it)."""
        open_deals = fold.open_deals_of(rep_id, self.calendar)
        found = []
        for plan in plans:
            current = plan_progress(plan, rep_id=rep_id, team_id=team_id, totals=self._totals_of(fold, rep_id),
                                    calendar=self.calendar, on=on, now=now)
            if current is None:
                continue

            def with_pipeline(k: PeriodKind, key: str) -> Any:
                totals = fold.totals(rep_id, k, key, self.calendar)
                if key == self.calendar.key(now, k):
                    for credit in open_deals(now):
                        totals.apply_credit(credit)
                return totals

            projected = plan_progress(plan, rep_id=rep_id, team_id=team_id, totals=with_pipeline,
                                      calendar=self.calendar, on=on, now=now)
            assert projected is not None
            found.append({"plan_id": plan.plan_id, "period_key": current.period_key,
                          "open_deals": len(open_deals(now)), "now": _figures(current),
                          "if_pipeline_closes": _figures(projected)})
        return found

    # --- reading --------------------------------------------------------------------------------------------
    async def statement(
        self, plan: Plan, period_key: str, rep_id: str, team_id: str | None, now: datetime,
        fold: LedgerFold | None = None,
    ) -> dict[str, Any] | None:
        """The frozen statement of a closed period, or the open period's statement as it stands now."""
        frozen = await self.frozen(plan.plan_id, rep_id)
        if period_key in frozen:
            return frozen[period_key]
        closes = await self.closes(plan.plan_id)
        if period_key in closes:
            return None  # closed without this rep
        fold = fold or await read_fold(self.sessions, self.roster, self.currency)
        document = self.compute(plan, period_key, rep_id, team_id, fold, now)
        if document is None:
            return None
        groups = self.adjustments(plan, rep_id, team_id, period_key, closes, frozen, fold, now)
        document = self.with_adjustments(document, groups)
        document.update(status="open", closed_at=None, as_of_seq=fold.last_seq)
        return document

    async def restated(self, plan_id: str, period_key: str, rep_id: str, live_value: Decimal) -> dict[str, Any]:
        """For live progress of a closed period: whether the ledger has moved it since the close (a rep without a
        frozen statement had nothing then)."""
        async with self.sessions() as session:
            row = await session.get(StatementRow, statement_id(plan_id, period_key, rep_id))
        frozen = Decimal(json.loads(row.body)["value"]) if row is not None else ZERO
        return {"closed": True, "restated": frozen != live_value}


def _figures(progress: Any) -> dict[str, Any]:
    document = progress.to_dict()
    return {"value": str(progress.value), "quota": str(progress.quota), "attainment": document["attainment"],
            "tier": document["tier"], "payout": str(progress.payout)}


async def session_close(sessions: Sessions, plan_id: str, period_key: str) -> bool:
    async with sessions() as session:
        return await session.get(PeriodClose, (plan_id, period_key)) is not None


def _rules_of(close: PeriodClose) -> Plan | None:
    """The plan as it was when the period was closed: a closed period is restated under its own rules, so a plan
    edited later changes what it pays from then on, not what closed periods paid."""
    return Plan.model_validate(json.loads(close.plan_rules)) if close.plan_rules else None


def _carried(frozen: Iterable[dict[str, Any]], closed_key: str) -> dict[str, Any]:
    """What frozen statements already carried for `closed_key`: credit per line key, and payout."""
    lines: dict[str, Decimal] = {}
    payout = ZERO
    for document in frozen:
        for group in document.get("adjustments", []):
            if group["closed_period"] != closed_key:
                continue
            payout += Decimal(group["payout"])
            for line in group["lines"]:
                lines[line["key"]] = lines.get(line["key"], ZERO) + Decimal(line["credit"])
    return {"lines": lines, "payout": payout}
