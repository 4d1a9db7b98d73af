"""Currencies (services/scoring/domain/fx.py): the rate of a close date in the business timezone, the latest earlier
one, held without any; per-credit conversion half to even; restatements when a rate arrives or is corrected."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import msgspec
import pytest

from services.scoring.codecs import DealState, decode_deal_state, encode_deal_state
from services.scoring.domain.deals import DealSnapshot
from services.scoring.domain.fx import HELD, ONE, FxTable, applied_credits, both_credits, convert
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.ledger_fold import LedgerFold
from services.scoring.domain.periods import Calendar
from services.scoring.domain.rollup import deal_delta, restatement

RATES = {"EUR": {"currency": "EUR", "rates": {"2026-03-01": "1.10", "2026-03-02": "1.20", "2026-03-05": "1.0832"}}}
FX = FxTable("USD", RATES)
NEW_YORK = ZoneInfo("America/New_York")


def deal(amount: str = "1000.00", *, currency: str | None = "EUR", stage: str = "won",
         closed_at: datetime = datetime(2026, 3, 2, 12, tzinfo=UTC), **fields: object) -> DealSnapshot:
    return DealSnapshot(
        deal_id="d1", event_id=str(fields.pop("event_id", "e1")), version=fields.pop("version", 1),  # type: ignore[arg-type]
        occurred_at=closed_at, owner_id="ana", stage=stage, amount=Decimal(amount),  # type: ignore[arg-type]
        closed_at=closed_at, currency=currency, **fields,  # type: ignore[arg-type]
    )


def test_the_rate_of_a_date_is_that_days_or_the_latest_earlier_one() -> None:
    assert FX.rate("EUR", date(2026, 3, 2)) == Decimal("1.20")
    assert FX.rate("EUR", date(2026, 3, 4)) == Decimal("1.20")  # no rate on the 4th: the 2nd's
    assert FX.rate("EUR", date(2026, 3, 5)) == Decimal("1.0832")
    assert FX.rate("EUR", date(2027, 1, 1)) == Decimal("1.0832")
    assert FX.rate("EUR", date(2026, 2, 28)) is HELD  # nothing on or before it
    assert FX.rate("GBP", date(2026, 3, 2)) is HELD  # no rate at all
    assert FX.rate("USD", date(2026, 3, 2)) == ONE and FX.rate(None, date(2026, 3, 2)) == ONE


def test_the_close_date_is_taken_in_the_business_timezone() -> None:
    # 02:00 UTC on 2 March is still 1 March in New York (21:00): the 1st's rate there, the 2nd's in UTC.
    late = deal(closed_at=datetime(2026, 3, 2, 2, tzinfo=UTC))
    assert FX.deal_rate(late, UTC) == Decimal("1.20")
    assert FX.deal_rate(late, NEW_YORK) == Decimal("1.10")


def test_only_money_needs_a_rate() -> None:
    early = datetime(2026, 1, 1, tzinfo=UTC)  # before every EUR rate
    assert FX.deal_rate(deal(closed_at=early), UTC) is HELD
    assert FX.deal_rate(deal(stage="lost", closed_at=early), UTC) == ONE  # a lost deal counts at once
    assert FX.deal_rate(deal("0.00", closed_at=early), UTC) == ONE
    assert FX.deal_rate(deal(currency="USD", closed_at=early), UTC) == ONE
    assert FX.deal_rate(deal(currency=None, closed_at=early), UTC) == ONE


def test_each_credit_is_converted_on_its_own_to_the_cent_half_to_even() -> None:
    split = deal("0.50", splits=(("ana", Decimal("0.5")), ("ben", Decimal("0.5"))))
    credits = applied_credits(split, Decimal("0.5"))
    assert [(c.rep_id, c.revenue) for c in credits] == [("ana", Decimal("0.12")), ("ben", Decimal("0.12"))]
    assert [c.revenue for c in applied_credits(deal("0.50"), Decimal("0.5"))] == [Decimal("0.25")]
    assert [c.revenue for c in applied_credits(deal("0.30"), Decimal("0.5"))] == [Decimal("0.15")]
    assert [c.revenue for c in applied_credits(deal("0.70"), Decimal("0.5"))] == [Decimal("0.35")]
    assert [c.revenue for c in applied_credits(deal("0.10"), Decimal("0.25"))] == [Decimal("0.02")]  # 0.025
    assert [c.revenue for c in applied_credits(deal("0.30"), Decimal("0.25"))] == [Decimal("0.08")]  # 0.075
    assert convert(applied_credits(deal(), ONE), HELD) == []
    [won] = applied_credits(deal(), ONE)
    assert (won.revenue, won.deals_won) == (Decimal("1000.00"), Decimal(1))


def test_a_held_deal_is_counted_once_its_rate_arrives_roll_up_included() -> None:
    snapshot = deal()
    moves = restatement(snapshot, ({"ana": "mia"}, HELD), ({"ana": "mia"}, Decimal("1.2")))
    assert [(c.rep_id, c.rollup, c.revenue, c.deals_won) for c in moves] == [
        ("ana", False, Decimal("1200.00"), Decimal(1)), ("mia", True, Decimal("1200.00"), Decimal(1)),
    ]
    # Nothing changed: nothing moves.
    assert restatement(snapshot, ({"ana": "mia"}, Decimal("1.2")), ({"ana": "mia"}, Decimal("1.2"))) == []


def test_a_corrected_rate_moves_the_difference_and_a_manager_change_only_the_roll_up() -> None:
    snapshot = deal("333.33")
    moves = restatement(snapshot, (None, Decimal("1.2")), ({}, Decimal("1.1")))
    # 366.663 -> 366.66 less 399.996 -> 400.00: each conversion rounded, then the difference taken.
    assert [(c.rep_id, c.revenue, c.deals_won) for c in moves] == [("ana", Decimal("-33.34"), Decimal(0))]
    moved = restatement(snapshot, ({"ana": "mo"}, Decimal("1.2")), ({"ana": "mia"}, Decimal("1.2")))
    assert sorted((c.rep_id, c.revenue) for c in moved) == [("mia", Decimal("400.00")), ("mo", Decimal("-400.00"))]


def test_a_deal_correction_takes_back_what_was_credited_at_the_old_rate() -> None:
    before, after = deal("1000.00"), deal("500.00", event_id="e2", version=2)
    credits, _ = deal_delta(before, None, after, {}, {}, rate_before=Decimal("1.2"), rate=Decimal("1.1"))
    assert [(c.rep_id, c.revenue, c.deals_won) for c in credits] == [("ana", Decimal("-650.00"), Decimal(0))]
    # Held before, counted now: all of it; counted before, held now (its currency's rates deleted): all back.
    credits, _ = deal_delta(before, None, after, {}, {}, rate_before=HELD, rate=Decimal("1.1"))
    assert [(c.revenue, c.deals_won) for c in credits] == [(Decimal("550.00"), Decimal(1))]
    credits, _ = deal_delta(before, None, after, {}, {}, rate_before=Decimal("1.2"), rate=HELD)
    assert [(c.revenue, c.deals_won) for c in credits] == [(Decimal("-1200.00"), Decimal(-1))]


@pytest.mark.parametrize(("rate", "pending", "pending_rate"), [
    (ONE, None, ONE), (Decimal("1.0832"), None, ONE), (HELD, None, ONE), (HELD, {"ana": "mia"}, Decimal("0.5")),
    (Decimal("2"), {}, HELD),
])
def test_a_deal_state_keeps_its_rate_through_the_changelog(rate: object, pending: object, pending_rate: object) -> None:
    state = DealState(7, deal(), None, {"ana": "mia"}, pending, 3, rate, pending_rate)  # type: ignore[arg-type]
    again = decode_deal_state(encode_deal_state(state))
    assert (again.rate, again.pending, again.pending_rate, again.snapshot.currency) == (
        rate, pending, pending_rate if pending is not None else ONE, "EUR"
    )
    assert replace(again, event_json=None) == state


def test_statements_fold_with_the_same_rates_and_show_them() -> None:
    calendar = Calendar("UTC", 1)
    events = [
        {"event_id": "e1", "type": "deal", "deal_id": "d1", "owner_id": "ana", "stage": "won", "amount": "100.00",
         "currency": "EUR", "occurred_at": "2026-03-03T10:00:00Z", "closed_at": "2026-03-03T10:00:00Z"},
        {"event_id": "e2", "type": "deal", "deal_id": "d2", "owner_id": "ana", "stage": "won", "amount": "50.00",
         "occurred_at": "2026-03-03T10:00:00Z", "closed_at": "2026-03-03T10:00:00Z"},
        {"event_id": "e3", "type": "deal", "deal_id": "d3", "owner_id": "ana", "stage": "won", "amount": "70.00",
         "currency": "GBP", "occurred_at": "2026-03-03T10:00:00Z", "closed_at": "2026-03-03T10:00:00Z"},
    ]
    fold = LedgerFold(fx=FX).add_all(enumerate(events, start=1))
    assert fold.totals("ana", "month", "2026-03", calendar).revenue == Decimal("170.00")  # GBP held
    lines = {line.deal_id: line for line in fold.lines("ana", "revenue", "month", "2026-03", calendar, ("primary",))}
    assert set(lines) == {"d1", "d2"}
    assert (lines["d1"].credit, lines["d1"].currency, lines["d1"].rate) == (Decimal("120.00"), "EUR", Decimal("1.20"))
    assert lines["d1"].to_dict()["rate"] == "1.20" and "currency" not in lines["d2"].to_dict()
    without = LedgerFold().add_all(enumerate(events, start=1))  # no FX table: amounts as they are
    assert without.totals("ana", "month", "2026-03", calendar).revenue == Decimal("220.00")


def test_a_deal_in_another_currency_also_credits_its_own_amounts_in_it() -> None:
    before, after = deal("1000.00"), deal("400.00", event_id="e2", version=2, overlays=(("cy", Decimal("0.5")),))
    credits, _ = deal_delta(None, None, before, {}, {}, rate=HELD, reporting="USD")
    assert [(c.rep_id, c.currency, c.revenue) for c in credits] == [("ana", "EUR", Decimal("1000.00"))]  # held
    credits, _ = deal_delta(before, None, after, {"ana": {"team_id": "t"}}, {"t": {"manager_rep_id": "mia"}},
                            rate_before=HELD, rate=Decimal("1.2"), reporting="USD")
    assert sorted((c.rep_id, c.currency or "", c.rollup, c.overlay, c.revenue) for c in credits) == sorted([
        ("ana", "", False, False, Decimal("480.00")),
        ("ana", "EUR", False, False, Decimal("-600.00")),
        ("cy", "", False, True, Decimal("240.00")),
        ("cy", "EUR", False, True, Decimal("200.00")),
        ("mia", "", True, False, Decimal("480.00")),  # a manager's roll-up is in the reporting currency only
    ])
    assert deal_delta(None, None, deal(currency="USD"), {}, {}, reporting="USD")[0][0].currency is None


def test_sums_by_currency_count_in_no_kpi_of_the_reporting_currency_and_survive_storage() -> None:
    totals = KpiTotals()
    for credit in sum(both_credits(deal("100.00"), Decimal("1.5"), "USD"), []):
        totals.apply_credit(credit)
    totals.apply_credit(msgspec.structs.replace(applied_credits(deal("7.00"), ONE)[0], currency="JPY"))
    assert totals.value("revenue") == Decimal("150.00") and totals.report()["deals_won"] == 1.0
    assert totals.in_currency("EUR").value("revenue") == Decimal("100.00")
    assert totals.in_currency("JPY").report()["revenue"] == 7.0 and totals.in_currency("CHF").is_zero()
    again = KpiTotals.from_dict(totals.to_dict())
    assert again == totals and (again + again).in_currency("EUR").revenue == Decimal("200.00")
    assert not totals.is_zero() and KpiTotals(currencies={"EUR": KpiTotals()}).to_dict() == {}


def test_the_pipeline_projection_converts_open_deals_at_the_days_rate() -> None:
    calendar = Calendar("UTC", 1)
    opened = {"type": "deal", "owner_id": "ana", "stage": "open", "occurred_at": "2026-03-01T10:00:00Z"}
    fold = LedgerFold(fx=FX).add_all(enumerate([
        {**opened, "event_id": "o1", "deal_id": "o1", "amount": "100.00", "currency": "EUR"},
        {**opened, "event_id": "o2", "deal_id": "o2", "amount": "70.00", "currency": "GBP"},  # no rate: adds nothing
        {**opened, "event_id": "o3", "deal_id": "o3", "amount": "5.00"},
    ], start=1))
    projected = fold.open_deals_of("ana", calendar)(datetime(2026, 3, 3, 12, tzinfo=UTC))
    assert sorted(c.revenue for c in projected) == [Decimal("5.00"), Decimal("120.00")]
