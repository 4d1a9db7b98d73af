"""A whole-stack scenario whose outcome can be compared between runs: a deterministic feed, a roster, plans
with tiers and boards (configured through the admin API), and a collector that turns what a stack answers
into one plain dict.

Two runs of the same scenario — one process of each service against several, an undisturbed run against
one with faults injected — must collect equal dicts. Typical use:

    scenario = build_scenario(size=3000)
    stack = stack_factory(database_url, **SCENARIO_ENV)   # then start its services
    configure(stack, scenario)
    post_feed(stack, scenario.feed.batches(500))
    wait_settled(stack, scenario)
    result = collect(stack, scenario)
    assert not differences(baseline, result)

The feed is the replay test's CRM feed (`crm_feed`: duplicates, reversals, stale versions, ties, splits,
activities; all of it in the past) thinned to about `size` events, plus a *live* part dated today that only
adds — won deals, lost deals, activities — so the tiers a rep reaches in the current plan periods are a
function of the final totals alone, whatever the batching, and can be expected independently
(`expected_crossings`). The live part is dated by the test stacks' pinned clock (tests/support/clock.py),
which every service of the run reads too, so a run never straddles the start of a business month.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from services.demo.roster import demo_reps, demo_teams
from tests.support.clock import TEST_CLOCK
from tests.support.crm_feed import (
    FISCAL_YEAR_START_MONTH,
    FX_RATES,
    STACK_ENV,
    TIMEZONE,
    Event,
    Expected,
    Feed,
    all_queries,
    crm_feed,
    expected_kpis,
    fetch_kpis,
    fx_rate_rows,
    get_patiently,
    mismatches,
    period_keys,
    year_queries,
)
from tests.support.stack import Stack, wait_until

__all__ = [
    "SCENARIO_ENV",
    "Crossing",
    "Scenario",
    "build_scenario",
    "collect",
    "collect_current",
    "configure",
    "crossing_problems",
    "crossings_of",
    "current_log",
    "current_only",
    "differences",
    "expected_crossings",
    "past_crossings_at_least",
    "fetch_json",
    "kpi_mismatches",
    "notification_log",
    "period_dates",
    "scenario_feed",
    "wait_settled",
]

SCENARIO_ENV: dict[str, str] = {**STACK_ENV, "SALESPULSE_NOTIFY_DIGEST_SCHEDULE": "off"}
"""Environment for every service of a scenario stack: the feed's time zone and fiscal year; no coaching
digests (they depend on the hour a run happens at, not on the events)."""

REVENUE_QUOTA = 10_000
TEAM_QUOTA = 60_000
"""A manager's monthly quota on their team's revenue: the teams' current months hold about 1.4–2.1 of it."""
REVENUE_UNIT = 2_500
"""A live rep wins 0–8 units of this today: 0 %–200 % of the monthly quota."""
ACTIVITY_QUOTA = 20
OVERRIDDEN_REP_INDEX = 3
"""The live rep (by position) whose revenue quota is overridden to 6,000: 3 units = 125 % exactly."""

Crossing = tuple[str, str, str, str]
"""(rep_id, plan_id, period_key, tier_id): what a tier crossing is unique on (CONTRACT §4)."""


# --- the feed ---------------------------------------------------------------------------------------


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _thinned(events: list[Event], size: int) -> list[Event]:
    """The events of every n-th deal (all of that deal's snapshots, re-sends included) and every n-th
    activity, n chosen so about `size` events remain; a deterministic, order-keeping subset."""
    step = max(1, round(len(events) / max(1, size)))
    deals = sorted({event["deal_id"] for event in events if event["type"] == "deal"})
    kept_deals = set(deals[::step])
    activities = sorted({event["event_id"] for event in events if event["type"] == "activity"})
    kept_activities = set(activities[::step])
    return [
        event
        for event in events
        if (event["deal_id"] in kept_deals if event["type"] == "deal" else event["event_id"] in kept_activities)
    ]


def _day_start(now: datetime) -> datetime:
    """Midnight of `now`'s business day (in the scenario's time zone), as an aware instant."""
    zone = ZoneInfo(TIMEZONE)
    local = now.astimezone(zone)
    return datetime(local.year, local.month, local.day, tzinfo=zone)


def live_reps(events: Iterable[Event]) -> list[str]:
    """The reps who own deals in the feed, sorted: the live part gives each a deterministic day."""
    return sorted({event["owner_id"] for event in events if event["type"] == "deal"})


