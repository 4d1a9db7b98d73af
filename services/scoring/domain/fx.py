"""Currencies: a deal's credit converted to the reporting currency at the rate of its close date (CONTRACT §1,
Currencies; docs/plans-and-boards.md).

The FX table holds effective-dated daily rates per currency (config kind `fx`): on a date, one unit of the
currency is worth `rate` units of the reporting currency. A deal closed on a date in the business timezone takes
that date's rate, or the latest earlier one; with none at all its credit is **held** (`HELD`): nothing is
credited until a rate arrives. Each credit's revenue is converted on its own, rounded to the cent half to even.
A deal in the reporting currency (or none named), a lost deal and a won deal of amount 0 need no rate (`ONE`).
Pure: rate documents in, credits out.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from datetime import date, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

from msgspec.structs import replace

from services.scoring.domain.credits import Credit, contribution
from services.scoring.domain.deals import DealSnapshot

__all__ = [
    "HELD", "ONE", "FxTable", "Rate", "applied_credits", "both_credits", "convert", "decode_rate", "encode_rate"
]

ONE: Final = Decimal(1)
HELD: Final = None
_CENT: Final = Decimal("0.01")

Rate = Decimal | None
"""The rate a deal's credit was converted at: `ONE` (no conversion), a rate, or `HELD` (no rate yet)."""


class FxTable:
    """The daily rates of every currency, looked up by date (the latest rate on or before it)."""

    def __init__(self, reporting: str, documents: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.reporting = reporting
        self._dates: dict[str, list[date]] = {}
        self._rates: dict[str, list[Decimal]] = {}
        for currency, document in (documents or {}).items():
            pairs = sorted((date.fromisoformat(day), Decimal(str(rate))) for day, rate in document["rates"].items())
            self._dates[currency] = [day for day, _ in pairs]
            self._rates[currency] = [rate for _, rate in pairs]

    def rate(self, currency: str | None, on: date) -> Rate:
        """What one unit of `currency` was worth on `on`: that day's rate or the latest earlier one; `ONE` for the
        reporting currency; `HELD` when the currency has no rate on or before `on`."""
        if currency is None or currency == self.reporting:
            return ONE
        dates = self._dates.get(currency)
        if not dates:
            return HELD
        at = bisect_right(dates, on)
        return self._rates[currency][at - 1] if at else HELD

    def deal_rate(self, snapshot: DealSnapshot, zone: tzinfo) -> Rate:
        """The rate `snapshot`'s credit is converted at (see the module docstring)."""
        if snapshot.currency is None or snapshot.currency == self.reporting:
            return ONE
        if snapshot.stage != "won" or not snapshot.amount or snapshot.closed_at is None:
            return ONE
        return self.rate(snapshot.currency, snapshot.closed_at.astimezone(zone).date())


def convert(credits: Sequence[Credit], rate: Rate) -> list[Credit]:
    """`credits` in the reporting currency: each credit's revenue × `rate`, to the cent half to even; nothing
    when `HELD` (a held deal credits nothing, counts included, until its rate arrives)."""
    if rate is HELD:
        return []
    if rate == ONE:
        return list(credits)
    return [
        replace(credit, revenue=(credit.revenue * rate).quantize(_CENT, rounding=ROUND_HALF_EVEN))
        if credit.revenue else credit
        for credit in credits
    ]


def applied_credits(snapshot: DealSnapshot | None, rate: Rate) -> list[Credit]:
    """What `snapshot` credits in the reporting currency at `rate` (nothing for none)."""
    return [] if snapshot is None else convert(contribution(snapshot), rate)


def both_credits(
    snapshot: DealSnapshot | None, rate: Rate, reporting: str | None
) -> tuple[list[Credit], list[Credit]]:
    """`applied_credits(snapshot, rate)`, and what `snapshot` credits in its own currency when that is not
    `reporting`: the same credits, unconverted, marked with the currency (KPIs `?currency=`; held or not, a
    deal's own amounts are known; nothing when no reporting currency is given). The contribution is worked out
    once for both."""
    if snapshot is None:
        return [], []
    credits = contribution(snapshot)
    currency = snapshot.currency
    if reporting is None or currency is None or currency == reporting:
        return convert(credits, rate), []
    return convert(credits, rate), [replace(credit, currency=currency) for credit in credits]


def encode_rate(rate: Rate) -> str | None:
    """A rate as stored with a deal's state: a decimal string, or None when held."""
    return None if rate is HELD else str(rate)


def decode_rate(text: str | None) -> Rate:
    return HELD if text is None else Decimal(text)
