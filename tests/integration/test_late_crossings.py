"""Tier crossings of any plan period, when the credit lands (CONTRACT §4): a deal closed on the last day of a
quarter and entered days later lifts the rep past Target in the quarter that ended — recorded once and
pushed, with wording that names the period; one into a quarter that ended months ago is recorded and
listed, but pushed nowhere (SALESPULSE_NOTIFY_MAX_AGE)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.common.clock import Clock
from tests.support.receivers import Hook, Mailbox, receiver_env
from tests.support.stack import Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

NOW = datetime(2027, 1, 4, 9, 30, tzinfo=UTC)
"""A Monday morning: the books of FY2026-Q4 (October–December 2026) closed three days ago."""
PLAN = {
    "name": "AE quarterly", "metric": "revenue", "period": "quarter", "effective_from": "2020-01-01",
    "participants": {"teams": [], "reps": []}, "quota": 10_000,
    "tiers": [{"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.05},
              {"tier_id": "target", "name": "Target", "threshold": 1.0, "rate": 0.08, "reward": "A trophy"}],
}


def won(event_id: str, rep: str, amount: int, closed_at: str) -> dict[str, Any]:
    return {"event_id": event_id, "type": "deal", "occurred_at": NOW.isoformat(), "deal_id": f"d-{event_id}",
            "owner_id": rep, "stage": "won", "amount": amount, "closed_at": closed_at}


@pytest.fixture(scope="module")
def late(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Mailbox]]:
    hook = Hook()
    with Mailbox() as mailbox:
        stack = sqlite_stack(broker, tmp_path_factory, "late", clock=Clock(NOW), **{
            **receiver_env(mailbox, hook), "SALESPULSE_NOTIFY_DEFAULT_CHANNELS": "in_app,email"})
        try:
            stack.start()
            stack.start_service("notifier")
            stack.wait_healthy("notifier", "/v1/ready")
            with httpx.Client(base_url=stack.api, headers=stack.headers, timeout=30) as api:
                for rep in ("ana", "ben"):
                    api.put(f"/v1/reps/{rep}", json={"name": rep.title(), "email": f"{rep}@example.com"}
                            ).raise_for_status()
                api.put("/v1/plans/quarterly", json=PLAN).raise_for_status()
            yield stack, mailbox
        finally:
            stack.stop()
            hook.close()


def log_of(stack: Stack, rep: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.api}/v1/notifications", params={"rep_id": rep}, headers=stack.headers, timeout=10)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def test_a_deal_of_last_quarter_entered_this_week_records_and_pushes_one_crossing_naming_that_quarter(
    late: tuple[Stack, Mailbox],
) -> None:
    stack, mailbox = late
    events = [won("q4-a", "ana", 6_000, "2026-11-15T15:00:00Z"), won("q4-b", "ana", 4_500, "2026-12-31T16:45:00Z")]
    response = httpx.post(f"{stack.ingest}/v1/events", json=events, headers=stack.headers, timeout=30)
    assert response.status_code == 202, response.text

    def pushed() -> list[dict[str, Any]] | None:
        entries = log_of(stack, "ana")
        sent = entries and all(d["status"] == "sent" for d in entries[0]["deliveries"])
        return entries if sent and any(m["To"] == "ana@example.com" for m in mailbox.messages) else None

    entries = wait_until(pushed, timeout=60, what="ana's Target crossing in FY2026-Q4 sent")
    assert [(e["plan_id"], e["period_key"], e["tier"]["tier_id"]) for e in entries] == [
        ("quarterly", "FY2026-Q4", "target")]
    assert {d["channel"] for d in entries[0]["deliveries"]} == {"board", "in_app", "email"}
    message = next(m for m in mailbox.messages if m["To"] == "ana@example.com")
    assert "FY2026-Q4, which ended on 2026-12-31" in message["Subject"]
    # The progress the rep's screen shows is this quarter's: nothing yet.
    progress = httpx.get(f"{stack.api}/v1/reps/ana/progress", headers=stack.headers, timeout=10).json()
    assert [(p["period_key"], p["value"]) for p in progress["plans"]] == [("FY2027-Q1", 0.0)]


def test_a_crossing_in_a_quarter_that_ended_months_ago_is_listed_but_pushed_nowhere(
    late: tuple[Stack, Mailbox],
) -> None:
    stack, mailbox = late
    response = httpx.post(f"{stack.ingest}/v1/events", json=[won("q3", "ben", 12_000, "2026-08-20T10:00:00Z")],
                          headers=stack.headers, timeout=30)
    assert response.status_code == 202, response.text
    entries = wait_until(lambda: log_of(stack, "ben"), timeout=60, what="ben's FY2026-Q3 crossing recorded")
    assert [(e["period_key"], e["tier"]["tier_id"], e["deliveries"]) for e in entries] == [
        ("FY2026-Q3", "target", [])]
    kpis = httpx.get(f"{stack.api}/v1/reps/ben/kpis", params={"period": "quarter", "date": "2026-08-20"},
                     headers=stack.headers, timeout=10).json()
    assert kpis["kpis"]["revenue"] == 12_000.0
    assert not any(m["To"] == "ben@example.com" for m in mailbox.messages)
