"""The notifier as a real process beside the gateway: screens get `notification` and `celebration` pushes, the
delivery log and preferences are served over HTTP, and a notifier killed with SIGKILL in the middle of a burst
of crossings delivers each one exactly once per channel after it is restarted (counted at the receivers).

Snapshots are produced onto rep-snapshots in the format scoring publishes (rep_id, version, state, progress,
reached), so these tests do not depend on the scoring worker's wiring."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import func, select

from services.common import db
from services.common.config_feed import publish_config
from services.common.kafka import make_producer
from services.common.models import NotificationDelivery
from services.common.notification_log import notification_log
from services.common.settings import Settings
from services.common.topics import CREDITS, NOTIFICATIONS, REP_SNAPSHOTS, partition_for, topic_name
from tests.support.clock import NOVEMBER_CLOCK, now_stamp
from tests.support.events import AE_PLAN as PLAN
from tests.support.kafka import read_topic
from tests.support.messages import rep_snapshot
from tests.support.metrics import metric, scrape
from tests.support.receivers import IdempotentHook, Mailbox, receiver_env
from tests.support.stack import Stack, run_db, wait_until

pytestmark = pytest.mark.integration


def produce(settings: Settings, records: list[tuple[str, bytes]], config: list[tuple[str, str, dict]] = ()) -> None:  # type: ignore[assignment]
    async def main() -> None:
        producer = make_producer(settings)
        await producer.start()
        try:
            for kind, entry_id, body in config:
                await publish_config(producer, settings, kind, entry_id, body, int(time.time() * 1000))
            topic = topic_name(settings, REP_SNAPSHOTS)
            for rep_id, value in records:
                await producer.send_and_wait(topic, value, key=rep_id.encode(),
                                             partition=partition_for(rep_id, settings.partitions))
        finally:
            await producer.stop()

    asyncio.run(main())


def settings_of(stack: Stack) -> Settings:
    return Settings(kafka_bootstrap=stack.bootstrap, database_url=stack.database_url, topic_prefix=stack.topic_prefix)


def reached(*tiers: str, at: str = "2026-11-20T10:00:00Z") -> dict[str, Any]:
    return {"ae-revenue": {"2026-11": {tier: at for tier in tiers}}}


@pytest.fixture
def receivers() -> Iterator[tuple[Mailbox, IdempotentHook]]:
    hook = IdempotentHook()
    with Mailbox() as mailbox:
        yield mailbox, hook
    hook.close()


FIRST_DEAL = {"achievement_id": "first-deal", "name": "First deal of the month", "badge": "\U0001F947",
              "rule": {"kind": "total", "metric": "deals_won", "period": "month", "at_least": 1}}


CALLS = {"streak_id": "calls", "name": "20 calls a day", "rule": {"metric": "activities.call", "at_least": 20}}


def make_stack(broker: str, tmp_path: Path, env: dict[str, str]) -> Stack:
    stack = Stack(
        bootstrap=broker,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}",
        data_dir=tmp_path / "data",
        topic_prefix=f"ns{uuid.uuid4().hex[:6]}.",
        admin_key="sp_test_" + secrets.token_hex(8),
        extra_env=env,
        clock=NOVEMBER_CLOCK,
    )
    stack.prepare()
    return stack


def test_screens_get_notifications_and_celebrations_and_the_log_and_preferences_are_served(
    broker: str, tmp_path: Path, receivers: tuple[Mailbox, IdempotentHook]
) -> None:
    mailbox, hook = receivers
    stack = make_stack(broker, tmp_path, receiver_env(mailbox, hook))
    try:
        stack.start_service("scoring")  # the gateway is ready once the pipeline has caught up
        stack.start_service("api")
        stack.start_service("notifier")
        stack.wait_healthy("api", "/v1/ready")
        stack.wait_healthy("notifier", "/v1/ready")
        api, headers = stack.api, stack.headers
        httpx.put(f"{api}/v1/teams/east", json={"name": "East", "manager_rep_id": "mia"},
                  headers=headers).raise_for_status()
        for rep in ("ada", "bob"):
            httpx.put(f"{api}/v1/reps/{rep}", json={"name": rep.title(), "team_id": "east",
                                                    "email": f"{rep}@example.com"}, headers=headers).raise_for_status()
        httpx.put(f"{api}/v1/plans/ae-revenue", json=PLAN, headers=headers).raise_for_status()
        board = {"title": "East", "metric": "revenue", "period": "month", "scope": {"teams": ["east"]}}
        httpx.put(f"{api}/v1/boards/east", json=board, headers=headers).raise_for_status()
        httpx.put(f"{api}/v1/boards/west", json={**board, "title": "West", "scope": {"teams": ["west"]}},
                  headers=headers).raise_for_status()

        # Preferences: defaults until set; only an admin key may change them; nonsense is refused with reasons.
        viewer = {"Authorization": f"Bearer {stack.create_key('viewer', 'screen')[1]}"}
        got = httpx.get(f"{api}/v1/reps/bob/preferences", headers=viewer).json()
        assert got == {"rep_id": "bob", "channels": ["in_app", "webhook", "email"], "quiet_hours": None,
                       "max_per_hour": None, "default": True}
        prefs = {"channels": ["in_app", "email"], "quiet_hours": None, "max_per_hour": 5}
        assert httpx.put(f"{api}/v1/reps/bob/preferences", json=prefs, headers=viewer).status_code == 403
        bad = httpx.put(f"{api}/v1/reps/bob/preferences", json={"channels": ["sms"],
                                                                "quiet_hours": {"start": "25:00", "end": "07:00"}},
                        headers=headers)
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
        assert {e["field"] for e in bad.json()["errors"]} >= {"channels.0", "quiet_hours.start"}
        assert httpx.put(f"{api}/v1/reps/bob/preferences", json=prefs, headers=headers).status_code == 200
        assert httpx.get(f"{api}/v1/reps/bob/preferences", headers=viewer).json() == {
            "rep_id": "bob", **prefs, "default": False}

        async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
            token = stack.admin_key
            async with websockets.connect(f"{stack.ws}/v1/ws/reps/ada?token={token}") as rep_ws, \
                    websockets.connect(f"{stack.ws}/v1/ws/boards/east?token={token}") as board_ws, \
                    websockets.connect(f"{stack.ws}/v1/ws/boards/west?token={token}") as west_ws:
                for ws in (rep_ws, board_ws, west_ws):
                    await asyncio.wait_for(ws.recv(), 10)  # the first progress / standings
                await asyncio.to_thread(produce, settings_of(stack), [("ada", rep_snapshot("ada", 5, reached("target",
                                                                                                       "accel")))])
                notes = await _collect(rep_ws, "notification", 2)
                parties = await _collect(board_ws, "celebration", 2)
                others = await _collect(west_ws, "celebration", 1, timeout=1.0)
                return notes, parties, others

        notes, parties, others = asyncio.run(scenario())
        assert [n["tier"]["tier_id"] for n in notes] == ["target", "accel"]
        assert notes[0]["reward"] == "Shout-out at all-hands" and notes[0]["name"] == "Ada"
        assert [p["tier"]["tier_id"] for p in parties] == ["target", "accel"]
        assert set(parties[0]) == {"type", "notification_id", "rep_id", "name", "plan_id", "period_key", "tier", "at"}
        assert others == []  # ada is not on the west board

        def delivered() -> list[dict[str, Any]] | None:
            log = httpx.get(f"{api}/v1/notifications", params={"rep_id": "ada"}, headers=viewer).json()
            return log if len(log) == 2 and all(d["status"] == "sent" for e in log for d in e["deliveries"]) else None

        log = wait_until(delivered, timeout=30, what="every delivery of ada's crossings sent")
        assert [e["tier"] for e in log] == [
            {"tier_id": "accel", "name": "Accelerator", "threshold": 1.25},
            {"tier_id": "target", "name": "Target", "threshold": 1.0},
        ]
        assert log[0]["reward"] == "1 extra day of PTO" and log[0]["crossed_at"].startswith("2026-11-20T10:00:00")
        assert sorted(d["channel"] for d in log[0]["deliveries"]) == ["board", "email", "in_app", "webhook"]
        assert {k for d in log[0]["deliveries"] for k in d} >= {"channel", "status", "attempts", "last_error"}
        assert httpx.get(f"{api}/v1/notifications", params={"rep_id": "bob"}, headers=viewer).json() == []
        assert httpx.get(f"{api}/v1/notifications").status_code == 401

        metrics = httpx.get(f"http://127.0.0.1:{stack.ports['notifier']}/metrics").text
        assert "salespulse_notifier_tier_crossings_recorded_total 2.0" in metrics
        assert 'salespulse_notifier_deliveries_sent_total{channel="email"} 2.0' in metrics
    finally:
        stack.stop()


async def _collect(ws: Any, kind: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), max(0.05, deadline - time.monotonic())))
        except TimeoutError:
            break
        if message.get("type") == kind:
            out.append(message)
    return out


def test_a_notifier_killed_mid_burst_delivers_every_crossing_badge_and_milestone_exactly_once_per_channel(
    broker: str, tmp_path: Path, receivers: tuple[Mailbox, IdempotentHook]
) -> None:
    mailbox, hook = receivers
    hook.delay = 0.05  # a receiver that takes a moment, so the kill lands while sends are in flight
    stack = make_stack(broker, tmp_path, receiver_env(mailbox, hook))
    settings = settings_of(stack)
    reps = [f"rep{i:02d}" for i in range(40)]
    config = [("plan", "ae-revenue", PLAN), ("achievement", "first-deal", FIRST_DEAL), ("streak", "calls", CALLS)] + [
        ("rep", r, {"rep_id": r, "name": r.upper(), "email": f"{r}@example.com"}) for r in reps
    ]
    first, second = reps[:25], reps[25:]
    badge = {"first-deal": {"2026-11": "2026-11-20T10:00:00Z"}}
    marks = {"calls": {"2026-11-16": {"5": "2026-11-20T10:00:00Z"}}}
    try:
        produce(settings, [(r, rep_snapshot(r, 1, reached("target"))) for r in first], config)
        stack.start_service("notifier")
        stack.wait_healthy("notifier", "/v1/health")
        produce(settings, [(r, rep_snapshot(r, 2, reached("target", "accel"), earned=badge, milestones=marks))
                           for r in first])
        wait_until(lambda: len(hook.accepted("/slack")) >= 10, timeout=60, what="the burst under way")
        stack.kill("notifier")  # SIGKILL: no shutdown, leases held, offsets maybe uncommitted
        in_flight = leased_deliveries(stack.database_url)
        produce(settings, [(r, rep_snapshot(r, 3, reached("target", "accel"), earned=badge, milestones=marks))
                           for r in second])
        # Replayed: the first wave's snapshots again (a scoring restart republishes them), nothing new in them.
        produce(settings, [(r, rep_snapshot(r, 2, reached("target", "accel"), earned=badge, milestones=marks))
                           for r in first])
        assert len(hook.accepted("/slack")) < 4 * len(reps), "the kill came too late to test anything"

        stack.start_service("notifier")
        expected = 4 * len(reps)  # two tiers, one badge and one streak milestone each

        def all_delivered() -> list[dict[str, Any]] | None:
            log = delivery_log(stack.database_url)
            done = len(log) == expected and all(d["status"] == "sent" for e in log for d in e["deliveries"])
            return log if done else None

        log = wait_until(all_delivered, timeout=120, interval=0.5, what="every crossing delivered after the restart")
        ids = {e["notification_id"] for e in log}
        assert len(ids) == expected
        assert Counter(e["kind"] for e in log) == {"tier": 2 * len(reps), "achievement": len(reps), "streak": len(reps)}
        assert {e["achievement"]["name"] for e in log if e["kind"] == "achievement"} == {FIRST_DEAL["name"]}

        # Counted at the receivers, by the idempotency key each one honours: every crossing exactly once.
        for path in ("/slack", "/json"):
            keys = hook.keys(path)
            assert set(keys) == ids, path
        mails = Counter(mailbox.ids())
        assert set(mails) == ids
        notes = read_topic(stack.bootstrap, topic_name(settings, NOTIFICATIONS), timeout=20)
        for kind in ("notification", "celebration"):
            assert {m["notification_id"] for m in notes if m["type"] == kind} == ids, kind
        # A resend can only come from a send the kill interrupted between the wire and the database.
        resent = sum(n - 1 for n in mails.values()) + sum(n - 1 for p in ("/slack", "/json")
                                                          for n in hook.keys(p).values())
        assert resent <= in_flight, f"{resent} resends but only {in_flight} sends were in flight at the kill"
        # Each rep's tiers arrived lowest first on every channel.
        for path in ("/json",):
            order: dict[str, list[str]] = {}
            for request in hook.accepted(path):
                body = json.loads(request["body"])
                if body["type"] != "tier_crossing":
                    continue
                order.setdefault(body["rep_id"], [])
                if body["tier"]["tier_id"] not in order[body["rep_id"]]:
                    order[body["rep_id"]].append(body["tier"]["tier_id"])
            assert all(tiers == ["target", "accel"] for tiers in order.values())
    finally:
        stack.stop()


def delivery_log(database_url: str) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        engine = db.create_engine(database_url)
        try:
            return await notification_log(db.sessionmaker(engine), rep_id=None, limit=1000)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def leased_deliveries(database_url: str) -> int:
    """Deliveries a worker had claimed and not finished: the only ones a kill can make resend."""

    async def count(session: Any) -> int:
        query = select(func.count()).select_from(NotificationDelivery).where(
            NotificationDelivery.lease_owner.is_not(None), NotificationDelivery.status.in_(("pending", "deferred"))
        )
        return int((await session.execute(query)).scalar() or 0)

    return int(run_db(database_url, count))


def drained(stack: Stack, deal_events: int) -> None:
    """Wait until the pipeline has nothing left in flight: the deal-state agent has taken `deal_events`
    events, the rep agent every credit they made, and the notifier every snapshot on the topic. Each agent
    counts a batch only after publishing its output, so each step's count is final when the next is read."""
    settings = settings_of(stack)

    def count(label: str, name: str, **labels: str) -> float:
        return metric(scrape(stack, label), name, **labels)

    def topic_size(topic: str) -> int:
        return len(read_topic(stack.bootstrap, topic_name(settings, topic)))

    wait_until(lambda: count("scoring", "salespulse_scoring_events_total", agent="deal-state") >= deal_events,
               timeout=30, what=f"{deal_events} deal events scored")
    credits = topic_size(CREDITS)
    wait_until(lambda: count("scoring", "salespulse_scoring_events_total", agent="rep-kpis") >= credits,
               timeout=30, what=f"{credits} credits folded")
    snapshots = topic_size(REP_SNAPSHOTS)
    wait_until(lambda: count("notifier", "salespulse_notifier_snapshots_total") >= snapshots,
               timeout=30, what=f"the notifier reading all {snapshots} snapshots")


