"""KPI totals for one rep or team in one period, and the KPIs derived from them (CONTRACT §3).

Only sums are stored; rates are recomputed from the sums every time, so team rates are never averages.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any, Final

from schemas.kpis import (
    ACTIVITY_KIND_PATTERN,
    ACTIVITY_PREFIX,
    ALL_ROLES,
    KPI_NAMES,
    OVERLAY,
    PRIMARY,
    is_activity_kind,
    is_kpi_name,
)
from services.scoring.domain.credits import Credit

__all__ = ["ACTIVITY_KIND_PATTERN", "KPI_NAMES", "KpiTotals", "is_activity_kind", "is_kpi_name"]


ZERO: Final = Decimal(0)
_CENT: Final = Decimal("0.01")
_MICRO: Final = Decimal("0.000001")
# A fixed context, so a caller's decimal settings never change a reported rate.
_RATES: Final = Context(prec=28, rounding=ROUND_HALF_UP)
_MONEY_KPIS: Final = frozenset({"revenue", "avg_deal_size"})


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    if not denominator:
        return None
    return _RATES.divide(numerator, denominator)


def _json_number(value: Decimal, step: Decimal) -> float:
    # `+ 0.0` turns a negative zero into 0.0, so JSON never shows "-0.0".
    return float(value.quantize(step, rounding=ROUND_HALF_UP)) + 0.0


@dataclass(slots=True)
class KpiTotals:
    """The additive sums behind every KPI: money and share-weighted counts as Decimal, activities as int.

    The deal sums are the primary credit; `overlay` holds the overlay credit's deal sums (None when there is
    none). `value` and `report` count both, a rep's own number; `credited(roles)` chooses (a team: primary).
    `team` holds a manager's team roll-up (their members' credit, with its own overlay part), which counts in
    no KPI of the manager's own: `rollup(roles)` reads it for a manager plan. `currencies` holds, per currency other
    than the reporting one, the deal sums of the deals in that currency in that currency (credits with a
    `currency`), again in no KPI of the reporting currency: `in_currency(code)` reads them."""

    revenue: Decimal = ZERO
    deals_won: Decimal = ZERO
    deals_lost: Decimal = ZERO
    renewals_won: Decimal = ZERO
    renewals_lost: Decimal = ZERO
    activities: int = 0
    activities_by_kind: dict[str, int] = field(default_factory=dict)
    overlay: KpiTotals | None = None
    team: KpiTotals | None = None
    currencies: dict[str, KpiTotals] | None = None

    # -- folding ----------------------------------------------------------------------------------

    def apply_credit(self, credit: Credit) -> None:
        """Add a credit's signed deltas (a roll-up credit's into `team`, an overlay credit's into `overlay`, a credit
        in a deal's own currency into `currencies`, each with the same nesting)."""
        target = self
        if credit.currency is not None:
            if self.currencies is None:
                self.currencies = {}
            target = self.currencies.get(credit.currency) or self.currencies.setdefault(credit.currency, KpiTotals())
        if credit.rollup:
            if self.team is None:
                self.team = KpiTotals()
            target = self.team
        if credit.overlay:
            if target.overlay is None:
                target.overlay = KpiTotals()
            target = target.overlay
        target.add_measures(credit)

    def add_measures(self, other: Credit | KpiTotals) -> None:
        """Add the deal measures (revenue, deals and renewals won and lost) of a credit or of totals, in place.
        A credit or a minute usually carries two or three non-zero ones; skipping zeros is cheaper than adding."""
        if other.revenue:
            self.revenue += other.revenue
        if other.deals_won:
            self.deals_won += other.deals_won
        if other.deals_lost:
            self.deals_lost += other.deals_lost
        if other.renewals_won:
            self.renewals_won += other.renewals_won
        if other.renewals_lost:
            self.renewals_lost += other.renewals_lost

    def add_activity(self, kind: str, count: int = 1) -> None:
        """Count `count` activities of `kind`."""
        by_kind = self.activities_by_kind
        current = by_kind.get(kind)
        if current is None:
            if not is_activity_kind(kind):
                raise ValueError(f"activity kind {kind!r} must match {ACTIVITY_KIND_PATTERN.pattern}")
            current = 0
        self.activities += count
        if current + count:
            by_kind[kind] = current + count
        else:
            by_kind.pop(kind, None)

    def merged(self, others: Iterable[KpiTotals]) -> KpiTotals:
        """A new total: this one plus `others` (a team is the sum of its members)."""
        result = self.copy()
        for other in others:
            result.add(other)
        return result

    def add(self, other: KpiTotals) -> None:
        """Add `other` into this total, in place."""
        if other.overlay is not None:
            if self.overlay is None:
                self.overlay = KpiTotals()
            self.overlay.add(other.overlay)
        if other.team is not None:
            if self.team is None:
                self.team = KpiTotals()
            self.team.add(other.team)
        if other.currencies:
            if self.currencies is None:
                self.currencies = {}
            for code, sums in other.currencies.items():
                self.currencies.setdefault(code, KpiTotals()).add(sums)
        self.add_measures(other)
        self.activities += other.activities
        by_kind = self.activities_by_kind
        for kind, count in other.activities_by_kind.items():
            total = by_kind.get(kind, 0) + count
            if total:
                by_kind[kind] = total
            else:
                by_kind.pop(kind, None)

    def __add__(self, other: KpiTotals) -> KpiTotals:
        if not isinstance(other, KpiTotals):
            return NotImplemented
        return self.merged((other,))

    def copy(self) -> KpiTotals:
        """An independent copy."""
        return KpiTotals(
            self.revenue,
            self.deals_won,
            self.deals_lost,
            self.renewals_won,
            self.renewals_lost,
            self.activities,
            dict(self.activities_by_kind),
            None if self.overlay is None else self.overlay.copy(),
            None if self.team is None else self.team.copy(),
            None if self.currencies is None else {code: sums.copy() for code, sums in self.currencies.items()},
        )

    def credited(self, roles: Collection[str]) -> KpiTotals:
        """These totals counting the credit of `roles` only (primary, overlay; see schemas.kpis), activities
        always; the result has no separate overlay or team part. Itself when that changes nothing."""
        overlay = self.overlay if OVERLAY in roles else None
        primary = PRIMARY in roles
        if primary and self.overlay is None and self.team is None:
            return self
        result = KpiTotals(activities=self.activities, activities_by_kind=dict(self.activities_by_kind))
        for part in (self if primary else None, overlay):
            if part is not None:
                result.revenue += part.revenue
                result.deals_won += part.deals_won
                result.deals_lost += part.deals_lost
                result.renewals_won += part.renewals_won
                result.renewals_lost += part.renewals_lost
        return result

    def is_zero(self) -> bool:
        """True when every sum is zero."""
        return not (
            self.revenue
            or self.deals_won
            or self.deals_lost
            or self.renewals_won
            or self.renewals_lost
            or self.activities
            or self.activities_by_kind
            or (self.overlay is not None and not self.overlay.is_zero())
            or (self.team is not None and not self.team.is_zero())
            or (self.currencies is not None and any(not sums.is_zero() for sums in self.currencies.values()))
        )

    def in_currency(self, code: str) -> KpiTotals:
        """The deal sums of the deals in currency `code` (not the reporting one), in it; no activities."""
        found = None if self.currencies is None else self.currencies.get(code)
        return KpiTotals() if found is None else found

    def rollup(self, roles: Collection[str]) -> KpiTotals:
        """A manager's team roll-up counting the members' credit of `roles` (see `credited`)."""
        return KpiTotals() if self.team is None else self.team.credited(roles)

    # -- reading ----------------------------------------------------------------------------------

    def value(self, metric: str) -> Decimal | None:
        """The exact value of any KPI name (see `is_kpi_name`) over every credit role; None for a rate or
        average over zero."""
        if self.overlay is not None:
            return self.credited(ALL_ROLES).value(metric)
        if metric == "revenue":
            return self.revenue
        if metric == "deals_won":
            return self.deals_won
        if metric == "deals_lost":
            return self.deals_lost
        if metric == "win_rate":
            return _ratio(self.deals_won, self.deals_won + self.deals_lost)
        if metric == "avg_deal_size":
            return _ratio(self.revenue, self.deals_won)
        if metric == "renewals_won":
            return self.renewals_won
        if metric == "renewals_lost":
            return self.renewals_lost
        if metric == "retention_rate":
            return _ratio(self.renewals_won, self.renewals_won + self.renewals_lost)
        if metric == "activities":
            return Decimal(self.activities)
        if is_kpi_name(metric):
            return Decimal(self.activities_by_kind.get(metric[len(ACTIVITY_PREFIX) :], 0))
        raise ValueError(
            f"unknown KPI {metric!r}; expected one of {', '.join(KPI_NAMES)} or activities.<kind>"
        )

    def report(self) -> dict[str, float | int | None]:
        """Every KPI as a JSON number (every credit role): money to cents, counts and rates to 6 decimals, null
        for 0/0."""
        if self.overlay is not None:
            return self.credited(ALL_ROLES).report()
        report: dict[str, float | int | None] = {}
        for name in KPI_NAMES:
            if name == "activities":
                report[name] = self.activities
                continue
            value = self.value(name)
            step = _CENT if name in _MONEY_KPIS else _MICRO
            report[name] = None if value is None else _json_number(value, step)
        for kind in sorted(self.activities_by_kind):
            report[ACTIVITY_PREFIX + kind] = self.activities_by_kind[kind]
        return report

    # -- storage ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-safe form: decimals as strings, zero sums left out."""
        data: dict[str, Any] = {}
        if self.revenue:
            data["revenue"] = str(self.revenue)
        if self.deals_won:
            data["deals_won"] = str(self.deals_won)
        if self.deals_lost:
            data["deals_lost"] = str(self.deals_lost)
        if self.renewals_won:
            data["renewals_won"] = str(self.renewals_won)
        if self.renewals_lost:
            data["renewals_lost"] = str(self.renewals_lost)
        if self.activities:
            data["activities"] = self.activities
        if self.activities_by_kind:
            data["activities_by_kind"] = dict(self.activities_by_kind)
        if self.overlay is not None and not self.overlay.is_zero():
            data["overlay"] = self.overlay.to_dict()
        if self.team is not None and not self.team.is_zero():
            data["team"] = self.team.to_dict()
        if self.currencies:
            kept = {code: sums.to_dict() for code, sums in sorted(self.currencies.items()) if not sums.is_zero()}
            if kept:
                data["currencies"] = kept
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KpiTotals:
        """Rebuild totals from `to_dict()` output."""
        # Restores decode many of these, so absent (zero) sums skip the Decimal constructor.
        try:
            get = data.get
            revenue, won, lost = get("revenue"), get("deals_won"), get("deals_lost")
            renewals_won, renewals_lost = get("renewals_won"), get("renewals_lost")
            by_kind = get("activities_by_kind")
            overlay, team, currencies = get("overlay"), get("team"), get("currencies")
            return cls(
                ZERO if revenue is None else Decimal(revenue),
                ZERO if won is None else Decimal(won),
                ZERO if lost is None else Decimal(lost),
                ZERO if renewals_won is None else Decimal(renewals_won),
                ZERO if renewals_lost is None else Decimal(renewals_lost),
                int(get("activities", 0)),
                {str(kind): int(count) for kind, count in by_kind.items()} if by_kind else {},
                None if overlay is None else cls.from_dict(overlay),
                None if team is None else cls.from_dict(team),
                None if currencies is None else {str(code): cls.from_dict(sums) for code, sums in currencies.items()},
            )
        except (TypeError, ValueError, AttributeError, InvalidOperation) as exc:
            raise ValueError(f"not stored KPI totals: {exc!r}") from exc