def _live_events(reps: list[str], now: datetime) -> list[Event]:
    """Today's events, dated between the business day's start and `now`, in posting order. Rep i wins
    (i mod 9) × 2,500 in (i mod 3) + 1 deals (open, then won; some won snapshots re-sent), the next rep an
    overlay of half the first of them when i mod 4 = 2, loses one deal when i mod 4 = 1, and logs 5 × (i mod 7)
    activities; every fifth rep's deals are in EUR (converted at today's rate). Nothing is ever taken back."""
    start = _day_start(now)
    drafts: list[Event] = []
    for i, rep in enumerate(reps):
        units = i % 9
        if units:
            deals = i % 3 + 1
            total = units * REVENUE_UNIT
            amounts = [total // deals] * (deals - 1) + [total - total // deals * (deals - 1)]
            for d, amount in enumerate(amounts):
                overlay = reps[(i + 1) % len(reps)] if d == 0 and i % 4 == 2 else None
                drafts += _live_deal(f"live-{i}-won-{d}", rep, "won", amount, resend=(i + d) % 5 == 2, overlay=overlay,
                                     currency="EUR" if i % 5 == 4 else None)
        if i % 4 == 1:
            drafts += _live_deal(f"live-{i}-lost", rep, "lost", 900, resend=False)
        kinds = ("call", "email", "meeting", "demo")
        drafts += [
            {"event_id": f"live-{i}-act-{n}", "type": "activity", "rep_id": rep, "kind": kinds[n % len(kinds)]}
            for n in range(5 * (i % 7))
        ]
    # Spread over [start, now]: the n-th event (a re-send keeps its original's times) at an even step.
    span = max(now - start, timedelta(seconds=1))
    times: dict[str, str] = {}
    for n, draft in enumerate(drafts):
        times.setdefault(draft["event_id"], _stamp(start + span * (n + 1) / (len(drafts) + 1)))
    events = []
    for draft in drafts:
        event = dict(draft, occurred_at=times[draft["event_id"]])
        if event.get("stage") in ("won", "lost"):
            event["closed_at"] = event["occurred_at"]
        events.append(event)
    return events


def _live_deal(
    deal_id: str, rep: str, outcome: str, amount: int, *, resend: bool, overlay: str | None = None,
    currency: str | None = None,
) -> list[Event]:
    base = {"type": "deal", "deal_id": deal_id, "owner_id": rep, "amount": amount, "source": "scenario"}
    if currency is not None:
        base["currency"] = currency
    opened = dict(base, event_id=f"{deal_id}-v1", version=1, stage="open")
    closed = dict(base, event_id=f"{deal_id}-v2", version=2, stage=outcome)
    if overlay is not None:
        closed["splits"] = [{"rep_id": overlay, "share": "0.5", "role": "overlay"}]
    return [opened, closed, dict(closed)] if resend else [opened, closed]


def _interleaved(history: list[Event], live: list[Event]) -> list[Event]:
    """`live` spread evenly through `history`, each list keeping its own order: the live part arrives
    while the history streams in, not after it."""
    out: list[Event] = []
    cursor = 0
    for n, event in enumerate(live):
        upto = (n + 1) * len(history) // (len(live) + 1)
        out += history[cursor:upto]
        cursor = upto
        out.append(event)
    return out + history[cursor:]


def _count_resent(events: list[Event]) -> int:
    return len(events) - len({event["event_id"] for event in events})


def scenario_feed(size: int = 3000, now: datetime | None = None) -> Feed:
    """About `size` events of the CRM feed plus today's live part (a few hundred events); the same
    arguments always give the same feed. `now` (default: the test stacks' clock) dates the live part."""
    now = now or TEST_CLOCK.now()
    history = _thinned(crm_feed().events, size)
    events = _interleaved(history, _live_events(live_reps(history), now))
    return Feed(events, resent=_count_resent(events))


# --- roster, plans and boards -------------------------------------------------------------------------


def _plans(reps: list[str], managers: list[str]) -> list[dict[str, Any]]:
    """A monthly revenue plan for two teams (with a gate, a cap and one quota override), the same counting
    the primary credit only (no overlays) for one team, a quarterly activity plan for everyone, and a monthly
    plan for the team managers on their teams' revenue (the roll-up); all effective long before the feed
    starts."""
    tier = _tier
    return [
        {
            "plan_id": "floor-revenue",
            "name": "Floor revenue accelerator",
            "metric": "revenue",
            "period": "month",
            "effective_from": "2024-01-01",
            "effective_to": None,
            "participants": {"teams": ["east", "west"], "reps": []},
            "quota": REVENUE_QUOTA,
            "quota_overrides": {reps[OVERRIDDEN_REP_INDEX]: 6_000} if len(reps) > OVERRIDDEN_REP_INDEX else {},
            "tiers": [
                tier("base", "Base", 0.0, 0.04, None),
                tier("target", "Target", 1.0, 0.08, "Shout-out at the all-hands"),
                tier("accel", "Accelerator", 1.25, 0.12, "A day of PTO"),
                tier("club", "President's club", 2.0, 0.15, "The club trip"),
            ],
            "payout_cap": 1_500,
            "gate": {"metric": "win_rate", "min": 0.5},
        },
        {
            "plan_id": "east-primary",
            "name": "East revenue, own deals only",
            "metric": "revenue",
            "period": "month",
            "effective_from": "2024-01-01",
            "effective_to": None,
            "participants": {"teams": ["east"], "reps": []},
            "quota": REVENUE_QUOTA,
            "quota_overrides": {},
            "tiers": [tier("target", "Target", 1.0, 0.05, None), tier("double", "Double", 2.0, 0.1, None)],
            "payout_cap": None,
            "gate": None,
            "credit_roles": ["primary"],
        },
        {
            "plan_id": "activity-sprint",
            "name": "Activity sprint",
            "metric": "activities",
            "period": "quarter",
            "effective_from": "2024-01-01",
            "effective_to": None,
            "participants": {"teams": [], "reps": []},
            "quota": ACTIVITY_QUOTA,
            "quota_overrides": {},
            "tiers": [
                tier("bronze", "Bronze", 0.5, 0.0, None),
                tier("silver", "Silver", 1.0, 0.0, "Team lunch"),
                tier("gold", "Gold", 1.5, 0.0, "Gold badge"),
            ],
            "payout_cap": None,
            "gate": None,
        },
        {
            "plan_id": "team-revenue",
            "name": "Managers: the team's revenue",
            "metric": "revenue",
            "period": "month",
            "effective_from": "2024-01-01",
            "effective_to": None,
            "participants": {"teams": [], "reps": [], "managers": managers},
            "quota": TEAM_QUOTA,
            "quota_overrides": {},
            "tiers": [
                tier("target", "Team target", 1.0, 0.01, None),
                tier("stretch", "Stretch", 1.5, 0.02, "Team dinner"),
                tier("double", "Double", 2.0, 0.03, None),
            ],
            "payout_cap": None,
            "gate": None,
        },
    ]


def _tier(tier_id: str, name: str, threshold: float, rate: float, reward: str | None) -> dict[str, Any]:
    return {"tier_id": tier_id, "name": name, "threshold": threshold, "rate": rate, "reward": reward}


def _boards(now: datetime) -> list[dict[str, Any]]:
    """A floor board with plan attainment, a team board by week, a quarter board full of ties, and a
    contest over today's window (minute bounds)."""
    ends = now.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=2)
    window = {"starts_at": _stamp(_day_start(now)), "ends_at": _stamp(ends)}
    return [
        {"board_id": "floor", "title": "Revenue this month", "metric": "revenue", "period": "month",
         "scope": {"teams": []}, "size": 10, "plan_id": "floor-revenue"},
        {"board_id": "east-activities", "title": "East activities this week", "metric": "activities",
         "period": "week", "scope": {"teams": ["east"]}, "size": 25, "plan_id": None},
        {"board_id": "quarter-wins", "title": "Deals won this quarter", "metric": "deals_won",
         "period": "quarter", "scope": {"teams": []}, "size": 50, "plan_id": None},
        {"board_id": "today-blitz", "title": "Today's activity blitz", "metric": "activities",
         "window": window, "scope": {"teams": []}, "size": 50, "plan_id": None},
    ]


