"""Currencies on a real stack (CONTRACT §1, Currencies): a deal in another currency than the reporting one (USD
here) is credited at the FX rate of its close date in the business timezone, or the latest earlier one; with no
rate at all its credit is held — listed and counted in a metric — until a rate arrives; a corrected rate restates
the month exactly once. Each credit is converted on its own, to the cent, half to even.

Expectations are computed here from the rules, never read back from the product."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

import httpx
import pytest

from tests.support.clock import TEST_CLOCK
from tests.support.metrics import metric, scrape
from tests.support.stack import Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

NOW = TEST_CLOCK.now().replace(microsecond=0)
MONTH_START = NOW.replace(day=1, hour=9, minute=0, second=0)
"""Every deal here closes in the stack's current month, on days counted from its first."""


def day(n: int, hour: int = 9) -> datetime:
    return MONTH_START.replace(day=n, hour=hour)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def won(event_id: str, rep: str, amount: str, currency: str, closed: datetime, **extra: object) -> dict[str, object]:
    return {
        "event_id": event_id, "type": "deal", "occurred_at": iso(closed), "deal_id": f"d-{event_id}",
        "owner_id": rep, "stage": "won", "amount": amount, "currency": currency, "closed_at": iso(closed), **extra,
    }


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Stack:  # type: ignore[misc]
    stack = sqlite_stack(broker, tmp_path_factory, "fx").start()
    yield stack
    stack.stop()


def post(stack: Stack, events: list[dict[str, object]]) -> None:
    r = httpx.post(f"{stack.ingest}/v1/events", json=events, headers=stack.headers, timeout=30)
    assert r.status_code == 202, r.text