def won(event_id: str, deal_id: str, rep: str, amount: str, stage: str = "won", version: int = 1) -> dict[str, Any]:
    now = now_stamp(NOVEMBER_CLOCK)
    return {"event_id": event_id, "type": "deal", "occurred_at": now, "deal_id": deal_id, "version": version,
            "owner_id": rep, "stage": stage, "amount": amount, "closed_at": now}


def test_a_won_deal_through_the_whole_stack_notifies_each_tier_once_and_a_reversal_does_not_repeat_it(
    broker: str, tmp_path: Path, receivers: tuple[Mailbox, IdempotentHook]
) -> None:
    mailbox, hook = receivers
    stack = make_stack(broker, tmp_path, receiver_env(mailbox, hook)).start()
    try:
        stack.start_service("notifier")
        stack.wait_healthy("notifier", "/v1/ready")
        notifier_health = httpx.get(f"http://127.0.0.1:{stack.ports['notifier']}/v1/health")
        assert notifier_health.headers["x-content-type-options"] == "nosniff"  # the baseline headers, here too
        assert notifier_health.headers["x-frame-options"] == "DENY"
        api, headers = stack.api, stack.headers
        httpx.put(f"{api}/v1/reps/ada", json={"name": "Ada", "email": "ada@example.com"},
                  headers=headers).raise_for_status()
        httpx.put(f"{api}/v1/plans/ae-revenue", json={**PLAN, "effective_from": "2020-01-01"},
                  headers=headers).raise_for_status()

        def post(events: list[dict[str, Any]]) -> None:
            r = httpx.post(f"{stack.ingest}/v1/events", json=events, headers=headers, timeout=30)
            assert r.status_code == 202, r.text

        post([won("e1", "d1", "ada", "1300.00")])  # 130 % of quota: Target and Accelerator at once

        def sent(count: int) -> Any:
            def probe() -> list[dict[str, Any]] | None:
                log = httpx.get(f"{api}/v1/notifications", params={"rep_id": "ada"}, headers=headers).json()
                ok = len(log) == count and all(d["status"] == "sent" for e in log for d in e["deliveries"])
                return log if ok else None

            return probe

        log = wait_until(sent(2), timeout=60, what="both tiers notified")
        assert [e["tier"]["tier_id"] for e in log] == ["accel", "target"]
        # Lost, then won again: attainment drops below and rises again; the tiers were already reached.
        post([won("e2", "d1", "ada", "1300.00", stage="lost", version=2)])
        again = won("e3", "d1", "ada", "1300.00", stage="won", version=3)
        post([again])
        post([again])  # a duplicate event
        drained(stack, deal_events=3)  # e1, e2, e3: the duplicate never reaches the topic
        assert len(wait_until(sent(2), timeout=10, what="still two crossings")) == 2
        assert [m["Subject"].split(" in ")[0] for m in mailbox.messages] == [
            "You reached Target", "You reached Accelerator"
        ]
        assert len(hook.accepted("/slack")) == 2 and len(hook.accepted("/json")) == 2
    finally:
        stack.stop()
