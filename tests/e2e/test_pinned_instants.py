"""The whole stack at awkward instants: the first minute of a month (and of a week), the last minute of a fiscal
quarter and year whose fiscal year starts in April, the day a DST change makes 25 hours, 29 February, and
31 December 23:59 in a zone 13 hours ahead of UTC.

Each instant runs its own stack (ingest, scoring, gateway, notifier) with every process's clock pinned there
(SALESPULSE_CLOCK_AT, frozen). What the stack answers is compared with figures written out by hand below —
period keys, period bounds, local times — never with a second reading of a clock or with the product's own
calendar code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from services.common.clock import Clock
from tests.e2e.screens import format_on_page, screen_url, wait_ready
from tests.support.receivers import Hook, Mailbox, receiver_env
from tests.support.stack import Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

KINDS = ("day", "week", "month", "quarter", "year")
PLAN_KINDS = ("week", "month", "quarter", "year")
QUOTA = 10_000
WON_NOW = 25_000  # the fast rep's deal at the pinned instant: 250 % of quota, ahead of pace in every plan
WON_NEAR = 1_000  # and one at a neighbouring instant, in another period of some kinds
MIN_ELAPSED = 0.01  # CONTRACT §4: pace and forecast are null before 1 % of the period has gone
DIGEST_MIN_ELAPSED = 0.4  # SALESPULSE_NOTIFY_DIGEST_MIN_ELAPSED (its default)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class Instant:
    """An instant, the business calendar it is seen in, and what that calendar makes of it (by hand)."""

    name: str
    now: datetime
    timezone: str
    fiscal_year_start_month: int
    keys: dict[str, str]
    """The period keys of `now`, by kind."""
    bounds: dict[str, tuple[datetime, datetime]]
    """[start, end) of the plan periods containing `now`, as instants with the offsets in force then."""
    near: datetime
    """A neighbouring instant on the other side of at least one period boundary..."""
    near_keys: dict[str, str]
    """...and its period keys."""
    quiet: tuple[str, str]
    """Quiet hours of the fast rep that contain `now` on the business wall clock..."""
    quiet_end: datetime
    """...and the instant they end."""
    month_label: str
    quarter_label: str

    def elapsed(self, kind: str) -> float:
        start, end = self.bounds[kind]
        return (self.now - start) / (end - start)

    def value(self, kind: str) -> int:
        """The fast rep's revenue in the period of `kind` containing now."""
        return WON_NOW + (WON_NEAR if self.near_keys[kind] == self.keys[kind] else 0)


