"""The CRM feed and its independent expectation: the CRM data set replayed as real CRMs send it, and the KPIs
the contract gives for it, computed here from CONTRACT §1–3 — deliberately not importing services.scoring.

The feed is the demo history (15,011 deal snapshots) plus what real CRMs do: re-sent events, reversals
(won → open → won again, or lost; with a new owner or close date), stale versions sent after newer ones,
ties broken by event_id, unversioned snapshots, splits, overlay credit, deals in other currencies (EUR, GBP),
and activities. It goes through ingest
as NDJSON,
and every rep's weekly, monthly and fiscal-quarterly KPIs from the gateway are compared with an independent
computation written here from CONTRACT §1–3 — deliberately not importing services.scoring.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson

from services.demo.floor import history_events
from tests.support.stack import Stack, wait_until

# A zone far from UTC (the data set's business hours, 09–17 UTC, are evening to early morning there, so
# many deals close on the next local day or month) and a fiscal year starting in April.
TIMEZONE = "Pacific/Auckland"
FISCAL_YEAR_START_MONTH = 4
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
STACK_ENV = {"SALESPULSE_TIMEZONE": TIMEZONE, "SALESPULSE_FISCAL_YEAR_START_MONTH": str(FISCAL_YEAR_START_MONTH)}

Event = dict[str, Any]

REPORTING_CURRENCY = "USD"
FX_RATES: dict[str, dict[date, Decimal]] = {
    "EUR": {date(2025 + (4 + n) // 12, (4 + n) % 12 + 1, 1): Decimal("1.05") + Decimal(n % 7) * Decimal("0.0137")
            for n in range(20)},
}
"""Monthly EUR rates from 1 May 2025 to 1 December 2026, for a stack that is given them (the scenario PUTs them):
the feed's EUR deals that close before May 2025 have no rate, and GBP has none at all. Without them every deal
in another currency than USD is held (`expected_kpis(rates=None)`)."""


def fx_rate_rows(rates: dict[str, dict[date, Decimal]] = FX_RATES) -> list[dict[str, str]]:
    """`rates` as the rows of a PUT /v1/fx-rates."""
    return [{"currency": currency, "date": day.isoformat(), "rate": str(rate)}
            for currency, days in sorted(rates.items()) for day, rate in sorted(days.items())]


# --- the feed ---------------------------------------------------------------------------------------


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Feed:
    """Events in posting order; `resent` of them are verbatim copies of earlier ones."""

    events: list[Event]
    resent: int

    def batches(self, size: int) -> list[list[Event]]:
        return [self.events[i : i + size] for i in range(0, len(self.events), size)]

    @property
    def unique(self) -> int:
        return len(self.events) - self.resent


def crm_feed(seed: int = 7) -> Feed:
    """The demo history with injected duplicates, reversals, stale versions, splits and activities."""
    rng = random.Random(seed)
    history = list(history_events(NOW))
    assert len(history) == 15_011
    reps = sorted({event["owner_id"] for event in history})
    by_deal: dict[str, list[Event]] = defaultdict(list)
    for event in history:
        by_deal[event["deal_id"]].append(event)
    closed = [events[-1] for events in by_deal.values() if len(events) == 2]
    rng.shuffle(closed)
    won = [event for event in closed if event["stage"] == "won"]
    lost = [event for event in closed if event["stage"] == "lost"]

    def other_rep(rep: str) -> str:
        return rng.choice([r for r in reps if r != rep])

    # Splits on 150 closing snapshots (shares that give exact cents on whole-dollar amounts).
    split_shares = [("0.5", "0.5"), ("0.6", "0.4"), ("0.25", "0.75")]
    for event in won[:100] + lost[:50]:
        first, second = rng.choice(split_shares)
        event["splits"] = [
            {"rep_id": event["owner_id"], "share": first},
            {"rep_id": other_rep(event["owner_id"]), "share": second},
        ]

    # Overlay credit on 80 closing snapshots (issue 23), from a generator of its own so the rest of the feed is
    # what it was: one or two overlays, a third of them beside a primary split; shares that need rounding
    # (0.125 of a whole-dollar amount can end in half a cent: half to even).
    overlay_rng = random.Random(seed + 1)
    for n, event in enumerate(won[630:690] + lost[130:150]):
        owner = event["owner_id"]
        partner, *specialists = overlay_rng.sample([r for r in reps if r != owner], 2 + n % 2)
        primary = [{"rep_id": owner, "share": "0.5"}, {"rep_id": partner, "share": "0.5"}] if n % 3 == 0 else []
        event["splits"] = primary + [
            {"rep_id": rep, "share": overlay_rng.choice(["0.5", "0.125", "1", "0.3"]), "role": "overlay"}
            for rep in specialists
        ]

    # Deals in other currencies on 120 closing snapshots (issue 23), from a generator of their own: EUR for three
    # in four (the first rate is June 2025's, so the earliest are held), GBP (no rate at all: held) for the rest;
    # the opening snapshot names the currency too.
    currency_rng = random.Random(seed + 2)
    for event in won[700:800] + lost[150:170]:
        currency = "GBP" if currency_rng.random() < 0.25 else "EUR"
        for snapshot in by_deal[event["deal_id"]]:
            snapshot["currency"] = currency

    late: list[Event] = []
    # Reversals on 200 won deals: reopened a day later (version 3), then won again five weeks later for more,
    # a quarter of them under a new owner — or lost. Then a stale version 3 that says "won" arrives last.
    for i, event in enumerate(won[100:300]):
        closed_at = _time(event["closed_at"])
        reopened = dict(event, event_id=f"{event['event_id']}-r3", version=3, stage="open")
        reopened.pop("closed_at")
        reopened.pop("splits", None)
        reopened["occurred_at"] = stamp(closed_at + timedelta(days=1))
        again_at = closed_at + timedelta(days=35)
        again = dict(reopened, event_id=f"{event['event_id']}-r4", version=4, occurred_at=stamp(again_at))
        if i % 2:
            again.update(stage="lost", closed_at=stamp(closed_at + timedelta(days=3)))
        else:
            again.update(stage="won", closed_at=stamp(again_at), amount=event["amount"] + 100)
            if i % 4 == 0:
                again["owner_id"] = other_rep(event["owner_id"])
        stale = dict(again, event_id=f"{event['event_id']}-r3late", version=3, stage="won", amount=123456)
        stale.update(occurred_at=stamp(closed_at + timedelta(hours=12)), closed_at=stamp(closed_at))
        late += [reopened, again]
        late.append(stale)

    # 150 deals get a version-1 "won for a fortune" after their real close: stale, ignored.
    for event in won[300:400] + lost[50:100]:
        first = by_deal[event["deal_id"]][0]
        fortune = dict(first, event_id=f"{first['event_id']}-late", stage="won", amount=999_999)
        fortune["closed_at"] = first["occurred_at"]
        late.append(fortune)

    feed: list[Event] = []
    tied = {event["event_id"]: event for event in won[400:430] + lost[100:130]}
    swapped = {by_deal[event["deal_id"]][0]["event_id"] for event in won[430:630]}
    held_back: dict[str, Event] = {}
    for event in history:
        if event["event_id"] in swapped:
            held_back[event["deal_id"]] = event  # version 1 arrives after version 2: stale
            continue
        if event["event_id"] in tied:
            # Same version and time, greater event_id, opposite outcome, sent first: it wins the tie, and the
            # original arriving after it is stale.
            flipped = dict(event, event_id=f"{event['event_id']}b")
            if event["stage"] == "won":
                flipped["stage"] = "lost"
            else:
                flipped.update(stage="won", amount=777)
            feed.append(flipped)
        feed.append(event)
        if event["deal_id"] in held_back:
            feed.append(held_back.pop(event["deal_id"]))

    # 30 unversioned deals, their close sent before their opening: ordered by occurred_at alone.
    for n in range(30):
        rep = rng.choice(reps)
        opened_at = NOW - timedelta(days=rng.randint(5, 300), hours=rng.randint(0, 23))
        closed_at = opened_at + timedelta(days=rng.randint(1, 20))
        base = {"type": "deal", "deal_id": f"unversioned-{n}", "owner_id": rep, "amount": 1000 + n}
        close = dict(base, event_id=f"unversioned-{n}-close", occurred_at=stamp(closed_at))
        close.update(stage="won" if n % 3 else "lost", closed_at=stamp(closed_at))
        opening = dict(base, event_id=f"unversioned-{n}-open", occurred_at=stamp(opened_at), stage="open")
        feed += [close, opening]

    # 3,000 activities over the data set's last year.
    kinds = ("call", "email", "meeting", "demo")
    for n in range(3000):
        at = NOW - timedelta(seconds=rng.randint(3600, 365 * 86400))
        feed.append(
            {
                "event_id": f"activity-{n}",
                "type": "activity",
                "occurred_at": stamp(at),
                "rep_id": rng.choice(reps),
                "kind": rng.choice(kinds),
            }
        )
    feed += late
    resent = rng.sample(feed, 500)
    feed += [dict(event) for event in resent]
    return Feed(feed, resent=len(resent))


# --- the independent computation (CONTRACT §1–3) ----------------------------------------------------


@dataclass
class Totals:
    revenue: Decimal = Decimal(0)
    deals_won: Decimal = Decimal(0)
    deals_lost: Decimal = Decimal(0)
    activities: int = 0
    overlay_revenue: Decimal = Decimal(0)
    """The part of `revenue` credited as overlays (a plan counting the primary credit only leaves it out)."""

    def report(self) -> dict[str, Any]:
        decided = self.deals_won + self.deals_lost
        return {
            "revenue": float(self.revenue.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)),
            "deals_won": float(self.deals_won),
            "deals_lost": float(self.deals_lost),
            "win_rate": float(self.deals_won / decided) if decided else None,
            "activities": self.activities,
        }


def period_keys(moment: datetime, zone: ZoneInfo, fy_start: int) -> dict[str, str]:
    """Week, month, fiscal quarter and fiscal year of an instant, in the business timezone."""
    local = moment.astimezone(zone).date()
    iso_year, iso_week, _ = local.isocalendar()
    fiscal_year = local.year + 1 if fy_start > 1 and local.month >= fy_start else local.year
    quarter = (local.month - fy_start) % 12 // 3 + 1
    return {
        "week": f"{iso_year}-W{iso_week:02d}",
        "month": f"{local.year}-{local.month:02d}",
        "quarter": f"FY{fiscal_year}-Q{quarter}",
        "year": f"FY{fiscal_year}",
    }


@dataclass
class Expected:
    totals: dict[tuple[str, str, str], Totals] = field(default_factory=lambda: defaultdict(Totals))
    reps: set[str] = field(default_factory=set)
    first: date = date.max
    last: date = date.min

    def get(self, rep: str, kind: str, key: str) -> Totals:
        return self.totals.get((rep, kind, key)) or Totals()

    def add(self, rep: str, moment: datetime, zone: ZoneInfo, **amounts: Any) -> None:
        self.reps.add(rep)
        local = moment.astimezone(zone).date()
        self.first, self.last = min(self.first, local), max(self.last, local)
        for kind, key in period_keys(moment, zone, FISCAL_YEAR_START_MONTH).items():
            totals = self.totals[(rep, kind, key)]
            for name, value in amounts.items():
                setattr(totals, name, getattr(totals, name) + value)


def _rate_on(rates: dict[date, Decimal], on: date) -> Decimal | None:
    earlier = [day for day in rates if day <= on]
    return rates[max(earlier)] if earlier else None


def expected_kpis(
    events: Iterable[Event], timezone: str = TIMEZONE, *, last_arrival_wins: bool = False,
    rates: dict[str, dict[date, Decimal]] | None = None,
) -> Expected:
    """What the contract says the KPIs are: per deal only the snapshot with the greatest
    (version or 0, occurred_at, event_id) counts; its stage credits each split in the close period.

    A won deal in another currency than USD is converted at `rates` of its close date in `timezone` (or the latest
    earlier one), each credit to the cent half to even; with no such rate (or no `rates`) it is held: it credits
    nothing. `last_arrival_wins` computes the naive reading instead (the last snapshot sent counts), to show that
    the feed's stale and reordered events matter."""
    zone = ZoneInfo(timezone)
    seen: set[str] = set()
    newest: dict[str, tuple[tuple[int, datetime, str], Event]] = {}
    expected = Expected()
    for event in events:
        if event["event_id"] in seen:
            continue  # the same event_id again: a duplicate, counted once
        seen.add(event["event_id"])
        if event["type"] == "activity":
            expected.add(event["rep_id"], _time(event["occurred_at"]), zone, activities=1)
            continue
        order = (event.get("version") or 0, _time(event["occurred_at"]), event["event_id"])
        if event["deal_id"] not in newest or order > newest[event["deal_id"]][0] or last_arrival_wins:
            newest[event["deal_id"]] = (order, event)
    for _, deal in newest.values():
        rate = None
        currency = deal.get("currency") or REPORTING_CURRENCY
        if currency != REPORTING_CURRENCY and deal["stage"] == "won" and Decimal(str(deal["amount"])):
            closed_on = _time(deal["closed_at"]).astimezone(zone).date()
            rate = _rate_on((rates or {}).get(currency, {}), closed_on)
            if rate is None:
                expected.reps.update(split["rep_id"] for split in deal.get("splits") or [{"rep_id": deal["owner_id"]}])
                continue  # held: nothing is credited until a rate arrives
        splits = deal.get("splits") or []
        overlays = [split for split in splits if split.get("role") == "overlay"]
        primary = [split for split in splits if split not in overlays] or [{"rep_id": deal["owner_id"], "share": "1"}]
        for split in primary + overlays:
            share, rep, overlay = Decimal(str(split["share"])), split["rep_id"], split in overlays
            expected.reps.add(rep)
            if deal["stage"] == "won":
                revenue = Decimal(str(deal["amount"])) * share
                if overlay:  # an overlay's revenue: to the cent, half to even, each on its own
                    revenue = revenue.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
                if rate is not None:  # converted: each credit on its own, to the cent, half to even
                    revenue = (revenue * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
                expected.add(rep, _time(deal["closed_at"]), zone, revenue=revenue, deals_won=share,
                             overlay_revenue=revenue if overlay else Decimal(0))
            elif deal["stage"] == "lost":
                expected.add(rep, _time(deal["closed_at"]), zone, deals_lost=share)
    return expected


# --- driving the stack ------------------------------------------------------------------------------


def post_feed(stack: Stack, batches: Iterable[list[Event]], *, pause: float = 0.0) -> tuple[int, int]:
    """POST each batch as NDJSON (`pause` seconds apart, to pace a load); returns (accepted, duplicates)
    summed over the 202 answers."""
    accepted = duplicates = 0
    headers = {**stack.headers, "Content-Type": "application/x-ndjson"}
    with httpx.Client(timeout=120) as client:
        for batch in batches:
            body = b"\n".join(orjson.dumps(event) for event in batch)
            response = client.post(f"{stack.ingest}/v1/events", content=body, headers=headers)
            assert response.status_code == 202, response.text[:2000]
            accepted += response.json()["accepted"]
            duplicates += response.json()["duplicates"]
            if pause:
                time.sleep(pause)
    return accepted, duplicates


Query = tuple[str, str, date]  # rep, period kind, a date inside the period


TRANSIENT = frozenset({429, 502, 503, 504})
"""Answers a client tries again after their Retry-After (a gateway out of database connections says 503)."""


async def get_patiently(client: httpx.AsyncClient, url: str, *, give_up_after: float = 60.0,
                        **options: Any) -> httpx.Response:
    """GET as a well-behaved client does: a transient answer is asked again after its Retry-After (at most 1 s
    here), and a GET whose connection broke (a kept-alive connection the server closed as it was reused) is sent
    again, until `give_up_after` seconds have passed; then that answer (or error) is returned as it is."""
    deadline = time.monotonic() + give_up_after
    while True:
        try:
            response = await client.get(url, **options)
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError):
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)
            continue
        if response.status_code not in TRANSIENT or time.monotonic() >= deadline:
            return response
        await asyncio.sleep(min(1.0, float(response.headers.get("retry-after", "0.2") or 0.2)))