Query = tuple[str, str, date]
"""(rep_id, period kind, a date inside the period), as the replay test's `fetch_kpis` takes them."""


def period_dates(expected: Expected, kind: str) -> list[date]:
    """One date in each period of `kind` that the feed spans (the dates the replay test's queries use)."""
    first = min(expected.reps)
    return [on for rep, _, on in all_queries(expected, (kind,)) if rep == first]


def _kpi_queries(expected: Expected, roster: list[str], now: datetime) -> list[Query]:
    """A few hundred KPI questions that together see every rep's whole history and today, the hot state
    and SQL history: every rep on the roster for each fiscal year and today's week, month and quarter;
    every fifth rep for every month; every tenth rep for every fourth week (most of them long evicted
    to SQL history); a sample of today's days."""
    today = now.astimezone(ZoneInfo(TIMEZONE)).date()
    reps = sorted(expected.reps)
    queries = [(rep, "year", on) for rep in roster for on in period_dates(expected, "year")]
    queries += [(rep, kind, today) for rep in roster for kind in ("week", "month", "quarter")]
    queries += [(rep, "month", on) for rep in reps[::5] for on in period_dates(expected, "month")]
    queries += [(rep, "week", on) for rep in reps[::10] for on in period_dates(expected, "week")[::4]]
    queries += [(rep, "day", today) for rep in reps[::3]]
    return sorted(set(queries))