INSTANTS = [
    Instant(
        name="first-minute-of-a-month-and-week",
        now=at("2027-03-01T00:00:30-05:00"),
        timezone="America/New_York",
        fiscal_year_start_month=1,
        keys={"day": "2027-03-01", "week": "2027-W09", "month": "2027-03", "quarter": "FY2027-Q1", "year": "FY2027"},
        bounds={
            "week": (at("2027-03-01T00:00:00-05:00"), at("2027-03-08T00:00:00-05:00")),
            "month": (at("2027-03-01T00:00:00-05:00"), at("2027-04-01T00:00:00-04:00")),  # DST begins on 14 March
            "quarter": (at("2027-01-01T00:00:00-05:00"), at("2027-04-01T00:00:00-04:00")),
            "year": (at("2027-01-01T00:00:00-05:00"), at("2028-01-01T00:00:00-05:00")),
        },
        near=at("2027-02-28T23:59:30-05:00"),
        near_keys={"day": "2027-02-28", "week": "2027-W08", "month": "2027-02", "quarter": "FY2027-Q1",
                   "year": "FY2027"},
        quiet=("22:00", "07:00"),
        quiet_end=at("2027-03-01T07:00:00-05:00"),
        month_label="March 2027",
        quarter_label="Q1 FY2027",
    ),
    Instant(
        name="last-minute-of-a-fiscal-quarter-and-year",
        now=at("2027-03-31T23:59:30+05:30"),
        timezone="Asia/Kolkata",
        fiscal_year_start_month=4,
        keys={"day": "2027-03-31", "week": "2027-W13", "month": "2027-03", "quarter": "FY2027-Q4", "year": "FY2027"},
        bounds={
            "week": (at("2027-03-29T00:00:00+05:30"), at("2027-04-05T00:00:00+05:30")),
            "month": (at("2027-03-01T00:00:00+05:30"), at("2027-04-01T00:00:00+05:30")),
            "quarter": (at("2027-01-01T00:00:00+05:30"), at("2027-04-01T00:00:00+05:30")),
            "year": (at("2026-04-01T00:00:00+05:30"), at("2027-04-01T00:00:00+05:30")),
        },
        near=at("2027-04-01T00:00:30+05:30"),
        near_keys={"day": "2027-04-01", "week": "2027-W13", "month": "2027-04", "quarter": "FY2028-Q1",
                   "year": "FY2028"},
        quiet=("23:00", "06:00"),
        quiet_end=at("2027-04-01T06:00:00+05:30"),
        month_label="March 2027",
        quarter_label="Q4 FY2027",
    ),
    Instant(
        name="the-25-hour-day-of-a-dst-change",
        now=at("2026-10-25T12:00:00+01:00"),
        timezone="Europe/Berlin",
        fiscal_year_start_month=10,
        keys={"day": "2026-10-25", "week": "2026-W43", "month": "2026-10", "quarter": "FY2027-Q1", "year": "FY2027"},
        bounds={
            "week": (at("2026-10-19T00:00:00+02:00"), at("2026-10-26T00:00:00+01:00")),
            "month": (at("2026-10-01T00:00:00+02:00"), at("2026-11-01T00:00:00+01:00")),
            "quarter": (at("2026-10-01T00:00:00+02:00"), at("2027-01-01T00:00:00+01:00")),
            "year": (at("2026-10-01T00:00:00+02:00"), at("2027-10-01T00:00:00+02:00")),
        },
        near=at("2026-10-24T23:30:00+02:00"),  # the evening before, still summer time
        near_keys={"day": "2026-10-24", "week": "2026-W43", "month": "2026-10", "quarter": "FY2027-Q1",
                   "year": "FY2027"},
        quiet=("11:00", "13:00"),
        quiet_end=at("2026-10-25T13:00:00+01:00"),
        month_label="October 2026",
        quarter_label="Q1 FY2027",
    ),
    Instant(
        name="29-february-the-last-day-of-a-fiscal-year",
        now=at("2028-02-29T12:00:00+00:00"),
        timezone="UTC",
        fiscal_year_start_month=3,
        keys={"day": "2028-02-29", "week": "2028-W09", "month": "2028-02", "quarter": "FY2028-Q4", "year": "FY2028"},
        bounds={
            "week": (at("2028-02-28T00:00:00+00:00"), at("2028-03-06T00:00:00+00:00")),
            "month": (at("2028-02-01T00:00:00+00:00"), at("2028-03-01T00:00:00+00:00")),
            "quarter": (at("2027-12-01T00:00:00+00:00"), at("2028-03-01T00:00:00+00:00")),
            "year": (at("2027-03-01T00:00:00+00:00"), at("2028-03-01T00:00:00+00:00")),
        },
        near=at("2028-03-01T00:00:30+00:00"),
        near_keys={"day": "2028-03-01", "week": "2028-W09", "month": "2028-03", "quarter": "FY2029-Q1",
                   "year": "FY2029"},
        quiet=("08:00", "12:30"),
        quiet_end=at("2028-02-29T12:30:00+00:00"),
        month_label="February 2028",
        quarter_label="Q4 FY2028",
    ),
    Instant(
        name="31-december-23-59-thirteen-hours-ahead-of-utc",
        now=at("2026-12-31T23:59:00+13:00"),
        timezone="Pacific/Auckland",
        fiscal_year_start_month=1,
        keys={"day": "2026-12-31", "week": "2026-W53", "month": "2026-12", "quarter": "FY2026-Q4", "year": "FY2026"},
        bounds={
            "week": (at("2026-12-28T00:00:00+13:00"), at("2027-01-04T00:00:00+13:00")),
            "month": (at("2026-12-01T00:00:00+13:00"), at("2027-01-01T00:00:00+13:00")),
            "quarter": (at("2026-10-01T00:00:00+13:00"), at("2027-01-01T00:00:00+13:00")),
            "year": (at("2026-01-01T00:00:00+13:00"), at("2027-01-01T00:00:00+13:00")),
        },
        near=at("2027-01-01T00:00:30+13:00"),  # 11:00:30 UTC on 31 December: already next year here
        near_keys={"day": "2027-01-01", "week": "2026-W53", "month": "2027-01", "quarter": "FY2027-Q1",
                   "year": "FY2027"},
        quiet=("21:00", "08:00"),
        quiet_end=at("2027-01-01T08:00:00+13:00"),
        month_label="December 2026",
        quarter_label="Q4 FY2026",
    ),
]