async def _fetch(stack: Stack, api: str, queries: list[Query]) -> dict[Query, dict[str, Any] | None]:
    limit = asyncio.Semaphore(16)

    async def one(client: httpx.AsyncClient, query: Query) -> tuple[Query, dict[str, Any] | None]:
        rep, kind, on = query
        async with limit:
            response = await get_patiently(client, f"{api}/v1/reps/{rep}/kpis",
                                           params={"period": kind, "date": on.isoformat()})
        if response.status_code == 404:
            return query, None
        assert response.status_code == 200, response.text
        return query, response.json()

    async with httpx.AsyncClient(headers=stack.headers, timeout=30) as client:
        return dict(await asyncio.gather(*(one(client, query) for query in queries)))


def fetch_kpis(stack: Stack, queries: list[Query], api: str | None = None) -> dict[Query, dict[str, Any] | None]:
    """The gateway's answers to `queries` (None for a 404); `api` defaults to the stack's gateway."""
    return asyncio.run(_fetch(stack, api or stack.api, queries))


def _dates_in_span(first: date, last: date, step: timedelta) -> list[date]:
    days = []
    on = first
    while on <= last:
        days.append(on)
        on += step
    return days + [last]


def mismatches(expected: Expected, answers: dict[Query, dict[str, Any] | None]) -> list[str]:
    """Every KPI the gateway reports differently from the expectation, as readable lines."""
    problems = []
    zone = ZoneInfo(TIMEZONE)
    for (rep, kind, on), body in answers.items():
        moment = datetime(on.year, on.month, on.day, 12, tzinfo=zone)
        key = period_keys(moment, zone, FISCAL_YEAR_START_MONTH)[kind]
        want = expected.get(rep, kind, key).report()
        if body is None:
            problems.append(f"{rep} {key}: 404, expected {want}")
            continue
        if body["period_key"] != key:
            problems.append(f"{rep} {on}: period_key {body['period_key']}, expected {key}")
            continue
        got = {name: body["kpis"][name] for name in want}
        for name, value in want.items():
            if value is None or got[name] is None:
                same = value is None and got[name] is None
            else:
                same = abs(got[name] - value) <= (0.001 if name == "revenue" else 1e-6)
            if not same:
                problems.append(f"{rep} {key} {name}: got {got[name]}, expected {value}")
    return problems