@dataclass(frozen=True)
class Scenario:
    """Everything a run needs and everything its outcome is checked against."""

    now: datetime
    feed: Feed
    expected: Expected
    teams: list[dict[str, Any]]
    reps: list[dict[str, Any]]
    plans: list[dict[str, Any]]
    boards: list[dict[str, Any]]
    kpi_queries: list[Query] = field(repr=False)
    fx_rates: dict[str, dict[date, Decimal]] = field(default_factory=lambda: FX_RATES, repr=False)
    """The FX rates `configure` PUTs and the expectation converts with (tests/support/crm_feed.py)."""

    def expected_of(self, events: Iterable[Event]) -> Expected:
        """The KPIs the contract gives for `events` under this scenario's FX rates."""
        return expected_kpis(events, rates=self.fx_rates)

    @property
    def today(self) -> date:
        return self.now.astimezone(ZoneInfo(TIMEZONE)).date()


def build_scenario(size: int = 3000, now: datetime | None = None) -> Scenario:
    """The scenario of about `size` history events, with its live part dated `now` (default: the test stacks'
    clock, which the services of a run read too).

    Fails at once when the clock is so early that the current plan periods overlap the CRM history (its
    reversals would take revenue back in them, and the tiers reached would depend on batching)."""
    now = (now or TEST_CLOCK.now()).replace(microsecond=0)
    feed = scenario_feed(size, now)
    history = expected_kpis((event for event in feed.events if not event["event_id"].startswith("live-")),
                            rates=FX_RATES)
    current = period_keys(now, ZoneInfo(TIMEZONE), FISCAL_YEAR_START_MONTH)
    last = period_keys(datetime.combine(history.last, datetime.min.time(), ZoneInfo(TIMEZONE)),
                       ZoneInfo(TIMEZONE), FISCAL_YEAR_START_MONTH)
    if current["quarter"] <= last["quarter"]:
        raise RuntimeError(f"the clock ({now.isoformat()}) must be past the feed's history (to {history.last})")
    expected = expected_kpis(feed.events, rates=FX_RATES)
    roster, teams = demo_reps(), demo_teams()
    return Scenario(
        now=now,
        feed=feed,
        expected=expected,
        teams=teams,
        reps=roster,
        plans=_plans(live_reps(feed.events), [team["manager_rep_id"] for team in teams]),
        boards=_boards(now),
        kpi_queries=_kpi_queries(expected, [rep["rep_id"] for rep in roster], now),
    )


def configure(stack: Stack, scenario: Scenario, api: str | None = None) -> None:
    """PUT the FX rates, then the teams (first without their managers), reps, teams again, plans and boards: each
    step's documents at once, the steps in that order, so no reference ever points at something missing."""
    steps = [
        [("teams", team["team_id"], {**team, "manager_rep_id": None}) for team in scenario.teams],
        [("reps", rep["rep_id"], rep) for rep in scenario.reps],
        [("teams", team["team_id"], team) for team in scenario.teams],
        [("plans", plan["plan_id"], plan) for plan in scenario.plans],
        [("boards", board["board_id"], board) for board in scenario.boards],
    ]
    with httpx.Client(base_url=api or stack.api, headers=stack.headers, timeout=30) as client:
        rates = client.put("/v1/fx-rates", json={"rates": fx_rate_rows(scenario.fx_rates)})
        assert rates.status_code == 200, f"PUT fx-rates: {rates.text}"

        def put(document: tuple[str, str, dict[str, Any]]) -> None:
            collection, entry_id, body = document
            response = client.put(f"/v1/{collection}/{entry_id}", json=body)
            assert response.status_code == 200, f"PUT {collection}/{entry_id}: {response.text}"

        with ThreadPoolExecutor(8) as pool:
            for step in steps:
                list(pool.map(put, step))


