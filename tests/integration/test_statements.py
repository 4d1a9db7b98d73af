"""Period close, statements and restatement on a real stack (docs/statements.md).

November 2026 is closed with three won deals; then one is reversed, one's amount changes and one's close date
moves into December. The frozen November statement does not move; December's statement carries three
adjustment lines with the exact differences and the payout difference; once December is closed in turn,
January carries nothing for November — nothing is counted twice."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

PLAN = {
    "plan_id": "monthly", "name": "Monthly revenue", "metric": "revenue", "period": "month",
    "effective_from": "2026-10-01", "participants": {"teams": [], "reps": []}, "quota": 1000,
    "tiers": [
        {"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.1},
        {"tier_id": "target", "name": "Target", "threshold": 1.0, "rate": 0.2},
    ],
}


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = sqlite_stack(broker, tmp_path_factory, "stmts")
    stack.start()
    try:
        httpx.put(f"{stack.api}/v1/reps/ana", json={"name": "Ana", "team_id": None}, headers=stack.headers,
                  timeout=10).raise_for_status()
        httpx.put(f"{stack.api}/v1/plans/monthly", json=PLAN, headers=stack.headers, timeout=10).raise_for_status()
        yield stack
    finally:
        stack.stop()


def deal(stack: Stack, deal_id: str, version: int, stage: str, amount: str, closed_at: str) -> None:
    event = {"event_id": f"{deal_id}-v{version}", "type": "deal", "occurred_at": closed_at, "deal_id": deal_id,
             "version": version, "owner_id": "ana", "stage": stage, "amount": amount}
    if stage != "open":
        event["closed_at"] = closed_at
    answer = httpx.post(f"{stack.ingest}/v1/events", json=event, headers=stack.headers, timeout=10)
    assert answer.status_code == 202, answer.text


def get(stack: Stack, path: str, **params: Any) -> Any:
    answer = httpx.get(f"{stack.api}{path}", params=params, headers=stack.headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def close(stack: Stack, period: str, **params: Any) -> httpx.Response:
    return httpx.post(f"{stack.api}/v1/plans/monthly/periods/{period}/close", params=params, headers=stack.headers,
                      timeout=60)


def progress(stack: Stack, day: str) -> dict[str, Any]:
    entries = get(stack, "/v1/reps/ana/progress", date=day)["plans"]
    return next(p for p in entries if p["plan_id"] == "monthly")


def statement_of(stack: Stack, period: str) -> dict[str, Any]:
    listed = get(stack, "/v1/reps/ana/statements")["statements"]
    found = next((s for s in listed if s["period_key"] == period and s["plan_id"] == "monthly"), None)
    if found is None:  # an open period other than the current one: its id is plan, period and rep
        from services.api.statements import statement_id

        return get(stack, f"/v1/statements/{statement_id('monthly', period, 'ana')}")
    return get(stack, f"/v1/statements/{found['statement_id']}")


def test_close_restate_and_carry_once(stack: Stack) -> None:
    deal(stack, "D1", 1, "won", "500", "2026-11-10T12:00:00Z")
    deal(stack, "D2", 1, "won", "700", "2026-11-12T12:00:00Z")
    deal(stack, "D3", 1, "won", "300", "2026-11-20T12:00:00Z")
    wait_until(lambda: progress(stack, "2026-11-15")["value"] == 1500, timeout=30, what="November's deals scored")
    live = progress(stack, "2026-11-15")

    early = close(stack, "2026-12")
    assert early.status_code == 409 and "force=true" in early.json()["detail"]
    closed = close(stack, "2026-11")
    assert closed.status_code == 200, closed.text
    assert closed.json()["already_closed"] is False and closed.json()["statements"] >= 1
    again = close(stack, "2026-11")
    assert again.status_code == 200 and again.json()["already_closed"] is True  # closing twice is a no-op

    november = statement_of(stack, "2026-11")
    assert november["status"] == "closed"
    assert Decimal(november["value"]) == 1500 == sum(Decimal(line["credit"]) for line in november["lines"])
    assert Decimal(november["payout"]) == Decimal("200.00") == Decimal(str(live["payout"]))  # 1000×10 % + 500×20 %
    assert [line["deal_id"] for line in november["lines"]] == ["D1", "D2", "D3"]
    assert november["lines"][0]["event_ids"] == ["D1-v1"]
    assert progress(stack, "2026-11-15")["closed"] is True and progress(stack, "2026-11-15")["restated"] is False

    # After the close: a reversal, an amount fix, a close date moved out of November.
    deal(stack, "D1", 2, "open", "500", "2026-12-01T09:00:00Z")
    deal(stack, "D2", 2, "won", "650", "2026-11-12T12:00:00Z")
    deal(stack, "D3", 2, "won", "300", "2026-12-02T12:00:00Z")
    wait_until(lambda: progress(stack, "2026-11-15")["value"] == 650, timeout=30, what="the restated November")
    assert progress(stack, "2026-11-15")["restated"] is True
    assert statement_of(stack, "2026-11") == november  # frozen

    december = statement_of(stack, "2026-12")
    assert december["status"] == "open"
    assert [line["deal_id"] for line in december["lines"]] == ["D3"] and Decimal(december["value"]) == 300
    [group] = december["adjustments"]
    assert group["closed_period"] == "2026-11"
    assert {line["deal_id"]: Decimal(line["credit"]) for line in group["lines"]} == {
        "D1": Decimal(-500), "D2": Decimal(-50), "D3": Decimal(-300)}
    assert {line["deal_id"]: line["event_ids"] for line in group["lines"]} == {
        "D1": ["D1-v2"], "D2": ["D2-v2"], "D3": ["D3-v2"]}
    assert Decimal(group["payout"]) == Decimal("65.00") - Decimal("200.00")  # a clawback: negative
    assert Decimal(december["total_payout"]) == Decimal("30.00") + Decimal("-135.00")

    rows = list(csv.reader(io.StringIO(httpx.get(
        f"{stack.api}/v1/statements/{december['statement_id']}", params={"format": "csv"}, headers=stack.headers,
        timeout=30).text)))
    assert ["adjustment", "2026-11", "deal", "D1", "", "", "", "", "-500.00", "", "D1-v2"] in rows, rows[12:]

    assert close(stack, "2026-12", force="true").status_code == 200
    frozen_december = statement_of(stack, "2026-12")
    assert frozen_december["status"] == "closed" and frozen_december["adjustments"] == december["adjustments"]
    january = statement_of(stack, "2027-01")
    assert january["adjustments"] == []  # November's differences were carried once, by December

    # A plan edited after a close changes what it pays from then on, not what closed periods paid.
    richer = {**PLAN, "tiers": [{**PLAN["tiers"][0], "rate": 0.5}, PLAN["tiers"][1]]}
    httpx.put(f"{stack.api}/v1/plans/monthly", json=richer, headers=stack.headers, timeout=10).raise_for_status()
    try:
        wait_until(lambda: get(stack, "/v1/plans/monthly")["tiers"][0]["rate"] == 0.5, timeout=10, what="the edit")
        deal(stack, "D2", 3, "won", "660", "2026-11-12T12:00:00Z")  # one more fix to November
        wait_until(lambda: progress(stack, "2026-11-15")["value"] == 660, timeout=30, what="November fixed again")
        [group] = statement_of(stack, "2027-01")["adjustments"]
        assert group["closed_period"] == "2026-11" and group["lines"][0]["credit"] == "10.00"
        assert Decimal(group["payout"]) == Decimal("1.00")  # 10 more at November's 10 %, not the new 50 %
    finally:
        httpx.put(f"{stack.api}/v1/plans/monthly", json=PLAN, headers=stack.headers, timeout=10).raise_for_status()


def test_statements_are_pay_data(stack: Stack) -> None:
    _, screen = stack.create_key("screen", "tv", "--boards", "floor")
    _, own = stack.create_key("rep", "ana-phone", "--rep-id", "ana")
    _, other = stack.create_key("rep", "ben-phone", "--rep-id", "ben")
    path = f"{stack.api}/v1/reps/ana/statements"
    assert httpx.get(path, headers={"Authorization": f"Bearer {own}"}, timeout=10).status_code == 200
    assert httpx.get(path, headers={"Authorization": f"Bearer {other}"}, timeout=10).status_code == 403
    assert httpx.get(path, headers={"Authorization": f"Bearer {screen}"}, timeout=10).status_code == 403
    closing = httpx.post(f"{stack.api}/v1/plans/monthly/periods/2026-10/close",
                         headers={"Authorization": f"Bearer {own}"}, timeout=10)
    assert closing.status_code == 403
    assert httpx.get(f"{stack.api}/v1/statements/st_bm9wZQ", headers=stack.headers, timeout=10).status_code == 404


def what_if(stack: Stack, plan: dict[str, Any], period_key: str) -> dict[str, Any]:
    answer = httpx.post(f"{stack.api}/v1/plans/what-if", json={"plan": plan, "period_key": period_key},
                        headers=stack.headers, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_what_if_a_draft_plan_on_history_touches_nothing(stack: Stack) -> None:
    deal(stack, "C1", 1, "won", "800", "2026-10-05T12:00:00Z")
    deal(stack, "C2", 1, "won", "600", "2026-10-20T12:00:00Z")
    deal(stack, "C3", 1, "open", "500", "2026-12-03T12:00:00Z")
    wait_until(lambda: progress(stack, "2026-10-15")["value"] == 1400, timeout=30, what="October scored")
    before = (get(stack, "/v1/reps/ana/progress", date="2026-10-15"), get(stack, "/v1/reps/ana/kpis",
              period="month", date="2026-10-15"), get(stack, "/v1/notifications"))

    same = what_if(stack, PLAN, "2026-10")
    ana = next(row for row in same["participants"] if row["rep_id"] == "ana")
    assert ana["draft"] == ana["live"] and Decimal(ana["live"]["payout"]) == Decimal("180.00")  # 100 + 400×20 %
    assert Decimal(same["total_cost"]["difference"]) == 0

    draft = {**PLAN, "tiers": [{"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.15},
                               {"tier_id": "target", "name": "Target", "threshold": 1.0, "rate": 0.25}]}
    changed = what_if(stack, draft, "2026-10")
    ana = next(row for row in changed["participants"] if row["rep_id"] == "ana")
    assert Decimal(ana["draft"]["payout"]) == Decimal("250.00")  # 1,000 × 15 % + 400 × 25 %, by hand
    assert Decimal(ana["live"]["payout"]) == Decimal("180.00")
    assert Decimal(changed["total_cost"]["draft"]) - Decimal(changed["total_cost"]["live"]) == Decimal("70.00")
    assert changed["elapsed_ms"] >= 0

    after = (get(stack, "/v1/reps/ana/progress", date="2026-10-15"), get(stack, "/v1/reps/ana/kpis",
             period="month", date="2026-10-15"), get(stack, "/v1/notifications"))
    assert after == before  # live state, progress and the notification log are as they were
    assert get(stack, "/v1/plans/monthly")["tiers"][0]["rate"] == 0.1  # the live plan is unchanged

    bad = httpx.post(f"{stack.api}/v1/plans/what-if", json={"plan": {**PLAN, "quota": 0}, "period_key": "2026-10"},
                     headers=stack.headers, timeout=30)
    assert bad.status_code == 422 and "quota" in bad.json()["detail"]


def test_projection_if_the_open_pipeline_closes(stack: Stack) -> None:
    for deal_id, stage, amount in (("E1", "won", "400"), ("E2", "open", "250"), ("E3", "open", "125.50")):
        event = {"event_id": f"{deal_id}-v1", "type": "deal", "occurred_at": "2026-12-03T12:00:00Z",
                 "deal_id": deal_id, "version": 1, "owner_id": "eve", "stage": stage, "amount": amount}
        if stage == "won":
            event["closed_at"] = "2026-12-03T12:00:00Z"
        assert httpx.post(f"{stack.ingest}/v1/events", json=event, headers=stack.headers,
                          timeout=10).status_code == 202
    wait_until(lambda: httpx.get(f"{stack.api}/v1/reps/eve/projection", headers=stack.headers,
                                 timeout=10).status_code == 200, timeout=30, what="eve known")
    wait_until(lambda: get(stack, "/v1/reps/eve/projection")["plans"][0]["open_deals"] == 2, timeout=30,
               what="eve's open deals in the ledger")
    [plan] = get(stack, "/v1/reps/eve/projection")["plans"]
    assert Decimal(plan["now"]["value"]) == 400
    assert Decimal(plan["if_pipeline_closes"]["value"]) == Decimal("775.50")  # 400 + 250 + 125.50
    assert Decimal(plan["now"]["payout"]) == Decimal("40.00")
    assert Decimal(plan["if_pipeline_closes"]["payout"]) == Decimal("77.55")  # 775.50 × 10 %


def test_a_statement_lists_primary_and_overlay_credit_as_lines_of_their_own(stack: Stack) -> None:
    """Overlay credit (docs/plans-and-boards.md): cy holds half of a deal's split and a 20 % overlay on it, as in
    Salesforce's own example. Her statement shows two lines that add up to the value live progress shows; a plan
    that counts the primary credit only shows one."""
    from services.api.statements import statement_id

    httpx.put(f"{stack.api}/v1/reps/cy", json={"name": "Cy"}, headers=stack.headers, timeout=10).raise_for_status()
    own = {**PLAN, "plan_id": "monthly-own", "name": "Own deals", "credit_roles": ["primary"]}
    httpx.put(f"{stack.api}/v1/plans/monthly-own", json=own, headers=stack.headers, timeout=10).raise_for_status()
    event = {"event_id": "O1-v1", "type": "deal", "occurred_at": "2026-10-05T12:00:00Z", "deal_id": "O1",
             "owner_id": "cy", "stage": "won", "amount": "1000", "closed_at": "2026-10-05T12:00:00Z",
             "splits": [{"rep_id": "cy", "share": 0.5}, {"rep_id": "ben", "share": 0.5},
                        {"rep_id": "cy", "share": 0.2, "role": "overlay"}]}
    assert httpx.post(f"{stack.ingest}/v1/events", json=event, headers=stack.headers, timeout=10).status_code == 202

    def values() -> dict[str, float]:
        return {p["plan_id"]: p["value"] for p in get(stack, "/v1/reps/cy/progress", date="2026-10-15")["plans"]}

    wait_until(lambda: values() == {"monthly": 700, "monthly-own": 500}, timeout=30, what="October's deal scored")
    both = get(stack, f"/v1/statements/{statement_id('monthly', '2026-10', 'cy')}")
    assert [(line["key"], line["role"], line["share"], Decimal(line["credit"])) for line in both["lines"]] == [
        ("deal:O1", "primary", "0.5", Decimal(500)), ("deal:O1:overlay", "overlay", "0.2", Decimal(200))]
    assert Decimal(both["value"]) == 700
    primary = get(stack, f"/v1/statements/{statement_id('monthly-own', '2026-10', 'cy')}")
    assert [line["key"] for line in primary["lines"]] == ["deal:O1"] and Decimal(primary["value"]) == 500


def test_a_corrected_fx_rate_reaches_a_closed_statement_as_an_adjustment(stack: Stack) -> None:
    """Currencies (docs/plans-and-boards.md): a statement line of a converted deal shows its currency and rate;
    a rate corrected after the close is restated like a deal correction — the frozen statement stays, the next
    open one carries the exact difference."""
    plan = {**PLAN, "plan_id": "fx-monthly", "name": "FX monthly", "participants": {"teams": [], "reps": ["eve"]}}
    httpx.put(f"{stack.api}/v1/plans/fx-monthly", json=plan, headers=stack.headers, timeout=10).raise_for_status()
    rates = {"rates": [{"currency": "EUR", "date": "2026-10-01", "rate": "1.10"}]}
    httpx.put(f"{stack.api}/v1/fx-rates", json=rates, headers=stack.headers, timeout=10).raise_for_status()
    event = {"event_id": "FX1-v1", "type": "deal", "occurred_at": "2026-10-15T12:00:00Z", "deal_id": "FX1",
             "version": 1, "owner_id": "eve", "stage": "won", "amount": "1000.00", "currency": "EUR",
             "closed_at": "2026-10-15T12:00:00Z"}
    assert httpx.post(f"{stack.ingest}/v1/events", json=event, headers=stack.headers).status_code == 202

    def value(day: str) -> float | None:
        entries = get(stack, "/v1/reps/eve/progress", date=day)["plans"]
        return next((p["value"] for p in entries if p["plan_id"] == "fx-monthly"), None)

    def statement(period: str) -> Any:
        from services.api.statements import statement_id

        return get(stack, f"/v1/statements/{statement_id('fx-monthly', period, 'eve')}")

    wait_until(lambda: value("2026-10-15") == 1100.0, timeout=30, what="the EUR deal at October's rate")
    closed = httpx.post(f"{stack.api}/v1/plans/fx-monthly/periods/2026-10/close", headers=stack.headers, timeout=60)
    assert closed.status_code == 200, closed.text
    october = statement("2026-10")
    [line] = october["lines"]
    assert (line["deal_id"], line["amount"], line["currency"], line["rate"], line["credit"]) == (
        "FX1", "1000.00", "EUR", "1.10", "1100.00")

    rates = {"rates": [{"currency": "EUR", "date": "2026-10-01", "rate": "1.1250"}]}  # the treasury's correction
    httpx.put(f"{stack.api}/v1/fx-rates", json=rates, headers=stack.headers, timeout=10).raise_for_status()
    wait_until(lambda: value("2026-10-15") == 1125.0, timeout=30, what="October restated at the corrected rate")
    assert statement("2026-10") == october  # frozen
    [group] = statement("2026-11")["adjustments"]
    assert group["closed_period"] == "2026-10"
    [adjustment] = group["lines"]
    assert (adjustment["deal_id"], adjustment["credit"], adjustment["event_ids"]) == ("FX1", "25.00", [])
    assert (adjustment["currency"], adjustment["rate"], adjustment["rate_at_close"]) == ("EUR", "1.1250", "1.10")
