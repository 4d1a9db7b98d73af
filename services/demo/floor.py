"""The demo sales floor behind `salespulse up --demo`.

History: the packaged CRM data set replayed as deal snapshots, shifted so that it ends yesterday. Live: a
simulated floor of new deals, wins, losses, the odd reversal and the activities around them. The
generators are pure; `run_floor` posts them to ingest and `seed_config` loads roster, plans and boards.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any, Final

import httpx
import orjson

from services.common.background import wait_set
from services.common.backoff import Backoff
from services.common.clock import Clock
from services.common.http_retry import HttpRetries, OutOfRetries, problem_detail
from services.common.naming import slug
from services.demo.plans import demo_achievements, demo_boards, demo_plans, demo_streaks
from services.demo.roster import agent_rep_ids, data_rows, demo_reps, demo_teams, rep_id_for

__all__ = [
    "DATA_SET_LAST_CLOSE",
    "DemoRequestFailed",
    "FloorStats",
    "history_events",
    "live_events",
    "run_floor",
    "seed_config",
]

Event = dict[str, Any]
SYSTEM_CLOCK = Clock()
Now = Callable[[], datetime]
"""What time it is: services.common.clock.Clock (the system clock, or the pinned one of the settings)."""
Log = Callable[[str], Any]

DATA_SET_LAST_CLOSE: Final = date(2017, 12, 31)
"""The data set's last close date; history is shifted so that it lands on yesterday."""

HISTORY_BATCH: Final = 1_000
LIVE_TICK_S: Final = 0.1
LOG_EVERY_S: Final = 10.0
RETRY_FIRST_DELAY_S = 0.25
RETRY_MAX_DELAY_S = 5.0
SEED_TIMEOUT_S = 60.0

_BUSINESS_DAY_START_S: Final = 9 * 3600
_BUSINESS_DAY_LENGTH_S: Final = 8 * 3600

# Renewals close far more often than new business; marking a renewal with a chance that depends on how the
# deal ended gives about a fifth of deals as renewals and a floor-wide retention near 0.84, so that the
# accelerator's retention gate (0.8) lets some reps through and holds others back.
_RENEWAL_CHANCE: Final = {"Won": 0.30, "Lost": 0.10, "Engaging": 0.20}

# --- live floor shape: simulated seconds, not wall-clock ones ---------------------------------------
_MEAN_SECONDS_BETWEEN_NEW_DEALS: Final = 20.0
_DEAL_LIFETIME_S: Final = (120.0, 900.0)
_ACTIVITIES_PER_DEAL: Final = (3, 10)
_ACTIVITY_KINDS: Final = ("call", "email", "meeting", "demo")
_ACTIVITY_WEIGHTS: Final = (45, 35, 12, 8)
_LIVE_RENEWAL_CHANCE: Final = 0.2
_LIVE_RENEWAL_WIN_RATE: Final = 0.85
_REVERSAL_CHANCE: Final = 0.01
_NEW_HIRE_WEIGHT: Final = 0.25
"""Agents without deals in the data set get this fraction of the median agent's share of new deals."""


# --- shared helpers ---------------------------------------------------------------------------------