def plan(kind: str) -> dict[str, Any]:
    return {
        "name": f"Revenue per {kind}", "metric": "revenue", "period": kind, "effective_from": "2020-01-01",
        "participants": {"teams": ["t"], "reps": []}, "quota": QUOTA,
        "tiers": [
            {"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.05},
            {"tier_id": "starter", "name": "Starter", "threshold": 0.2, "rate": 0.06},
            {"tier_id": "target", "name": "Target", "threshold": 1.0, "rate": 0.08},
        ],
    }


def won(event_id: str, rep: str, amount: int, when: datetime) -> dict[str, Any]:
    stamp = when.isoformat()
    return {"event_id": event_id, "type": "deal", "occurred_at": stamp, "deal_id": f"d-{event_id}", "owner_id": rep,
            "stage": "won", "amount": amount, "closed_at": stamp}


@dataclass
class Pinned:
    instant: Instant
    stack: Stack
    mailbox: Mailbox

    def get(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.stack.api}{path}", params=params, headers=self.stack.headers, timeout=10)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module", params=INSTANTS, ids=[i.name for i in INSTANTS])
def pinned(request: pytest.FixtureRequest, broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pinned]:
    instant: Instant = request.param
    local = instant.now.strftime("%H:%M")  # the business wall clock (each `now` carries its zone's offset)
    hook = Hook()
    with Mailbox() as mailbox:
        stack = sqlite_stack(
            broker, tmp_path_factory, "pin", clock=Clock(instant.now),
            SALESPULSE_TIMEZONE=instant.timezone,
            SALESPULSE_FISCAL_YEAR_START_MONTH=str(instant.fiscal_year_start_month),
            **{
                **receiver_env(mailbox, hook),
                "SALESPULSE_NOTIFY_DEFAULT_CHANNELS": "in_app",
                "SALESPULSE_NOTIFY_DIGEST_SCHEDULE": "daily",
                "SALESPULSE_NOTIFY_DIGEST_AT": local,  # the slot came this very minute
            },
        )
        try:
            stack.start()
            with httpx.Client(base_url=stack.api, headers=stack.headers, timeout=30) as api:
                api.put("/v1/teams/t", json={"name": "T", "manager_rep_id": None}).raise_for_status()
                for rep in ("mgr", "fast", "slow"):
                    api.put(f"/v1/reps/{rep}", json={"name": rep.title(), "team_id": "t",
                                                     "email": f"{rep}@example.com"}).raise_for_status()
                api.put("/v1/teams/t", json={"name": "T", "manager_rep_id": "mgr"}).raise_for_status()
                for kind in PLAN_KINDS:
                    api.put(f"/v1/plans/{kind}", json=plan(kind)).raise_for_status()
                api.put("/v1/boards/month", json={"title": "Revenue this month", "metric": "revenue",
                                                  "period": "month", "scope": {"teams": []}, "size": 10,
                                                  "plan_id": "month"}).raise_for_status()
                api.put("/v1/reps/fast/preferences", json={
                    "channels": ["email"], "quiet_hours": {"start": instant.quiet[0], "end": instant.quiet[1]},
                    "max_per_hour": None,
                }).raise_for_status()
            events = [won("now", "fast", WON_NOW, instant.now), won("near", "fast", WON_NEAR, instant.near)]
            httpx.post(f"{stack.ingest}/v1/events", json=events, headers=stack.headers, timeout=30).raise_for_status()
            run = Pinned(instant, stack, mailbox)
            wait_until(lambda: run.get("/v1/reps/fast/kpis", period="year")["kpis"]["revenue"] == instant.value("year"),
                       timeout=60, what="the fast rep's deals in the KPIs")
            wait_until(lambda: len(run.get("/v1/reps/fast/progress")["plans"]) == len(PLAN_KINDS),
                       timeout=30, what="progress in every plan")
            # The notifier comes last, so the digest it makes at once sees the deals already scored.
            stack.start_service("notifier")
            stack.wait_healthy("notifier", "/v1/ready")
            yield run
        finally:
            stack.stop()
            hook.close()