# --- what the outcome must be -------------------------------------------------------------------------


def expected_crossings(scenario: Scenario) -> set[Crossing]:
    """The tier crossings CONTRACT §4 asks for in the current plan periods, from the independent KPI
    expectation: every tier above 0 at or below a participant's final attainment (the live part only adds, so
    the final attainment is the highest ever reached there, whatever the batching)."""
    current = period_keys(scenario.now, ZoneInfo(TIMEZONE), FISCAL_YEAR_START_MONTH)
    return _tiers_reached(scenario, lambda plan: [current[plan["period"]]])


def past_crossings_at_least(scenario: Scenario) -> set[Crossing]:
    """Crossings of the plan periods before the current ones that the contract requires whatever the
    batching: every tier at or below a participant's FINAL attainment there. The history also holds
    reversals and corrections, so more tiers may have been reached on the way (recorded once, never taken
    back); which of those a run sees depends on how its events were batched."""
    zone = ZoneInfo(TIMEZONE)
    current = period_keys(scenario.now, zone, FISCAL_YEAR_START_MONTH)

    def past_keys(plan: dict[str, Any]) -> list[str]:
        kind = plan["period"]
        days = period_dates(scenario.expected, kind)
        keys = {period_keys(datetime.combine(day, datetime.min.time(), zone), zone, FISCAL_YEAR_START_MONTH)[kind]
                for day in days}
        return sorted(keys - {current[kind]})

    return _tiers_reached(scenario, past_keys)


def _tiers_reached(scenario: Scenario, keys_of: Callable[[dict[str, Any]], list[str]]) -> set[Crossing]:
    team_of = {rep["rep_id"]: rep["team_id"] for rep in scenario.reps}
    managed = {team["manager_rep_id"]: team["team_id"] for team in scenario.teams}
    out: set[Crossing] = set()
    for plan in scenario.plans:
        teams, listed = plan["participants"]["teams"], plan["participants"]["reps"]
        managers = plan["participants"].get("managers", [])
        for key in keys_of(plan):
            for rep, team in team_of.items():
                if managers and rep not in managers:
                    continue
                if (teams or listed) and team not in teams and rep not in listed:
                    continue
                if managers:  # the roll-up: every member of the team the rep manages (the roster never changes)
                    members = [member for member, t in team_of.items() if t == managed[rep]]
                    value = sum((_value(scenario, plan, key, member) for member in members), Decimal(0))
                else:
                    value = _value(scenario, plan, key, rep)
                quota = Decimal(str(plan["quota_overrides"].get(rep, plan["quota"])))
                for tier in plan["tiers"]:
                    if tier["threshold"] > 0 and value >= Decimal(str(tier["threshold"])) * quota:
                        out.add((rep, plan["plan_id"], key, tier["tier_id"]))
    return out


def _value(scenario: Scenario, plan: dict[str, Any], key: str, rep: str) -> Decimal:
    """The rep's own value of the plan's metric in period `key`, counting the plan's credit roles."""
    totals = scenario.expected.get(rep, plan["period"], key)
    value = Decimal(getattr(totals, plan["metric"]))
    if plan.get("credit_roles") == ["primary"]:  # only revenue plans choose; the overlay part leaves
        value -= totals.overlay_revenue
    return value


def current_log(log: Iterable[dict[str, Any]], scenario: Scenario) -> list[dict[str, Any]]:
    """The notifications of the current plan periods: what two runs of the scenario must agree on (past
    periods hold reversals, so which extra tiers were reached there depends on a run's batching)."""
    current = period_keys(scenario.now, ZoneInfo(TIMEZONE), FISCAL_YEAR_START_MONTH)
    kinds = {plan["plan_id"]: plan["period"] for plan in scenario.plans}
    return [n for n in log if n["period_key"] == current[kinds[n["plan_id"]]]]