def _fraction(*parts: str) -> float:
    """A stable pseudo-random number in [0, 1) for the given parts (Python's hash() is salted per run)."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _rfc3339(moment: datetime) -> str:
    """UTC with a Z, to the second (history) or millisecond (live)."""
    utc = moment.astimezone(UTC)
    text = utc.isoformat(timespec="milliseconds" if utc.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _money(amount: Decimal) -> int | str:
    """Whole amounts as JSON integers; anything else as an exact decimal string."""
    return int(amount) if amount == amount.to_integral_value() else f"{amount:.2f}"


def _product_key(name: str) -> str:
    # Deals say "GTXPro" where products.csv says "GTX Pro".
    return name.replace(" ", "").lower()


@cache
def _list_prices() -> dict[str, Decimal]:
    """Product list price by normalised product name."""
    return {_product_key(row["product"]): Decimal(row["sales_price"]) for row in data_rows("products.csv")}


@cache
def _pipeline() -> tuple[dict[str, str], ...]:
    return tuple(data_rows("sales_pipeline.csv"))


# --- history ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Deal:
    """What stays the same across an opportunity's snapshots."""

    deal_id: str
    owner_id: str
    kind: str
    customer_id: str | None

    def snapshot(
        self, *, event_id: str, at: str, source: str, version: int, stage: str, amount: Decimal
    ) -> Event:
        """The deal at version `version`; a won or lost deal closes at the moment of the snapshot."""
        event: Event = {
            "event_id": event_id,
            "type": "deal",
            "occurred_at": at,
            "source": source,
            "deal_id": self.deal_id,
            "version": version,
            "owner_id": self.owner_id,
            "stage": stage,
            "amount": _money(amount),
        }
        if stage != "open":
            event["closed_at"] = at
        event["kind"] = self.kind
        if self.customer_id is not None:
            event["customer_id"] = self.customer_id
        return event

    def activity(self, *, event_id: str, at: str, source: str, kind: str) -> Event:
        """An activity of the owner on this deal."""
        event: Event = {
            "event_id": event_id,
            "type": "activity",
            "occurred_at": at,
            "source": source,
            "rep_id": self.owner_id,
            "kind": kind,
            "deal_id": self.deal_id,
        }
        if self.customer_id is not None:
            event["customer_id"] = self.customer_id
        return event


def _business_moment(day: date, *parts: str) -> datetime:
    """A stable time of day within business hours (09:00–17:00 UTC) on `day`."""
    seconds = _BUSINESS_DAY_START_S + int(_fraction(*parts, "time") * _BUSINESS_DAY_LENGTH_S)
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=seconds)