def test_kpis_without_a_date_answer_the_periods_of_now_and_a_neighbouring_instant_lands_in_its_own(
    pinned: Pinned,
) -> None:
    instant = pinned.instant
    for kind in KINDS:
        body = pinned.get("/v1/reps/fast/kpis", period=kind)
        assert body["period_key"] == instant.keys[kind], kind
        assert body["kpis"]["revenue"] == instant.value(kind), kind
        near = pinned.get("/v1/reps/fast/kpis", period=kind, date=instant.near.date().isoformat())
        assert near["period_key"] == instant.near_keys[kind], kind
        if instant.near_keys[kind] != instant.keys[kind]:
            assert near["kpis"]["revenue"] == WON_NEAR, kind


def test_pace_and_forecast_take_the_real_share_of_each_period_gone(pinned: Pinned) -> None:
    instant = pinned.instant
    progress = {p["plan_id"]: p for p in pinned.get("/v1/reps/fast/progress")["plans"]}
    for kind in PLAN_KINDS:
        entry = progress[kind]
        assert entry["period_key"] == instant.keys[kind], kind
        assert entry["value"] == instant.value(kind), kind
        elapsed = instant.elapsed(kind)
        if elapsed < MIN_ELAPSED:
            assert (entry["pace"], entry["forecast_attainment"]) == (None, None), kind
        else:
            want = instant.value(kind) / QUOTA / elapsed
            assert entry["pace"] == pytest.approx(want, abs=1e-6), kind
            assert entry["forecast_attainment"] == pytest.approx(want, abs=1e-6), kind


def test_the_board_ranks_the_current_period(pinned: Pinned) -> None:
    instant = pinned.instant
    standings = pinned.get("/v1/boards/month/standings")
    assert standings["period_key"] == instant.keys["month"]
    assert standings["entries"][0]["rep_id"] == "fast"
    assert standings["entries"][0]["value"] == instant.value("month")
    assert standings["entries"][0]["attainment"] == pytest.approx(instant.value("month") / QUOTA)