def current_only(crossings: Iterable[Crossing], scenario: Scenario) -> list[Crossing]:
    """The crossings of the current plan periods, sorted, repeats kept."""
    current = period_keys(scenario.now, ZoneInfo(TIMEZONE), FISCAL_YEAR_START_MONTH)
    kinds = {plan["plan_id"]: plan["period"] for plan in scenario.plans}
    return sorted(c for c in crossings if c[2] == current[kinds[c[1]]])


def crossing_problems(log: list[dict[str, Any]], scenario: Scenario) -> list[str]:
    """What the notification log gets wrong against CONTRACT §4: a crossing recorded twice, a current-period
    crossing missing or unexpected, a past crossing the final totals require missing."""
    got = crossings_of(log)
    problems = [f"recorded twice: {c}" for c in sorted({c for c in got if got.count(c) > 1})]
    want, current = sorted(expected_crossings(scenario)), current_only(got, scenario)
    if current != want:
        missing, extra = sorted(set(want) - set(current)), sorted(set(current) - set(want))
        problems.append(f"current-period crossings missing: {missing[:10]}; unexpected: {extra[:10]}")
    past_missing = sorted(past_crossings_at_least(scenario) - set(got))
    if past_missing:
        problems.append(f"past crossings the final totals require are missing: {past_missing[:10]}")
    problems += push_problems(log, scenario)
    return problems


NOTIFY_MAX_AGE_DAYS = 7
"""SALESPULSE_NOTIFY_MAX_AGE's default: crossings of periods that ended longer ago are logged, not pushed."""


def push_problems(log: list[dict[str, Any]], scenario: Scenario) -> list[str]:
    """Crossings pushed although their period ended more than the max age before the scenario's now, or not
    pushed although it is current or just ended (a day's margin either side of the limit: the clock ticks)."""
    zone = ZoneInfo(TIMEZONE)
    kinds = {plan["plan_id"]: plan["period"] for plan in scenario.plans}
    today = scenario.now.astimezone(zone).date()
    problems = []
    for entry in log:
        kind, key = kinds[entry["plan_id"]], entry["period_key"]
        age = (today - period_last_day(kind, key, zone)).days
        pushed = bool(entry["deliveries"])
        if pushed and age > NOTIFY_MAX_AGE_DAYS + 1:
            problems.append(f"pushed a crossing of {key}, which ended {age} days before: {entry['tier']}")
        elif not pushed and age < NOTIFY_MAX_AGE_DAYS - 1:
            problems.append(f"did not push a crossing of {key} (ended {age} days before, or current)")
    return problems


def period_last_day(kind: str, key: str, zone: ZoneInfo) -> date:
    """The last day of the period `key` of `kind`, found by walking the calendar (period_keys), not by the
    services' calendar arithmetic."""
    if kind == "week":
        year, week = key.split("-W")
        day = date.fromisocalendar(int(year), int(week), 1)
    elif kind == "month":
        day = date(int(key[:4]), int(key[5:7]), 1)
    else:  # FY quarters and years: start a year and a half before FY's number and walk to the key
        day = date(int(key[2:6]) - 2, 1, 1)
    def key_of(d: date) -> str:
        return period_keys(datetime.combine(d, datetime.min.time().replace(hour=12), zone), zone,
                           FISCAL_YEAR_START_MONTH)[kind]

    while key_of(day) != key:
        day += timedelta(days=1)
    while key_of(day + timedelta(days=1)) == key:
        day += timedelta(days=1)
    return day


NOTIFICATION_LIMIT = 500
"""The most `GET /v1/notifications` returns at once; the scenario's crossings stay well below it."""


def notification_log(stack: Stack, scenario: Scenario, api: str | None = None) -> list[dict[str, Any]]:
    """`GET /v1/notifications` of every rep (one page each): every crossing the stack recorded for the
    scenario, with its deliveries."""
    paths = [f"/v1/notifications?rep_id={rep['rep_id']}&limit={NOTIFICATION_LIMIT}" for rep in scenario.reps]
    log: list[dict[str, Any]] = []
    for path, entries in fetch_json(stack, paths, api).items():
        assert isinstance(entries, list), f"GET {path} answered {entries}"
        assert len(entries) < NOTIFICATION_LIMIT, "more notifications for a rep than one page shows"
        log.extend(entries)
    return log


def crossings_of(log: Iterable[dict[str, Any]]) -> list[Crossing]:
    """The crossing of each notification in a log, sorted, repeats kept (so a double shows)."""
    return sorted((n["rep_id"], n["plan_id"], n["period_key"], n["tier"]["tier_id"]) for n in log)