def history_events(now: datetime, *, source: str = "demo") -> Iterator[Event]:
    """The data set as deal snapshots ending yesterday (UTC), oldest first.

    Each engaged deal opens at its engage date (version 1, amount = the product's list price) and each
    closed one is won or lost at its close date (version 2, amount = close_value). Prospecting deals have
    no dates and are left out. Event ids (`demo-{opportunity_id}-v{version}`) and times are the same on
    every run of the same day.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    shift = now.astimezone(UTC).date() - timedelta(days=1) - DATA_SET_LAST_CLOSE
    prices = _list_prices()
    engaged = sorted(
        (row for row in _pipeline() if row["engage_date"]),
        key=lambda row: (row["engage_date"], row["opportunity_id"]),
    )
    seen_accounts: set[str] = set()
    snapshots: list[tuple[datetime, str, Event]] = []
    for row in engaged:
        deal_id = row["opportunity_id"]
        account = row["account"]
        chance = _RENEWAL_CHANCE.get(row["deal_stage"], 0.0)
        renewal = account in seen_accounts and _fraction(deal_id, "kind") < chance
        if account:
            seen_accounts.add(account)
        deal = _Deal(
            deal_id=deal_id,
            owner_id=rep_id_for(row["sales_agent"]),
            kind="renewal" if renewal else "new",
            customer_id=slug(account) if account else None,
        )
        opened_at = _business_moment(date.fromisoformat(row["engage_date"]) + shift, deal_id, "v1")
        list_price = prices.get(_product_key(row["product"]), Decimal(0))
        opened = deal.snapshot(
            event_id=f"demo-{deal_id}-v1",
            at=_rfc3339(opened_at),
            source=source,
            version=1,
            stage="open",
            amount=list_price,
        )
        snapshots.append((opened_at, opened["event_id"], opened))
        if not row["close_date"]:
            continue
        closed_at = _business_moment(date.fromisoformat(row["close_date"]) + shift, deal_id, "v2")
        if closed_at <= opened_at:
            closed_at = opened_at + timedelta(minutes=30)
        closed = deal.snapshot(
            event_id=f"demo-{deal_id}-v2",
            at=_rfc3339(closed_at),
            source=source,
            version=2,
            stage="won" if row["deal_stage"] == "Won" else "lost",
            amount=Decimal(row["close_value"] or 0),
        )
        snapshots.append((closed_at, closed["event_id"], closed))
    snapshots.sort(key=lambda snapshot: (snapshot[0], snapshot[1]))
    for _, _, event in snapshots:
        yield event


# --- live floor -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FloorProfile:
    """What the data set says about who sells what, how often they win, and for how much."""

    reps: tuple[str, ...]
    rep_weights: tuple[float, ...]
    win_rates: dict[str, float]
    products: tuple[str, ...]
    product_weights: tuple[int, ...]
    won_amounts: dict[str, tuple[Decimal, ...]]
    list_prices: dict[str, Decimal]
    customers: tuple[str | None, ...]
    customer_weights: tuple[int, ...]


@cache
def _floor_profile() -> _FloorProfile:
    rows = _pipeline()
    deals = Counter(rep_id_for(row["sales_agent"]) for row in rows)
    won = Counter(rep_id_for(row["sales_agent"]) for row in rows if row["deal_stage"] == "Won")
    lost = Counter(rep_id_for(row["sales_agent"]) for row in rows if row["deal_stage"] == "Lost")
    floor_win_rate = sum(won.values()) / (sum(won.values()) + sum(lost.values()))
    reps = tuple(agent_rep_ids())
    active = sorted(deals[rep] for rep in reps if deals[rep])
    new_hire = active[len(active) // 2] * _NEW_HIRE_WEIGHT
    win_rates = {
        rep: won[rep] / (won[rep] + lost[rep]) if won[rep] + lost[rep] else floor_win_rate for rep in reps
    }

    products = Counter(_product_key(row["product"]) for row in rows)
    won_amounts: dict[str, list[Decimal]] = {}
    for row in rows:
        if row["deal_stage"] == "Won":
            won_amounts.setdefault(_product_key(row["product"]), []).append(Decimal(row["close_value"]))
    prices = _list_prices()
    sold = tuple(product for product in sorted(products) if product in won_amounts)

    customers = Counter(slug(row["account"]) if row["account"] else None for row in rows)
    ordered_customers = sorted(customers, key=lambda customer: customer or "")
    return _FloorProfile(
        reps=reps,
        rep_weights=tuple(float(deals[rep]) or new_hire for rep in reps),
        win_rates=win_rates,
        products=sold,
        product_weights=tuple(products[product] for product in sold),
        won_amounts={product: tuple(amounts) for product, amounts in won_amounts.items()},
        list_prices={product: prices.get(product, Decimal(0)) for product in sold},
        customers=tuple(ordered_customers),
        customer_weights=tuple(customers[customer] for customer in ordered_customers),
    )


@dataclass(order=True)
class _Due:
    """Something the simulated floor will do to a deal at simulated time `at`."""

    at: datetime
    seq: int
    action: str = field(compare=False)
    """An activity kind (`call`, ...), or `won`, `lost`, `reopen`."""
    deal: _Deal = field(compare=False)
    version: int = field(compare=False, default=0)
    amount: Decimal = field(compare=False, default=Decimal(0))


def live_events(
    start: datetime, rng: random.Random, *, clock: Now = SYSTEM_CLOCK, source: str = "demo"
) -> Iterator[Event]:
    """An endless simulated sales floor starting at `start`; every event is stamped with `clock()`.

    Deals open, collect 3–10 activities and are won or lost a few simulated minutes later, with owners,
    products, amounts and win rates drawn from the data set; about 1 % of wins are reopened later and
    closed again. Ids start with `live-{start}{random}` so two runs never collide.
    """
    profile = _floor_profile()
    run_id = f"live-{start.astimezone(UTC):%Y%m%d%H%M%S}{rng.getrandbits(24):06x}"
    sequence = itertools.count()
    due: list[_Due] = []
    now = start

    def schedule(at: datetime, action: str, deal: _Deal, version: int = 0, amount: int | Decimal = 0) -> None:
        heapq.heappush(due, _Due(at, next(sequence), action, deal, version, Decimal(amount)))

    def emit(item: _Due) -> Event:
        at = _rfc3339(clock())
        if item.action in _ACTIVITY_KINDS:
            event_id = f"{item.deal.deal_id}-a{item.seq}"
            return item.deal.activity(event_id=event_id, at=at, source=source, kind=item.action)
        # `reopen` is a reversal: the CRM moves a won deal back to open (a booking error, a slipped
        # signature), keeping its amount.
        return item.deal.snapshot(
            event_id=f"{item.deal.deal_id}-v{item.version}",
            at=at,
            source=source,
            version=item.version,
            stage="open" if item.action == "reopen" else item.action,
            amount=item.amount,
        )

    for number in itertools.count(1):
        now += timedelta(seconds=rng.expovariate(1 / _MEAN_SECONDS_BETWEEN_NEW_DEALS))
        while due and due[0].at <= now:
            yield emit(heapq.heappop(due))

        owner = rng.choices(profile.reps, profile.rep_weights)[0]
        product = rng.choices(profile.products, profile.product_weights)[0]
        customer = rng.choices(profile.customers, profile.customer_weights)[0]
        renewal = customer is not None and rng.random() < _LIVE_RENEWAL_CHANCE
        deal = _Deal(
            deal_id=f"{run_id}-{number}",
            owner_id=owner,
            kind="renewal" if renewal else "new",
            customer_id=customer,
        )
        amount = rng.choice(profile.won_amounts[product])
        win_rate = _LIVE_RENEWAL_WIN_RATE if renewal else profile.win_rates[owner]
        lifetime = timedelta(seconds=rng.uniform(*_DEAL_LIFETIME_S))
        for _ in range(rng.randint(*_ACTIVITIES_PER_DEAL)):
            kind = rng.choices(_ACTIVITY_KINDS, _ACTIVITY_WEIGHTS)[0]
            schedule(now + lifetime * rng.random(), kind, deal)
        closed = now + lifetime
        if rng.random() < win_rate:
            schedule(closed, "won", deal, 2, amount)
            if rng.random() < _REVERSAL_CHANCE:
                reopened = closed + timedelta(seconds=rng.uniform(*_DEAL_LIFETIME_S))
                schedule(reopened, "reopen", deal, 3, amount)
                again = reopened + timedelta(seconds=rng.uniform(*_DEAL_LIFETIME_S))
                won_again = rng.random() < win_rate
                schedule(again, "won" if won_again else "lost", deal, 4, amount if won_again else 0)
        else:
            schedule(closed, "lost", deal, 2)

        yield deal.snapshot(
            event_id=f"{deal.deal_id}-v1",
            at=_rfc3339(clock()),
            source=source,
            version=1,
            stage="open",
            amount=profile.list_prices[product],
        )


# --- HTTP: posting events and seeding configuration -------------------------------------------------


class DemoRequestFailed(Exception):
    """A request the demo made was refused; carries the problem detail the service answered with."""

    def __init__(self, method: str, url: str, status: int | None, detail: str) -> None:
        where = f"{method} {url}"
        super().__init__(f"{where} failed: {status} {detail}" if status else f"{where} failed: {detail}")
        self.status = status
        self.detail = detail


async def _stopped_after(stop: asyncio.Event | None, seconds: float) -> bool:
    """Sleep `seconds`, or less if `stop` is set meanwhile; True when it was."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    return await wait_set(stop, seconds)