def year_queries(expected: Expected) -> list[Query]:
    """One query per rep and fiscal year: the cheap probe for "everything has been scored"."""
    return all_queries(expected, ("year",))


def all_queries(expected: Expected, kinds: tuple[str, ...] = ("week", "month", "quarter")) -> list[Query]:
    """Every rep × every month and fiscal quarter of the data set's span (zeros included), and every week for
    every third rep: weeks older than the hot state's 27 come from SQL history, and a third of the reps
    (~10 × 56 weeks, most of them evicted) checks that path while keeping the gateway's work in bounds."""
    zone = ZoneInfo(TIMEZONE)
    week_reps = sorted(expected.reps)[::3]
    dates = _dates_in_span(expected.first, expected.last, timedelta(days=7))
    queries: list[Query] = []
    for kind in kinds:
        by_key: dict[str, date] = {}
        for on in dates:
            key = period_keys(datetime(on.year, on.month, on.day, 12, tzinfo=zone), zone, FISCAL_YEAR_START_MONTH)
            by_key.setdefault(key[kind], on)
        reps = week_reps if kind == "week" else sorted(expected.reps)
        queries += [(rep, kind, on) for rep in reps for on in by_key.values()]
    return queries


def wait_for_kpis(stack: Stack, expected: Expected, *, timeout: float = 90.0, api: str | None = None) -> None:
    """Wait until every rep's fiscal-year totals are the expected ones, then compare every period."""
    probe = year_queries(expected)

    def years_match() -> bool:
        if any(service.proc.poll() is not None for service in stack.services.values()):
            dead = [label for label, service in stack.services.items() if service.proc.poll() is not None]
            raise AssertionError(f"{dead} exited:\n" + "\n".join(stack.tail(label) for label in dead))
        return not mismatches(expected, fetch_kpis(stack, probe, api))

    try:
        wait_until(years_match, timeout=timeout, interval=0.5, what="every rep's fiscal-year KPIs")
    except AssertionError:
        problems = mismatches(expected, fetch_kpis(stack, probe, api))
        raise AssertionError(f"{len(problems)} fiscal-year KPIs differ, e.g.:\n" + "\n".join(problems[:20])) from None
    problems = mismatches(expected, fetch_kpis(stack, all_queries(expected), api))
    assert not problems, f"{len(problems)} KPIs differ, e.g.:\n" + "\n".join(problems[:30])


# --- the test -------------------------------------------------------------------------------------------