def wait_settled(
    stack: Stack,
    scenario: Scenario,
    api: str | None = None,
    *,
    timeout: float = 120.0,
    expected: Expected | None = None,
) -> None:
    """Wait until the gateway at `api` shows every rep's expected fiscal-year KPIs (`expected`, default the
    scenario's), and every expected crossing is notified with all its deliveries sent. Cheap enough to
    poll; compare the rest with `kpi_mismatches` on a collected result."""
    expected = expected or scenario.expected
    probe = year_queries(expected)
    try:
        wait_until(lambda: not mismatches(expected, fetch_kpis(stack, probe, api)), timeout=timeout,
                   interval=0.5, what="every rep's fiscal-year KPIs")
    except AssertionError:
        problems = mismatches(expected, fetch_kpis(stack, probe, api))
        raise AssertionError(f"{len(problems)} fiscal-year KPIs differ, e.g.:\n" + "\n".join(problems[:20])) from None
    def notified() -> bool:
        log = notification_log(stack, scenario, api)
        return not crossing_problems(log, scenario) and all(d["status"] == "sent" for n in log for d in n["deliveries"])

    try:
        wait_until(notified, timeout=timeout, interval=0.5, what="every expected crossing notified and sent")
    except AssertionError:
        log = notification_log(stack, scenario, api)
        raise AssertionError("; ".join(crossing_problems(log, scenario)) or "deliveries not all sent") from None


# --- collecting a comparable result ---------------------------------------------------------------------


def fetch_json(stack: Stack, paths: list[str], api: str | None = None) -> dict[str, Any]:
    """GET every path (admin key, 8 at a time: each request in flight may hold one of the gateway's
    database connections, and PostgreSQL's are few) from the gateway at `api`: path → body, or
    `{"status": n}` for an answer that is not 200."""

    async def main() -> dict[str, Any]:
        limit = asyncio.Semaphore(8)

        async def one(client: httpx.AsyncClient, path: str) -> tuple[str, Any]:
            async with limit:
                response = await get_patiently(client, path)
            return path, response.json() if response.status_code == 200 else {"status": response.status_code}

        async with httpx.AsyncClient(base_url=api or stack.api, headers=stack.headers, timeout=60) as client:
            return dict(await asyncio.gather(*(one(client, path) for path in paths)))

    return asyncio.run(main())


def _kpi_path(query: Query) -> str:
    rep, kind, on = query
    return f"/v1/reps/{rep}/kpis?period={kind}&date={on}"


def _paths(scenario: Scenario) -> dict[str, list[str]]:
    """The questions `collect` asks, by group. Teams: each fiscal year, and today's periods; boards:
    each period of the feed (weeks: every eighth) and today's; progress: everyone today, every sixth rep
    in every third month."""
    today, expected = scenario.today, scenario.expected
    kpis = [_kpi_path(query) for query in scenario.kpi_queries]
    team_periods = [("year", on) for on in period_dates(expected, "year")]
    team_periods += [(kind, today) for kind in ("day", "week", "month", "quarter")]
    kpis += [f"/v1/teams/{t['team_id']}/kpis?period={k}&date={on}" for t in scenario.teams for k, on in team_periods]
    board_dates = {"month": period_dates(expected, "month"), "week": period_dates(expected, "week")[::8],
                   "quarter": period_dates(expected, "quarter")}
    standings = []
    for board in scenario.boards:
        dates = sorted({*board_dates[board["period"]], today}) if board.get("period") else [today]
        standings += [f"/v1/boards/{board['board_id']}/standings?date={on}" for on in dates]
    progress = [f"/v1/reps/{rep['rep_id']}/progress?date={today}" for rep in scenario.reps]
    progress += [f"/v1/reps/{rep}/progress?date={on}" for rep in sorted(expected.reps)[::6]
                 for on in period_dates(expected, "month")[::3]]
    return {"kpis": kpis, "standings": standings, "progress": progress}


def _timeless(body: Any) -> Any:
    """An answer without what depends on the moment it is asked rather than on the events: a board's
    `updated_at`, and a plan's `pace` and `forecast_attainment` (fractions of the period gone by)."""
    if isinstance(body, dict):
        body = {key: _timeless(value) for key, value in body.items()
                if key not in ("updated_at", "pace", "forecast_attainment")}
    elif isinstance(body, list):
        body = [_timeless(value) for value in body]
    return body


