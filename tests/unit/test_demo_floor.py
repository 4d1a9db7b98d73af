"""The demo sales floor: a valid roster, plans and boards, and event streams ingest accepts."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from schemas.config import Achievement, Board, Plan, Rep, Streak, Team
from schemas.events import ActivityEvent, DealEvent, validate_events
from services.demo import floor
from services.demo.floor import DemoRequestFailed, history_events, live_events, run_floor, seed_config
from services.demo.plans import demo_achievements, demo_boards, demo_plans, demo_streaks
from services.demo.roster import data_rows, demo_reps, demo_teams, rep_id_for

NOW = datetime(2026, 11, 29, 14, 30, tzinfo=UTC)
TODAY = NOW.date()


@pytest.fixture(scope="module")
def history() -> list[dict[str, Any]]:
    return list(history_events(NOW))


@pytest.fixture(scope="module")
def live() -> list[dict[str, Any]]:
    return list(itertools.islice(live_events(NOW, random.Random(7)), 2_000))


def valid(events: list[dict[str, Any]]) -> list[DealEvent | ActivityEvent]:
    parsed, problems = validate_events(events)
    assert problems == []
    return parsed


# --- roster -----------------------------------------------------------------------------------------


def test_roster_reps_and_teams_validate() -> None:
    for rep in demo_reps():
        Rep.model_validate(rep)
    for team in demo_teams():
        Team.model_validate(team)


def test_one_team_per_regional_office() -> None:
    assert [(team["team_id"], team["name"]) for team in demo_teams()] == [
        ("central", "Central"),
        ("east", "East"),
        ("west", "West"),
    ]


def test_every_agent_and_manager_is_a_rep_once() -> None:
    rows = data_rows("sales_teams.csv")
    rep_ids = [rep["rep_id"] for rep in demo_reps()]

    assert len(rep_ids) == len(set(rep_ids))
    assert set(rep_ids) == {rep_id_for(row["sales_agent"]) for row in rows} | {
        rep_id_for(row["manager"]) for row in rows
    }
    assert len(rep_ids) == 35 + 6


def test_team_managers_are_reps_on_their_own_team() -> None:
    reps = {rep["rep_id"]: rep for rep in demo_reps()}

    for team in demo_teams():
        assert reps[team["manager_rep_id"]]["team_id"] == team["team_id"]


def test_rep_ids_and_emails_are_derived_from_names() -> None:
    reps = {rep["rep_id"]: rep for rep in demo_reps()}

    assert rep_id_for("Moses Frase") == "moses-frase"
    assert reps["moses-frase"]["email"] == "moses.frase@maventech.example"
    assert reps["mei-mei-johns"]["email"] == "mei-mei.johns@maventech.example"
    assert reps["moses-frase"] == {
        "rep_id": "moses-frase",
        "name": "Moses Frase",
        "team_id": "central",
        "email": "moses.frase@maventech.example",
        "timezone": None,
    }


# --- plans and boards -------------------------------------------------------------------------------


def test_plans_and_boards_validate() -> None:
    plans = [Plan.model_validate(plan) for plan in demo_plans(TODAY)]
    boards = [Board.model_validate(board) for board in demo_boards(TODAY)]

    assert {plan.plan_id for plan in plans} == {"ae-revenue", "activity-spiff", "manager-revenue"}
    assert {"floor", "floor-quarter", "region-central", "region-east", "region-west", "call-blitz"} <= {
        board.board_id for board in boards
    }


def test_the_demo_has_badges_a_streak_and_a_team_battle() -> None:
    achievements = [Achievement.model_validate(a) for a in demo_achievements()]
    assert {a.rule.kind for a in achievements} == {"total", "deal", "growth"}
    streaks = [Streak.model_validate(s) for s in demo_streaks()]
    assert [s.streak_id for s in streaks] == ["calls"] and streaks[0].workdays == ["mon", "tue", "wed", "thu", "fri"]
    battle = Board.model_validate(next(b for b in demo_boards(TODAY) if b["board_id"] == "battle-east-west"))
    assert battle.battle is not None and battle.scope.teams == battle.battle.teams == ["east", "west"]


def test_revenue_plan_has_a_gated_accelerator_and_starts_this_year() -> None:
    plan = Plan.model_validate(next(p for p in demo_plans(TODAY) if p["plan_id"] == "ae-revenue"))

    assert (plan.metric, plan.period, plan.effective_from) == ("revenue", "quarter", date(2026, 1, 1))
    assert [(tier.tier_id, tier.threshold) for tier in plan.tiers] == [
        ("base", 0.0),
        ("target", 1.0),
        ("accel", 1.25),
    ]
    assert plan.tiers[1].reward
    assert plan.gate is not None and (plan.gate.metric, plan.gate.min) == ("retention_rate", 0.8)


def test_plans_cover_agents_on_the_roster_and_boards_name_known_teams_and_plans() -> None:
    rep_ids = {rep["rep_id"] for rep in demo_reps()}
    team_ids = {team["team_id"] for team in demo_teams()}
    plan_ids = {plan["plan_id"] for plan in demo_plans(TODAY)}

    for plan in demo_plans(TODAY):
        assert set(plan["participants"]["reps"]) <= rep_ids
        assert set(plan["participants"]["teams"]) <= team_ids
        assert set(plan["participants"].get("managers", [])) <= {team["manager_rep_id"] for team in demo_teams()}
    for board in demo_boards(TODAY):
        assert set(board["scope"]["teams"]) <= team_ids
        assert board["plan_id"] is None or board["plan_id"] in plan_ids


def test_regional_boards_rank_one_team_by_revenue_this_month() -> None:
    boards = {board["board_id"]: Board.model_validate(board) for board in demo_boards(TODAY)}

    for team in ("central", "east", "west"):
        board = boards[f"region-{team}"]
        assert (board.metric, board.period, board.scope.teams) == ("revenue", "month", [team])
    assert boards["floor-quarter"].plan_id == "ae-revenue"
    assert boards["floor"].plan_id is None


def test_call_blitz_is_live_for_the_whole_day_in_utc() -> None:
    blitz = Board.model_validate(next(b for b in demo_boards(TODAY) if b["board_id"] == "call-blitz"))

    assert blitz.metric == "activities.call"
    assert blitz.window is not None
    assert blitz.window.starts_at == datetime(2026, 11, 29, tzinfo=UTC)
    assert blitz.window.ends_at == datetime(2026, 11, 30, tzinfo=UTC)
    assert blitz.window.starts_at <= NOW < blitz.window.ends_at


# --- history ----------------------------------------------------------------------------------------


def test_every_history_event_validates(history: list[dict[str, Any]]) -> None:
    assert len(valid(history)) == len(history)


def test_history_is_deterministic(history: list[dict[str, Any]]) -> None:
    assert list(history_events(NOW.replace(hour=1))) == history


def test_history_has_an_open_snapshot_per_engaged_deal_and_a_close_per_closed_one(
    history: list[dict[str, Any]],
) -> None:
    rows = data_rows("sales_pipeline.csv")
    stages = Counter(event["stage"] for event in history)

    assert stages["open"] == sum(1 for row in rows if row["engage_date"]) == 8_300
    assert stages["won"] == 4_238
    assert stages["lost"] == 2_473
    assert len({event["event_id"] for event in history}) == len(history) == 15_011


def test_history_ids_follow_the_opportunity_and_version(history: list[dict[str, Any]]) -> None:
    for event in history:
        assert event["event_id"] == f"demo-{event['deal_id']}-v{event['version']}"
        assert event["version"] == (1 if event["stage"] == "open" else 2)


def test_history_ends_yesterday_and_is_sorted(history: list[dict[str, Any]]) -> None:
    times = [datetime.fromisoformat(event["occurred_at"]) for event in history]

    assert times == sorted(times)
    assert max(times).date() == TODAY - timedelta(days=1)
    closes = [datetime.fromisoformat(event["closed_at"]) for event in history if "closed_at" in event]
    assert max(closes).date() == TODAY - timedelta(days=1)
    assert max(times) < NOW


def test_history_times_are_in_business_hours_with_an_offset(history: list[dict[str, Any]]) -> None:
    for event in history:
        assert event["occurred_at"].endswith("Z")
        assert 9 <= datetime.fromisoformat(event["occurred_at"]).hour < 17


def test_history_revenue_is_the_data_sets(history: list[dict[str, Any]]) -> None:
    won = sum(Decimal(str(event["amount"])) for event in history if event["stage"] == "won")

    assert won == Decimal(10_005_534)


def test_gtxpro_deals_open_at_the_gtx_pro_list_price(history: list[dict[str, Any]]) -> None:
    gtxpro = next(row for row in data_rows("sales_pipeline.csv") if row["product"] == "GTXPro")
    opened = next(event for event in history if event["event_id"] == f"demo-{gtxpro['opportunity_id']}-v1")

    assert opened["amount"] == 4821


def test_a_deals_snapshots_share_owner_kind_and_customer(history: list[dict[str, Any]]) -> None:
    by_deal: dict[str, set[tuple[Any, ...]]] = {}
    for event in history:
        facts = (event["owner_id"], event["kind"], event.get("customer_id"))
        by_deal.setdefault(event["deal_id"], set()).add(facts)

    assert all(len(facts) == 1 for facts in by_deal.values())


def test_about_a_fifth_of_deals_are_renewals_and_most_renewals_are_kept(
    history: list[dict[str, Any]],
) -> None:
    opened = [event for event in history if event["stage"] == "open"]
    renewals = Counter(event["stage"] for event in history if event["kind"] == "renewal")

    assert 0.15 <= renewals["open"] / len(opened) <= 0.25
    retention = renewals["won"] / (renewals["won"] + renewals["lost"])
    assert 0.8 <= retention <= 0.9
    assert all("customer_id" in event for event in history if event["kind"] == "renewal")


def test_every_deal_owner_is_on_the_roster(history: list[dict[str, Any]], live: list[dict[str, Any]]) -> None:
    rep_ids = {rep["rep_id"] for rep in demo_reps()}

    assert {event["owner_id"] for event in history if event["type"] == "deal"} <= rep_ids
    assert {event["owner_id"] for event in live if event["type"] == "deal"} <= rep_ids
    assert {event["rep_id"] for event in live if event["type"] == "activity"} <= rep_ids


def test_history_needs_an_aware_now() -> None:
    with pytest.raises(ValueError):
        next(history_events(datetime(2026, 11, 29)))


# --- live -------------------------------------------------------------------------------------------


def test_every_live_event_validates(live: list[dict[str, Any]]) -> None:
    assert len(valid(live)) == len(live)


def test_live_event_ids_are_unique(live: list[dict[str, Any]]) -> None:
    assert len({event["event_id"] for event in live}) == len(live)
    assert all(event["event_id"].startswith("live-") for event in live)


def test_live_floor_has_activities_of_every_kind_and_wins_and_losses(live: list[dict[str, Any]]) -> None:
    activities = Counter(event["kind"] for event in live if event["type"] == "activity")
    stages = Counter(event["stage"] for event in live if event["type"] == "deal")

    assert set(activities) == {"call", "email", "meeting", "demo"}
    assert stages["won"] > 0 and stages["lost"] > 0 and stages["open"] > 0
    assert sum(activities.values()) > stages["open"]


def test_live_wins_carry_amounts_from_the_data_set(live: list[dict[str, Any]]) -> None:
    won_values = {int(row["close_value"]) for row in data_rows("sales_pipeline.csv") if row["deal_stage"] == "Won"}

    assert {event["amount"] for event in live if event.get("stage") == "won"} <= won_values


def test_live_deals_close_after_they_open_with_a_higher_version(live: list[dict[str, Any]]) -> None:
    first_seen: dict[str, int] = {}
    for position, event in enumerate(live):
        if event["type"] != "deal":
            continue
        if event["version"] == 1:
            first_seen[event["deal_id"]] = position
        else:
            assert first_seen[event["deal_id"]] < position


def test_some_won_deals_are_reopened_with_a_higher_version() -> None:
    events = list(itertools.islice(live_events(NOW, random.Random(3)), 40_000))
    valid(events)
    reopened = [event for event in events if event["type"] == "deal" and event["version"] == 3]
    won = [event for event in events if event.get("stage") == "won" and event["version"] == 2]

    assert reopened and all(event["stage"] == "open" for event in reopened)
    assert len(reopened) < 0.03 * len(won)
    won_ids = {event["deal_id"] for event in won}
    assert {event["deal_id"] for event in reopened} <= won_ids


def test_live_events_are_stamped_by_the_clock() -> None:
    ticks = itertools.count()

    def clock() -> datetime:
        return NOW + timedelta(seconds=next(ticks))

    events = list(itertools.islice(live_events(NOW, random.Random(1), clock=clock), 50))

    assert [event["occurred_at"] for event in events] == [
        (NOW + timedelta(seconds=i)).isoformat().replace("+00:00", "Z") for i in range(50)
    ]
    for event in events:
        if event.get("stage") in ("won", "lost"):
            assert event["closed_at"] == event["occurred_at"]


def test_two_runs_never_share_event_ids() -> None:
    first = itertools.islice(live_events(NOW, random.Random(1)), 500)
    second = itertools.islice(live_events(NOW + timedelta(seconds=5), random.Random(1)), 500)

    assert not {event["event_id"] for event in first} & {event["event_id"] for event in second}


# --- posting to ingest and seeding the API ----------------------------------------------------------


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(floor, "RETRY_FIRST_DELAY_S", 0.01)
    monkeypatch.setattr(floor, "RETRY_MAX_DELAY_S", 0.02)
    monkeypatch.setattr(floor, "SEED_TIMEOUT_S", 0.2)


def ndjson_lines(request: httpx.Request) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in request.content.splitlines() if line.strip()]


@pytest.mark.usefixtures("quick_retries")
async def test_run_floor_posts_history_in_batches_then_live_events_until_stopped() -> None:
    posted: list[list[dict[str, Any]]] = []
    failures = iter([httpx.ConnectError("refused"), 503])
    stop = asyncio.Event()

    async def ingest(request: httpx.Request) -> httpx.Response:
        failure = next(failures, None)
        if isinstance(failure, Exception):
            raise failure
        if failure is not None:
            return httpx.Response(failure, json={"status": failure, "detail": "starting"})
        assert request.url == "http://ingest.test/v1/events"
        assert request.headers["authorization"] == "Bearer secret"
        assert request.headers["content-type"] == "application/x-ndjson"
        batch = ndjson_lines(request)
        posted.append(batch)
        if sum(len(b) for b in posted) > 15_011 + 200:
            stop.set()
        return httpx.Response(202, json={"accepted": len(batch), "duplicates": 0})

    lines: list[str] = []
    stats = await run_floor(
        "http://ingest.test/",
        "secret",
        rate=5_000,
        stop=stop,
        log=lines.append,
        rng=random.Random(2),
        transport=httpx.MockTransport(ingest),
    )

    history_batches = [b for b in posted if b[0]["event_id"].startswith("demo-")]
    assert [len(b) for b in history_batches] == [1_000] * 15 + [11]
    assert stats.history_events == stats.history_accepted == 15_011
    assert stats.live_events > 0 and stats.live_events == sum(
        len(b) for b in posted if b[0]["event_id"].startswith("live-")
    )
    assert any(line.startswith("history: 15,011 events") for line in lines)
    assert lines[-1].startswith("live: ")


@pytest.mark.usefixtures("quick_retries")
async def test_run_floor_keeps_an_earlier_days_history_on_conflict() -> None:
    stop = asyncio.Event()
    live_posts = 0

    async def ingest(request: httpx.Request) -> httpx.Response:
        nonlocal live_posts
        batch = ndjson_lines(request)
        if batch[0]["event_id"].startswith("demo-"):
            return httpx.Response(409, json={"status": 409, "detail": "already accepted with a different body"})
        live_posts += 1
        stop.set()
        return httpx.Response(202, json={"accepted": len(batch), "duplicates": 0})

    stats = await run_floor(
        "http://ingest.test",
        "k",
        rate=1_000,
        stop=stop,
        log=lambda _: None,
        transport=httpx.MockTransport(ingest),
    )

    assert stats.history_skipped and stats.history_events == 0
    assert live_posts == 1


@pytest.mark.usefixtures("quick_retries")
async def test_run_floor_raises_with_the_problem_detail_on_a_refused_key() -> None:
    async def ingest(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"status": 401, "title": "Unauthorized", "detail": "Unknown API key."})

    with pytest.raises(DemoRequestFailed, match="Unknown API key"):
        await run_floor("http://ingest.test", "bad", rate=10, log=lambda _: None, transport=httpx.MockTransport(ingest))


@pytest.mark.usefixtures("quick_retries")
async def test_seed_config_puts_teams_reps_plans_boards_achievements_and_streaks_after_the_api_comes_up() -> None:
    puts: list[tuple[str, dict[str, Any]]] = []
    unavailable = iter([503, 503])

    async def api(request: httpx.Request) -> httpx.Response:
        status = next(unavailable, None)
        if status is not None:
            return httpx.Response(status, json={"status": status, "detail": "not ready"})
        assert request.method == "PUT"
        assert request.headers["authorization"] == "Bearer admin"
        puts.append((request.url.path, orjson.loads(request.content)))
        return httpx.Response(200, content=request.content)

    await seed_config("http://api.test", "admin", today=TODAY, transport=httpx.MockTransport(api))

    paths = [path for path, _ in puts]
    assert set(paths) == (
        {f"/v1/teams/{team['team_id']}" for team in demo_teams()}
        | {f"/v1/reps/{rep['rep_id']}" for rep in demo_reps()}
        | {f"/v1/plans/{plan['plan_id']}" for plan in demo_plans(TODAY)}
        | {f"/v1/boards/{board['board_id']}" for board in demo_boards(TODAY)}
        | {f"/v1/achievements/{a['achievement_id']}" for a in demo_achievements()}
        | {f"/v1/streaks/{s['streak_id']}" for s in demo_streaks()}
    )
    kinds = [path.split("/")[2] for path in paths]
    assert kinds.index("boards") > kinds.index("plans") > max(i for i, k in enumerate(kinds) if k == "reps")
    final = {path: body for path, body in puts}
    assert final["/v1/teams/central"]["manager_rep_id"] == "dustin-brinkmann"


@pytest.mark.usefixtures("quick_retries")
async def test_seed_config_raises_with_the_problem_detail_on_a_rejected_document() -> None:
    async def api(request: httpx.Request) -> httpx.Response:
        problem = {
            "status": 422,
            "detail": "The plan is not valid; see errors.",
            "errors": [{"index": None, "field": "quota", "message": "quota must be greater than 0"}],
        }
        return httpx.Response(422, json=problem)

    with pytest.raises(DemoRequestFailed, match="quota must be greater than 0") as raised:
        await seed_config("http://api.test", "admin", today=TODAY, transport=httpx.MockTransport(api))
    assert raised.value.status == 422


@pytest.mark.usefixtures("quick_retries")
async def test_seed_config_gives_up_when_the_api_never_answers() -> None:
    async def api(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(DemoRequestFailed, match="no answer"):
        await seed_config("http://api.test", "admin", today=TODAY, transport=httpx.MockTransport(api))