def test_rep_page_and_tv_board_name_the_periods_of_now(pinned: Pinned, open_page: Any) -> None:
    instant = pinned.instant
    progress = {p["plan_id"]: p for p in pinned.get("/v1/reps/fast/progress")["plans"]}
    page = open_page(width=390, height=844)
    page.goto(screen_url(pinned.stack, "/screens/rep/fast"))
    wait_ready(page)
    cards = page.eval_on_selector_all(
        ".plan",
        """cards => Object.fromEntries(cards.map(c => [c.dataset.planId, {
            period: c.querySelector('.plan-period').textContent,
            facts: Object.fromEntries([...c.querySelectorAll('.facts > div')].map(
                d => [d.querySelector('dt').textContent, d.querySelector('dd').textContent])),
        }]))""",
    )
    assert cards["month"]["period"].startswith(f"{instant.month_label} · ")
    assert cards["quarter"]["period"].startswith(f"{instant.quarter_label} · ")
    for kind in PLAN_KINDS:
        facts, forecast = cards[kind]["facts"], progress[kind]["forecast_attainment"]
        if forecast is None:
            assert facts["Pace"].endswith("too early to tell") and facts["Forecast"].startswith("—"), kind
        else:
            assert facts["Pace"].endswith("ahead of pace"), kind
            assert facts["Forecast"].startswith(format_on_page(page, "formatPercent", forecast)), kind

    board = open_page()
    board.goto(screen_url(pinned.stack, "/screens/board/month"))
    wait_ready(board)
    assert board.text_content(".board-period").startswith(f"{instant.month_label} · ")


def test_quiet_hours_defer_each_crossing_to_their_end_on_the_wall_clock(pinned: Pinned) -> None:
    instant = pinned.instant

    def deliveries() -> list[dict[str, Any]] | None:
        log = pinned.get("/v1/notifications", rep_id="fast", limit="50")
        emails = [d for n in log for d in n["deliveries"] if d["channel"] == "email"]
        return emails if len(emails) == 2 * len(PLAN_KINDS) else None  # Starter and Target in every plan

    emails = wait_until(deliveries, timeout=30, what="the fast rep's crossings recorded")
    assert {d["status"] for d in emails} == {"deferred"}
    assert {datetime.fromisoformat(d["due_at"]) for d in emails} == {instant.quiet_end}
    log = pinned.get("/v1/notifications", rep_id="fast", limit="50")
    assert {(n["plan_id"], n["period_key"]) for n in log} == {(kind, instant.keys[kind]) for kind in PLAN_KINDS}


def test_the_digest_lists_who_is_behind_pace_once_enough_of_each_period_has_gone(pinned: Pinned) -> None:
    instant = pinned.instant
    message = wait_until(
        lambda: next((m for m in pinned.mailbox.messages if m["X-Salespulse-Digest-Id"]), None),
        timeout=30, what="the coaching digest of this slot",
    )
    assert message["To"] == "mgr@example.com"
    text = message.get_body(("plain",)).get_content()
    line = r"^- (\w+): Revenue per (\w+) (\S+) — attainment 0%, pace 0\.00 with ([\d,]+)% of the period gone$"
    rows = [m.groups() for m in map(re.compile(line).match, text.splitlines()) if m]
    listed = {(name, kind, key) for name, kind, key, _ in rows}
    behind = {("Slow", kind, instant.keys[kind]) for kind in PLAN_KINDS if instant.elapsed(kind) >= DIGEST_MIN_ELAPSED}
    assert listed == behind, text
    for _, kind, _, gone in rows:
        assert abs(int(gone.replace(",", "")) - 100 * instant.elapsed(kind)) <= 0.5, (kind, gone)


def test_every_instant_sits_where_its_name_says() -> None:
    """The hand-written figures above are what each case claims to test."""
    first, last, dst, leap, new_year = INSTANTS
    assert first.now - first.bounds["month"][0] == timedelta(seconds=30) == first.now - first.bounds["week"][0]
    assert last.bounds["year"][1] - last.now == timedelta(seconds=30) == last.bounds["quarter"][1] - last.now
    assert last.fiscal_year_start_month != 1
    day_start, day_end = at("2026-10-25T00:00:00+02:00"), at("2026-10-26T00:00:00+01:00")
    assert day_end - day_start == timedelta(hours=25) and day_start <= dst.now < day_end
    assert (leap.now.month, leap.now.day) == (2, 29)
    assert new_year.now.utcoffset() == timedelta(hours=13) and new_year.bounds["year"][1] - new_year.now == timedelta(
        minutes=1)