def put_rates(stack: Stack, rates: list[dict[str, str]]) -> dict[str, object]:
    r = httpx.put(f"{stack.api}/v1/fx-rates", json={"rates": rates}, headers=stack.headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def kpis(stack: Stack, rep: str, **params: str) -> dict[str, object] | None:
    r = httpx.get(f"{stack.api}/v1/reps/{rep}/kpis", params={"period": "month", "date": NOW.date().isoformat(),
                  **params}, headers=stack.headers, timeout=10)
    return r.json() if r.status_code == 200 else None  # type: ignore[no-any-return]


def revenue(stack: Stack, rep: str, **params: str) -> float | None:
    found = kpis(stack, rep, **params)
    return None if found is None else found["kpis"]["revenue"]  # type: ignore[index]


def held(stack: Stack) -> list[dict[str, object]]:
    r = httpx.get(f"{stack.api}/v1/fx-rates/held", headers=stack.headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["held"]  # type: ignore[no-any-return]


def test_a_deal_is_converted_at_its_close_dates_rate_or_the_latest_earlier_one(stack: Stack) -> None:
    put_rates(stack, [
        {"currency": "EUR", "date": day(2).date().isoformat(), "rate": "1.0832"},
        {"currency": "EUR", "date": day(5).date().isoformat(), "rate": "1.1000"},
    ])
    post(stack, [
        won("e1", "eva", "1000.00", "EUR", day(2)),  # that day's rate
        won("e2", "eli", "1000.00", "EUR", day(4)),  # no rate on day 4: day 2's
        won("e3", "eli", "333.33", "EUR", day(7)),  # day 5's, 366.663 -> 366.66
    ])
    wait_until(lambda: revenue(stack, "eva") == 1083.20, timeout=20, what="eva's EUR deal at day 2's rate")
    expected = cents(Decimal("1000.00") * Decimal("1.0832")) + cents(Decimal("333.33") * Decimal("1.1"))
    wait_until(lambda: revenue(stack, "eli") == float(expected), timeout=20, what="eli's deals at earlier rates")

    # Asked in the deal currency: the deals in it, in it; in the reporting currency: every deal, converted.
    in_euros = kpis(stack, "eli", currency="EUR")
    assert in_euros is not None and in_euros["currency"] == "EUR"
    assert (in_euros["kpis"]["revenue"], in_euros["kpis"]["deals_won"]) == (1333.33, 2.0)  # type: ignore[index]
    assert kpis(stack, "eli", currency="USD") == kpis(stack, "eli") and kpis(stack, "eli")["currency"] == "USD"  # type: ignore[index]
    assert revenue(stack, "eli", currency="GBP") == 0.0
    r = httpx.get(f"{stack.api}/v1/reps/eli/kpis", params={"currency": "euro"}, headers=stack.headers)
    assert r.status_code == 422 and "ISO 4217" in r.json()["detail"]


def test_each_credit_is_converted_on_its_own_half_to_even(stack: Stack) -> None:
    # 0.50 split in two is 0.25 each (CONTRACT §1); at 0.5 each is 0.125, which rounds half to even to 0.12 —
    # so the two credits sum to 0.24, not the 0.25 the whole amount would convert to.
    put_rates(stack, [{"currency": "CHF", "date": day(1).date().isoformat(), "rate": "0.5"}])
    post(stack, [won("h1", "hal", "0.50", "CHF", day(3),
                     splits=[{"rep_id": "hal", "share": "0.5"}, {"rep_id": "hop", "share": "0.5"}])])
    wait_until(lambda: (revenue(stack, "hal"), revenue(stack, "hop")) == (0.12, 0.12), timeout=20,
               what="each half converted on its own")


def test_a_deal_without_any_rate_is_held_listed_and_counted_once_a_rate_arrives(stack: Stack) -> None:
    post(stack, [won("g1", "gil", "2000.00", "GBP", day(6)), won("g0", "gil", "10.00", "USD", day(6))])
    wait_until(lambda: revenue(stack, "gil") == 10.0, timeout=20, what="gil's USD deal (the GBP one held)")
    found = wait_until(lambda: held(stack) or None, timeout=20, what="the held GBP deal listed")
    assert [(h["deal_id"], h["currency"], h["amount"], h["closed_on"], h["rep_ids"]) for h in found] == [
        ("d-g1", "GBP", "2000.00", day(6).date().isoformat(), ["gil"])
    ]
    assert metric(scrape(stack), "salespulse_scoring_fx_held_deals", currency="GBP") == 1
    assert revenue(stack, "gil") == 10.0  # still held: nothing of it counted, not even at a guessed rate
    wait_until(lambda: revenue(stack, "gil", currency="GBP") == 2000.0, timeout=20,
               what="the held deal's own amount, known in its currency")

    # A rate dated after the close does not apply to it (no rate "on or before" the close date): still held.
    put_rates(stack, [{"currency": "GBP", "date": day(8).date().isoformat(), "rate": "1.30"}])
    post(stack, [won("g2", "gil", "100.00", "GBP", day(9))])
    wait_until(lambda: revenue(stack, "gil") == 140.0, timeout=20, what="gil's later GBP deal at day 8's rate")
    assert [h["deal_id"] for h in held(stack)] == ["d-g1"]

    put_rates(stack, [{"currency": "GBP", "date": day(1).date().isoformat(), "rate": "1.25"}])
    wait_until(lambda: revenue(stack, "gil") == 2640.0, timeout=20, what="the held deal counted at day 1's rate")
    wait_until(lambda: held(stack) == [] or None, timeout=20, what="the held list emptied")
    assert metric(scrape(stack), "salespulse_scoring_fx_held_deals_total") == 0


def test_a_corrected_rate_restates_the_month_exactly_once(stack: Stack) -> None:
    put_rates(stack, [{"currency": "JPY", "date": day(1).date().isoformat(), "rate": "0.0067"}])
    post(stack, [won("j1", "jun", "150000.00", "JPY", day(3)), won("j2", "jun", "99999.99", "JPY", day(4))])
    before = cents(Decimal("150000.00") * Decimal("0.0067")) + cents(Decimal("99999.99") * Decimal("0.0067"))
    wait_until(lambda: revenue(stack, "jun") == float(before), timeout=20, what="jun's JPY deals")

    put_rates(stack, [{"currency": "JPY", "date": day(1).date().isoformat(), "rate": "0.0071"}])  # a correction
    after = cents(Decimal("150000.00") * Decimal("0.0071")) + cents(Decimal("99999.99") * Decimal("0.0071"))
    wait_until(lambda: revenue(stack, "jun") == float(after), timeout=20, what="jun's month restated")
    # Sent again, the same rates change nothing (no second restatement).
    assert put_rates(stack, [{"currency": "JPY", "date": day(1).date().isoformat(), "rate": "0.0071"}]) == {
        "received": 1, "currencies_changed": []
    }
    post(stack, [won("j3", "jun", "1000.00", "JPY", day(5))])
    final = after + cents(Decimal("1000.00") * Decimal("0.0071"))
    wait_until(lambda: revenue(stack, "jun") == float(final), timeout=20, what="a later deal on the restated month")

    # A correction of the deal itself takes back exactly what it was credited at the rate it was converted at.
    post(stack, [won("j1b", "jun", "0.00", "JPY", day(3), deal_id="d-j1", version=2)])
    final -= cents(Decimal("150000.00") * Decimal("0.0071"))
    wait_until(lambda: revenue(stack, "jun") == float(final), timeout=20, what="the deal's correction")


def test_rates_come_as_csv_and_bad_rows_are_named_with_nothing_saved(stack: Stack) -> None:
    body = f"currency,date,rate\nSEK,{day(1).date()},0.095\nSEK,{day(2).date()},-1\nXYZ,{day(2).date()},1\n"
    r = httpx.put(f"{stack.api}/v1/fx-rates", content=body, headers={**stack.headers, "content-type": "text/csv"})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert [(e["line"], e["field"]) for e in problem["errors"]] == [(3, "rate"), (4, "currency")]
    assert "nothing was saved" in problem["detail"] and "line 3" in problem["detail"]
    assert httpx.get(f"{stack.api}/v1/fx-rates/SEK", headers=stack.headers).status_code == 404

    good = f"rate,currency,date\n0.095,SEK,{day(1).date()}\n0.096,SEK,{day(2).date()}\n"
    r = httpx.put(f"{stack.api}/v1/fx-rates", content=good, headers={**stack.headers, "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    stored = httpx.get(f"{stack.api}/v1/fx-rates/SEK", headers=stack.headers).json()
    assert stored == {"currency": "SEK", "rates": {str(day(1).date()): "0.095", str(day(2).date()): "0.096"}}

    r = httpx.put(f"{stack.api}/v1/fx-rates", json={"rates": [{"currency": "USD", "date": "2026-01-01", "rate": 1}]},
                  headers=stack.headers)
    assert r.status_code == 422 and "reporting currency" in r.json()["detail"]
    r = httpx.post(f"{stack.ingest}/v1/events", json=[won("bad", "x", "1.00", "EURO", day(2))], headers=stack.headers)
    assert r.status_code == 422 and "ISO 4217" in r.text