def _notifications(log: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each notification as what it says (rep, plan, period, tier, reward, channels), not ids or times."""
    entries = [
        {"rep_id": n["rep_id"], "plan_id": n["plan_id"], "period_key": n["period_key"], "tier": n["tier"],
         "reward": n["reward"], "channels": sorted(d["channel"] for d in n["deliveries"])}
        for n in log
    ]
    return sorted(entries, key=lambda n: (n["rep_id"], n["plan_id"], n["period_key"], n["tier"]["tier_id"]))


def collect(stack: Stack, scenario: Scenario, api: str | None = None) -> dict[str, Any]:
    """What the gateway at `api` (default: the stack's) answers for the scenario, as a plain dict:
    KPIs of every rep and team for the periods the feed touches and today's, standings of every board for
    those periods, every rep's plan progress by month, and the notifications. Two runs of one scenario
    that behave the same collect equal dicts (see `differences`)."""
    paths = _paths(scenario)
    answers = fetch_json(stack, [path for group in paths.values() for path in group], api)
    result: dict[str, Any] = {group: {path: _timeless(answers[path]) for path in group_paths}
                              for group, group_paths in paths.items()}
    result["notifications"] = _notifications(current_log(notification_log(stack, scenario, api), scenario))
    return result


def kpi_mismatches(scenario: Scenario, result: dict[str, Any]) -> list[str]:
    """Every rep KPI in a collected result that differs from the independent expectation (CONTRACT §1–3),
    as readable lines; empty when all agree."""
    checked = [query for query in scenario.kpi_queries if query[1] != "day"]  # the expectation has no days
    return mismatches(scenario.expected, {query: _answer(result["kpis"][_kpi_path(query)]) for query in checked})


def _answer(body: dict[str, Any]) -> dict[str, Any] | None:
    return None if body.get("status") == 404 else body


def differences(first: dict[str, Any], second: dict[str, Any], limit: int = 20) -> list[str]:
    """Where two collected results differ, as readable lines (at most `limit`); empty when equal."""
    return list(_walk(first, second, ""))[:limit]


def _walk(first: Any, second: Any, where: str) -> Iterator[str]:
    if isinstance(first, dict) and isinstance(second, dict):
        for key in sorted(set(first) | set(second), key=str):
            if key not in first or key not in second:
                yield f"{where}/{key}: only in the {'second' if key not in first else 'first'}"
            else:
                yield from _walk(first[key], second[key], f"{where}/{key}")
    elif isinstance(first, list) and isinstance(second, list) and len(first) == len(second):
        for n, (a, b) in enumerate(zip(first, second, strict=True)):
            yield from _walk(a, b, f"{where}[{n}]")
    elif first != second:
        yield f"{where}: {first!r} != {second!r}"


def collect_current(stack: Stack, scenario: Scenario, api: str | None = None) -> dict[str, Any]:
    """A lighter `collect` (a few hundred requests instead of thousands): every rep's and team's KPIs for the
    fiscal years the feed touches and for today's day, week, month and quarter, every board's standings and
    every rep's plan progress today, and the notifications. Comparable between runs like `collect`'s."""
    reps = [rep["rep_id"] for rep in scenario.reps]
    years = sorted({on for _, kind, on in scenario.kpi_queries if kind == "year"})
    kinds_on = [("year", on) for on in years] + [(kind, scenario.today) for kind in ("day", "week", "month",
                                                                                        "quarter")]
    paths = {
        "kpis": [f"/v1/reps/{rep}/kpis?period={kind}&date={on}" for rep in reps for kind, on in kinds_on]
        + [f"/v1/teams/{team['team_id']}/kpis?period={kind}&date={on}" for team in scenario.teams
           for kind, on in kinds_on],
        "standings": [f"/v1/boards/{board['board_id']}/standings?date={scenario.today}" for board in scenario.boards],
        "progress": [f"/v1/reps/{rep}/progress?date={scenario.today}" for rep in reps],
    }
    answers = fetch_json(stack, [path for group in paths.values() for path in group], api)
    result: dict[str, Any] = {group: {path: _timeless(answers[path]) for path in group_paths}
                              for group, group_paths in paths.items()}
    result["notifications"] = _notifications(current_log(notification_log(stack, scenario, api), scenario))
    return result