async def _request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    stop: asyncio.Event | None,
    log: Log | None,
    give_up_after: float | None,
) -> httpx.Response | None:
    """Send, retrying connection errors, 429 and 502/503/504 with backoff (the service may still be starting,
    or the key over its rate limit), waiting at least what Retry-After asks.

    Returns the first other response, or None when `stop` is set while waiting; raises DemoRequestFailed
    once `give_up_after` seconds have gone by without an answer.
    """
    retries = HttpRetries(Backoff(first=RETRY_FIRST_DELAY_S, most=RETRY_MAX_DELAY_S),  # read now: tests shorten
                          give_up_after, note_every=LOG_EVERY_S * 3)
    while True:
        try:
            outcome: httpx.Response | httpx.TransportError = await client.request(
                method, url, content=content, headers=headers
            )
        except httpx.TransportError as exc:
            outcome = exc
        try:
            retry = retries.after(outcome)
        except OutOfRetries as exc:
            raise DemoRequestFailed(method, url, None, str(exc)) from None
        if retry is None:
            assert isinstance(outcome, httpx.Response)
            return outcome
        if log is not None and retry.note:
            log(f"{method} {url}: {retry.reason}; retrying")
        if await _stopped_after(stop, retry.wait):
            return None


async def seed_config(
    api_url: str,
    api_key: str,
    *,
    today: date | None = None,
    clock: Now = SYSTEM_CLOCK,
    transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """PUT the demo's teams, reps, plans and boards through the API gateway; safe to run again. `today`
    defaults to the UTC date of `clock`.

    Teams go in first without their manager, then reps, then teams with their manager, so neither
    reference ever points at something missing.
    """
    day = today or clock().date()
    teams = demo_teams()
    documents: list[tuple[str, str, Event]] = [
        ("teams", team["team_id"], {**team, "manager_rep_id": None}) for team in teams
    ]
    documents += [("reps", rep["rep_id"], rep) for rep in demo_reps()]
    documents += [("teams", team["team_id"], team) for team in teams]
    documents += [("plans", plan["plan_id"], plan) for plan in demo_plans(day)]
    documents += [("boards", board["board_id"], board) for board in demo_boards(day)]
    documents += [("achievements", a["achievement_id"], a) for a in demo_achievements()]
    documents += [("streaks", s["streak_id"], s) for s in demo_streaks()]
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    base = api_url.rstrip("/")
    async with httpx.AsyncClient(transport=transport, timeout=30.0) as client:
        for collection, entry_id, document in documents:
            url = f"{base}/v1/{collection}/{entry_id}"
            response = await _request(
                client,
                "PUT",
                url,
                content=orjson.dumps(document),
                headers=headers,
                stop=None,
                log=None,
                give_up_after=SEED_TIMEOUT_S,
            )
            if response is None:  # only a stop event ends the retries early, and there is none here
                raise DemoRequestFailed("PUT", url, None, "stopped")
            if response.is_error:
                raise DemoRequestFailed("PUT", url, response.status_code, problem_detail(response))


@dataclass
class FloorStats:
    """What the floor has posted so far."""

    history_events: int = 0
    history_accepted: int = 0
    history_duplicates: int = 0
    history_skipped: bool = False
    """True when ingest already held this history anchored to an earlier day (409) and it was left alone."""
    live_events: int = 0
    activities: int = 0
    deals_opened: int = 0
    deals_won: int = 0
    deals_lost: int = 0
    reversals: int = 0
    revenue_won: Decimal = Decimal(0)

    def count_live(self, events: Iterable[Event]) -> None:
        for event in events:
            self.live_events += 1
            if event["type"] == "activity":
                self.activities += 1
            elif event["stage"] == "won":
                self.deals_won += 1
                self.revenue_won += Decimal(str(event["amount"]))
            elif event["stage"] == "lost":
                self.deals_lost += 1
            elif event["version"] == 1:
                self.deals_opened += 1
            else:
                self.reversals += 1

    def live_summary(self) -> str:
        return (
            f"live: {self.live_events:,} events · {self.deals_opened:,} deals opened · "
            f"{self.deals_won:,} won (${self.revenue_won:,.0f}) · {self.deals_lost:,} lost · "
            f"{self.reversals:,} reversed · {self.activities:,} activities"
        )


def _ndjson(events: Iterable[Event]) -> bytes:
    return b"".join(orjson.dumps(event) + b"\n" for event in events)


async def run_floor(
    ingest_url: str,
    api_key: str,
    *,
    rate: float,
    history: bool = True,
    stop: asyncio.Event | None = None,
    log: Log = print,
    rng: random.Random | None = None,
    clock: Now = SYSTEM_CLOCK,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FloorStats:
    """Post the history, then live events at `rate` per second until `stop` is set; returns what was sent.

    Rerunning on the same day posts the same history (counted as duplicates). On a later day the shifted
    history has the same ids with other dates, which ingest refuses with 409: the floor then keeps the
    history already there and goes on with live events.
    """
    stop = stop or asyncio.Event()
    url = ingest_url.rstrip("/") + "/v1/events"
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/x-ndjson"}
    stats = FloorStats()
    async with httpx.AsyncClient(transport=transport, timeout=30.0) as client:

        async def post(events: list[Event]) -> Event | None:
            response = await _request(
                client,
                "POST",
                url,
                content=_ndjson(events),
                headers=headers,
                stop=stop,
                log=log,
                give_up_after=None,
            )
            if response is None:
                return None
            if response.status_code == 409:
                return {"conflict": problem_detail(response)}
            if response.is_error:
                raise DemoRequestFailed("POST", url, response.status_code, problem_detail(response))
            answer: Event = response.json()
            return answer

        if history:
            await _post_history(post, stats, stop, log, clock)
        if rate > 0 and not stop.is_set():
            await _stream_live(post, stats, stop, log, rate, rng or random.Random(), clock)
    return stats


async def _post_history(
    post: Callable[[list[Event]], Awaitable[Event | None]],
    stats: FloorStats,
    stop: asyncio.Event,
    log: Log,
    clock: Now,
) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    events = history_events(clock())
    while not stop.is_set():
        batch = list(itertools.islice(events, HISTORY_BATCH))
        if not batch:
            break
        answer = await post(batch)
        if answer is None:
            return
        if "conflict" in answer:
            stats.history_skipped = True
            log(
                "history: ingest already holds the demo history from an earlier day (409); "
                "keeping it and going live"
            )
            return
        stats.history_events += len(batch)
        stats.history_accepted += int(answer.get("accepted", 0))
        stats.history_duplicates += int(answer.get("duplicates", 0))
    log(
        f"history: {stats.history_events:,} events posted ({stats.history_accepted:,} new, "
        f"{stats.history_duplicates:,} duplicates) in {loop.time() - began:.1f} s"
    )


async def _stream_live(
    post: Callable[[list[Event]], Awaitable[Event | None]],
    stats: FloorStats,
    stop: asyncio.Event,
    log: Log,
    rate: float,
    rng: random.Random,
    clock: Now,
) -> None:
    loop = asyncio.get_running_loop()
    events = live_events(clock(), rng, clock=clock)
    largest = max(1, min(10_000, int(rate * 2)))
    began = last_log = loop.time()
    sent = 0
    while not stop.is_set():
        now = loop.time()
        owed = (now - began) * rate - sent
        if owed > largest:
            # Fell behind (ingest slow or away): forget the backlog instead of bursting to catch up.
            began += (owed - largest) / rate
            owed = largest
        if owed >= 1:
            batch = list(itertools.islice(events, int(owed)))
            answer = await post(batch)
            if answer is None:
                break
            if "conflict" in answer:
                raise DemoRequestFailed("POST", "live events", 409, str(answer["conflict"]))
            sent += len(batch)
            stats.count_live(batch)
        if now - last_log >= LOG_EVERY_S:
            log(stats.live_summary())
            last_log = now
        if await _stopped_after(stop, LIVE_TICK_S):
            break
    log(stats.live_summary())
