"""The notifier against real parts: the real broker, SQLite and PostgreSQL, a real SMTP server (aiosmtpd) and a
real HTTP receiver. The notifier runs in the test's event loop with a clock the test controls; snapshots are
produced onto rep-snapshots in the format scoring publishes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from schemas.messages import RepProgress
from schemas.preferences import Preferences
from services.common import db
from services.common.broker import ensure_topics
from services.common.config_feed import publish_config
from services.common.kafka import make_producer
from services.common.models import CoachingDigest, NotificationDelivery, TierCrossingRow
from services.common.notification_log import notification_log
from services.common.preferences import write_preferences
from services.common.settings import Settings
from services.common.topics import DEAD_LETTER, NOTIFICATIONS, REP_SNAPSHOTS, partition_for, topic_name
from services.notifier.messages import verify_signature
from services.notifier.service import Notifier
from tests.support.clock import NOVEMBER_CLOCK
from tests.support.events import AE_PLAN
from tests.support.kafka import read_topic, read_topic_raw
from tests.support.messages import rep_snapshot
from tests.support.receivers import WEBHOOK_SECRET, Hook, Mailbox, chat_shapes
from tests.support.stack import until

pytestmark = pytest.mark.integration

PLAN = AE_PLAN


# --- a notifier in this event loop ------------------------------------------------------------------------------


class ManualClock:
    """The notifier's clock in these tests: NOVEMBER_CLOCK (the fixtures' month) until a test sets `now`, then
    exactly that instant."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now or NOVEMBER_CLOCK.now()


@dataclass
class Harness:
    settings: Settings
    sessions: Any
    producer: AIOKafkaProducer
    clock: ManualClock
    notifiers: list[Notifier] = field(default_factory=list)
    delivering: list[Notifier] = field(default_factory=list)
    version: int = 0

    async def start_notifier(self, **kw: Any) -> Notifier:
        notifier = Notifier(self.settings, sessions=self.sessions, registry=CollectorRegistry(), clock=self.clock)
        await notifier.start(**kw)
        self.notifiers.append(notifier)
        if kw.get("deliver", True):
            self.delivering.append(notifier)
        return notifier

    async def worker_passes(self, count: int = 2) -> None:
        """Until every running delivery worker has made `count` more whole passes over what is due: what they
        would send at this clock, they have sent (or deferred) by then."""
        running = [n for n in self.delivering if n in self.notifiers]  # a test may have stopped one
        start = {id(n): n.delivery.passes for n in running}
        await until(lambda: all(n.delivery.passes >= start[id(n)] + count for n in running),
                    what=f"{count} more passes of each delivery worker")

    async def config(self, kind: str, entry_id: str, body: dict[str, Any]) -> None:
        await publish_config(self.producer, self.settings, kind, entry_id, body, int(time.time() * 1000))

    async def snapshot(self, rep_id: str, reached: dict[str, Any], progress: list[dict[str, Any]] | None = None,
                       version: int | None = None, earned: dict[str, Any] | None = None,
                       milestones: dict[str, Any] | None = None, streaks: dict[str, Any] | None = None) -> None:
        self.version += 1
        message = rep_snapshot(rep_id, version if version is not None else self.version, reached, progress, earned,
                               milestones, streaks)
        await self.producer.send_and_wait(
            topic_name(self.settings, REP_SNAPSHOTS), message, key=rep_id.encode(),
            partition=partition_for(rep_id, self.settings.partitions),
        )

    async def log(self, rep_id: str | None = None) -> list[dict[str, Any]]:
        return await notification_log(self.sessions, rep_id=rep_id, limit=500)

    async def count(self, model: Any) -> int:
        async with self.sessions() as session:
            return int((await session.execute(select(func.count()).select_from(model))).scalar() or 0)


@pytest.fixture
async def harness(broker: str, database_url: str) -> AsyncIterator[Harness]:
    await asyncio.to_thread(db.migrate, database_url)
    settings = Settings(
        kafka_bootstrap=broker,
        database_url=database_url,
        topic_prefix=f"n{uuid.uuid4().hex[:8]}.",
        broker_session_timeout=3,
        broker_heartbeat_interval=0.5,
        notify_retry_base_seconds=0.05,
        notify_retry_max_seconds=0.5,
        notify_poll_seconds=0.05,
        notify_send_timeout=3,
        notify_lease_seconds=5,
        notify_digest_schedule="off",
    )
    await ensure_topics(settings)
    engine = db.create_engine(database_url)
    producer = make_producer(settings)
    await producer.start()
    h = Harness(settings, db.sessionmaker(engine), producer, ManualClock())
    await h.config("plan", "ae-revenue", PLAN)
    await h.config("team", "east", {"team_id": "east", "name": "East", "manager_rep_id": "mia"})
    for rep, zone in (("ada", "America/Los_Angeles"), ("bob", None), ("cy", None), ("mia", "Europe/Berlin")):
        await h.config("rep", rep, {"rep_id": rep, "name": rep.title(), "team_id": "east",
                                    "email": f"{rep}@example.com", "timezone": zone})
    try:
        yield h
    finally:
        for notifier in h.notifiers:
            await notifier.stop()
        await producer.stop()
        await engine.dispose()
        _report_leftover_tasks()


def _report_leftover_tasks() -> None:
    """Print the tasks still running after every notifier stopped: a rare hang of this module's teardown (the
    event loop waiting on a cancelled task) shows its culprit in the captured output."""
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task() and not task.done():
            print(f"left running after teardown: {task.get_name()} {task.get_coro()!r}")
            task.print_stack(limit=8)


def receivers_settings(mailbox: Mailbox, hook: Hook) -> dict[str, Any]:
    return {
        "notify_smtp_host": "127.0.0.1",
        "notify_smtp_port": mailbox.port,
        "notify_smtp_from": "salespulse@example.com",
        "notify_slack_webhook_urls": hook.url("/slack"),
        "notify_webhook_urls": hook.url("/json"),
        "notify_webhook_secret": WEBHOOK_SECRET,
    }


@pytest.fixture
def mailbox() -> Any:
    with Mailbox() as box:
        yield box


@pytest.fixture
def hook() -> Any:
    receiver = Hook()
    yield receiver
    receiver.close()


def reached(*tiers: str, period: str = "2026-11", at: str = "2026-11-20T10:00:00.000001Z") -> dict[str, Any]:
    return {"ae-revenue": {period: {tier: at for tier in tiers}}}


def in_app_messages(h: Harness) -> list[dict[str, Any]]:
    return read_topic(h.settings.bootstrap, topic_name(h.settings, NOTIFICATIONS))


def all_sent(log: list[dict[str, Any]], count: int) -> bool:
    return len(log) == count and all(d["status"] == "sent" for entry in log for d in entry["deliveries"])


# --- tests ------------------------------------------------------------------------------------------------------


async def test_each_crossing_is_delivered_once_per_channel_through_duplicates_replays_and_restarts(
    harness: Harness, mailbox: Mailbox, hook: Hook
) -> None:
    h = harness
    for key, value in receivers_settings(mailbox, hook).items():
        setattr(h.settings, key, value)
    first = await h.start_notifier()
    progress = [{"plan_id": "ae-revenue", "period_key": "2026-11", "metric": "revenue", "value": 1300.0,
                 "quota": 1000.0, "attainment": 1.3, "tier": None, "next_tier": None, "gap_to_next": None,
                 "payout": 0, "rewards": [], "pace": 1.5, "forecast_attainment": 1.5}]
    # Two tiers at once, then the same snapshot again, then an older one, then a newer one that adds nothing.
    await h.snapshot("ada", reached("accel", "target"), progress)
    await h.snapshot("ada", reached("accel", "target"), progress, version=h.version)
    await h.snapshot("ada", reached("target"), version=1)
    await h.snapshot("ada", reached("accel", "target"), progress)
    await until(lambda: h.log("ada"), what="crossings recorded")
    log = await until(lambda: _sent(h, 2), what="every delivery sent")
    assert [entry["tier"]["tier_id"] for entry in log] == ["accel", "target"]  # newest first
    assert {d["channel"] for d in log[0]["deliveries"]} == {"board", "in_app", "webhook", "email"}

    # A replay of the topic and a restart with a fresh in-memory state: nothing is new.
    await first.stop()
    h.notifiers.remove(first)
    await h.snapshot("ada", reached("accel", "target"), progress)
    second = await h.start_notifier()
    await until(lambda: second.consumer.batches > 0, what="the restarted notifier read the snapshot")
    await h.worker_passes()
    assert await h.count(TierCrossingRow) == 2
    assert await h.count(NotificationDelivery) == 8

    # Counted at the receivers: once per channel, lowest tier first.
    assert sorted(mailbox.ids()) == sorted(e["notification_id"] for e in log) and len(mailbox.messages) == 2
    assert "Target" in mailbox.messages[0]["Subject"] and "Accelerator" in mailbox.messages[1]["Subject"]
    mail = mailbox.messages[1]
    assert mail["To"] == "ada@example.com"
    assert mail["Message-ID"] == f"<{log[0]['notification_id']}@salespulse.notifier>"
    assert "1 extra day of PTO" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "That is the top tier" in mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    slack, generic = hook.accepted("/slack"), hook.accepted("/json")
    assert len(slack) == 2 and len(generic) == 2
    assert [json.loads(r["body"])["tier"]["tier_id"] for r in generic] == ["target", "accel"]
    assert "Ada reached Target" in json.loads(slack[0]["body"])["text"] and json.loads(slack[0]["body"])["blocks"]
    for request in generic:
        headers = request["headers"]
        assert verify_signature(WEBHOOK_SECRET, request["body"], headers["X-Salespulse-Signature"])
        assert headers["Idempotency-Key"] == json.loads(request["body"])["notification_id"]
        assert int(headers["X-Salespulse-Timestamp"]) == json.loads(request["body"])["sent_at"]
    messages = await asyncio.to_thread(in_app_messages, h)
    assert sorted((m["type"], m["tier"]["tier_id"]) for m in messages) == [
        ("celebration", "accel"), ("celebration", "target"), ("notification", "accel"), ("notification", "target")
    ]


async def test_an_achievement_and_a_streak_milestone_are_delivered_once_per_channel_apart_from_a_tier(
    harness: Harness, mailbox: Mailbox, hook: Hook
) -> None:
    h = harness
    for key, value in receivers_settings(mailbox, hook).items():
        setattr(h.settings, key, value)
    # The achievement shares its id with the plan, and its period with the tier: two notifications, not one.
    await h.config("achievement", "ae-revenue", {
        "achievement_id": "ae-revenue", "name": "First <deal>", "badge": "\U0001F947", "description": "Won one",
        "rule": {"kind": "total", "metric": "deals_won", "period": "month", "at_least": 1}})
    await h.config("streak", "calls", {"streak_id": "calls", "name": "20 calls a day",
                                       "rule": {"metric": "activities.call", "at_least": 20}})
    earned = {"ae-revenue": {"2026-11": "2026-11-20T10:00:00Z"}}
    marks = {"calls": {"2026-11-16": {"5": "2026-11-20T10:00:00Z"}}}
    first = await h.start_notifier()
    await h.snapshot("ada", reached("target"), earned=earned, milestones=marks)
    # The same snapshot again, and an older one without the milestone.
    await h.snapshot("ada", reached("target"), earned=earned, milestones=marks, version=h.version)
    await h.snapshot("ada", reached("target"), earned=earned, version=1)
    log = await until(lambda: _sent(h, 3), what="the crossing, the badge and the milestone sent on every channel")
    assert sorted(e["kind"] for e in log) == ["achievement", "streak", "tier"]
    badge = next(e for e in log if e["kind"] == "achievement")
    assert badge["achievement"] == {"achievement_id": "ae-revenue", "name": "First <deal>", "badge": "\U0001F947",
                                    "description": "Won one"}
    assert badge["plan_id"] is None and badge["tier"] is None and badge["period_key"] == "2026-11"
    assert {d["channel"] for d in badge["deliveries"]} == {"board", "in_app", "webhook", "email"}

    # Replayed after a restart with a fresh in-memory state: nothing is new.
    await first.stop()
    h.notifiers.remove(first)
    await h.snapshot("ada", reached("target"), earned=earned, milestones=marks)
    second = await h.start_notifier()
    await until(lambda: second.consumer.batches > 0, what="the restarted notifier read the snapshot")
    await h.worker_passes()
    assert await h.count(TierCrossingRow) == 3
    assert await h.count(NotificationDelivery) == 12
    assert len(mailbox.messages) == 3
    subjects = {m["Subject"] for m in mailbox.messages}
    assert "You earned \U0001F947 First <deal>, in 2026-11" in subjects
    assert "You are on a 5-day streak: 20 calls a day \U0001F525" in subjects
    generic = [json.loads(r["body"]) for r in hook.accepted("/json")]
    assert sorted(b["type"] for b in generic) == ["achievement", "streak_milestone", "tier_crossing"]
    slack = [json.loads(r["body"]) for r in hook.accepted("/slack")]
    assert any("earned *First &lt;deal&gt;*" in b["blocks"][0]["text"]["text"] for b in slack)
    messages = await asyncio.to_thread(in_app_messages, h)
    assert sorted((m["type"], m.get("kind", "tier")) for m in messages) == [
        ("celebration", "achievement"), ("celebration", "streak"), ("celebration", "tier"),
        ("notification", "achievement"), ("notification", "streak"), ("notification", "tier")]


async def test_slack_and_teams_get_each_teams_news_through_its_own_route_with_user_text_escaped(
    harness: Harness,
) -> None:
    h = harness
    chat = Hook(validate=chat_shapes)  # answers 400, as Slack and Teams do, to a body outside their shapes
    try:
        await h.config("team", "west", {"team_id": "west", "name": "West"})
        await h.config("rep", "wes", {"rep_id": "wes", "name": "Wes [x](https://evil.example) *bold* <!here> & co",
                                      "team_id": "west"})
        await h.config("rep", "zoe", {"rep_id": "zoe", "name": "Zoe"})  # no team: the "*" route
        await h.config("achievement", "first-deal", {
            "achievement_id": "first-deal", "name": "First deal", "badge": "\U0001F947",
            "rule": {"kind": "total", "metric": "deals_won", "period": "month", "at_least": 1}})
        await h.config("chat", "east", {"team_id": "east",
                                        "slack": {"webhook_url": chat.url("/slack/east"), "channel": "#east-wins"},
                                        "teams": {"webhook_url": chat.url("/teams/east")}})
        await h.config("chat", "west", {"team_id": "west", "teams": {"webhook_url": chat.url("/teams/west")},
                                        "kinds": ["achievement"]})
        await h.config("chat", "*", {"team_id": "*", "slack": {"webhook_url": chat.url("/slack/all")}})
        await h.start_notifier()
        badge = {"first-deal": {"2026-11": "2026-11-20T10:00:00Z"}}
        await h.snapshot("ada", reached("target"))  # east: both apps
        await h.snapshot("wes", reached("target"), earned=badge)  # west: the badge only, in Teams
        await h.snapshot("zoe", {}, earned=badge)  # no team: "*", Slack
        log = await until(lambda: _sent(h, 4), what="every delivery sent")
        by_rep = {(e["rep_id"], e["kind"]): {d["channel"] for d in e["deliveries"]} for e in log}
        assert by_rep[("ada", "tier")] >= {"slack", "teams"} and "slack" not in by_rep[("wes", "tier")]
        assert "teams" not in by_rep[("wes", "tier")] and "teams" in by_rep[("wes", "achievement")]
        assert "slack" in by_rep[("zoe", "achievement")] and "teams" not in by_rep[("zoe", "achievement")]

        assert [r["errors"] for r in chat.requests if not r["accepted"]] == []  # every body in its app's shape
        assert sorted(r["path"] for r in chat.requests) == ["/slack/all", "/slack/east", "/teams/east", "/teams/west"]
        east = json.loads(chat.accepted("/slack/east")[0]["body"])
        assert east["channel"] == "#east-wins" and "Ada reached Target" in east["text"]
        card = json.loads(chat.accepted("/teams/west")[0]["body"])["attachments"][0]["content"]
        headline = card["body"][0]["text"]
        assert "Wes \\[x\\]\\(https://evil.example\\) \\*bold\\* &lt;!here&gt; &amp; co earned" in headline
        assert "](" not in headline and "<" not in headline
        assert {"title": "Badge", "value": "\U0001F947 First deal"} in card["body"][1]["facts"]
        assert chat.accepted("/teams/west")[0]["headers"]["Idempotency-Key"] == next(
            e["notification_id"] for e in log if e["rep_id"] == "wes" and e["kind"] == "achievement")
    finally:
        chat.close()


async def _sent(h: Harness, count: int) -> list[dict[str, Any]] | None:
    log = await h.log()
    return log if all_sent(log, count) else None


async def test_a_failing_webhook_is_retried_with_backoff_and_delivered_once(
    harness: Harness, mailbox: Mailbox
) -> None:
    h = harness
    hook = Hook(failures=3, fail_with=500)
    try:
        h.settings.notify_webhook_urls = hook.url("/json")
        h.settings.notify_webhook_secret = WEBHOOK_SECRET
        notifier = await h.start_notifier()
        await write_preferences(h.sessions, "bob", Preferences(channels=["webhook"]))
        await h.snapshot("bob", reached("target"))
        log = await until(lambda: _sent(h, 1), what="the webhook delivered after the receiver recovered")
        webhook = next(d for d in log[0]["deliveries"] if d["channel"] == "webhook")
        assert webhook["attempts"] == 4 and "HTTP 500" in webhook["last_error"]
        assert len(hook.requests) == 4 and len(hook.accepted("/json")) == 1
        assert len({r["headers"]["Idempotency-Key"] for r in hook.requests}) == 1
        assert notifier.metrics.retried.labels("webhook")._value.get() == 3
        assert notifier.metrics.sent.labels("webhook")._value.get() == 1
        assert mailbox.messages == []  # bob chose the webhook only
    finally:
        hook.close()


async def test_a_rep_id_that_looks_like_slack_markup_reaches_slack_escaped(harness: Harness, hook: Hook) -> None:
    """`<!channel>` in a rep id (not on the roster, so the id is the name shown) must not ping a channel."""
    h = harness
    h.settings.notify_slack_webhook_urls = hook.url("/slack")
    await h.start_notifier()
    rep = "<!channel> & <@U123>"
    await write_preferences(h.sessions, rep, Preferences(channels=["webhook"]))
    await h.snapshot(rep, reached("target"))
    await until(lambda: hook.accepted("/slack"), what="the Slack message delivered")
    body = hook.accepted("/slack")[0]["body"].decode()
    assert "<!channel>" not in body and "<@U123>" not in body
    payload = json.loads(body)
    assert payload["text"].startswith(":tada: &lt;!channel&gt; &amp; &lt;@U123&gt; reached Target")
    assert "*&lt;!channel&gt; &amp; &lt;@U123&gt;*" in payload["blocks"][0]["text"]["text"]


async def test_a_webhook_that_answers_4xx_is_not_retried(harness: Harness) -> None:
    h = harness
    hook = Hook(failures=100, fail_with=404)
    try:
        h.settings.notify_slack_webhook_urls = hook.url("/slack")
        await h.start_notifier()
        await write_preferences(h.sessions, "bob", Preferences(channels=["webhook", "email"]))
        await h.snapshot("bob", reached("target"))

        async def settled() -> list[dict[str, Any]] | None:
            log = await h.log()
            done = log and all(d["status"] in ("sent", "failed") for d in log[0]["deliveries"])
            return log if done else None

        log = await until(settled, what="the deliveries settled")
        by_channel = {d["channel"]: d for d in log[0]["deliveries"]}
        assert by_channel["webhook"]["status"] == "failed" and by_channel["webhook"]["attempts"] == 1
        assert "HTTP 404" in by_channel["webhook"]["last_error"]
        # e-mail was chosen explicitly but no SMTP server is configured: failed at once, saying why.
        assert by_channel["email"]["status"] == "failed" and "SMTP" in by_channel["email"]["last_error"]
        assert by_channel["board"]["status"] == "sent"
    finally:
        hook.close()


async def test_quiet_hours_defer_across_the_reps_midnight_and_the_hourly_cap_spreads_a_burst(
    harness: Harness, mailbox: Mailbox
) -> None:
    h = harness
    h.settings.notify_smtp_host, h.settings.notify_smtp_port = "127.0.0.1", mailbox.port
    # Ada works in Los Angeles: 06:30 UTC on Nov 30 is 22:30 on Nov 29 there.
    h.clock.now = datetime(2026, 11, 30, 6, 30, tzinfo=UTC)
    await write_preferences(h.sessions, "ada", Preferences.model_validate(
        {"channels": ["email"], "quiet_hours": {"start": "22:00", "end": "07:00"}, "max_per_hour": 1}))
    notifier = await h.start_notifier()
    await h.snapshot("ada", reached("target", "accel", at="2026-11-30T06:29:00Z"))
    log = await until(lambda: h.log("ada"), what="crossings recorded")
    await until(lambda: asyncio.to_thread(in_app_messages, h), what="the board celebration, not deferred")
    log = await h.log("ada")
    emails = [next(d for d in e["deliveries"] if d["channel"] == "email") for e in log]
    assert [d["status"] for d in emails] == ["deferred", "deferred"]
    assert {d["due_at"] for d in emails} == {"2026-11-30T15:00:00+00:00"}  # 07:00 in Los Angeles
    assert notifier.metrics.deferred.labels("email", "quiet_hours")._value.get() == 2
    await h.worker_passes()
    assert mailbox.messages == []

    # 07:00:30 in Los Angeles: the first goes; the cap of one per hour holds the second to 08:00.
    h.clock.now = datetime(2026, 11, 30, 15, 0, 30, tzinfo=UTC)
    notifier.wake.set()
    await until(lambda: len(mailbox.messages) == 1, what="the first e-mail after quiet hours")

    async def capped() -> list[dict[str, Any]] | None:
        log = await h.log("ada")
        email = next(d for d in log[0]["deliveries"] if d["channel"] == "email")
        return log if email["status"] == "deferred" and email["due_at"] == "2026-11-30T16:00:00+00:00" else None

    await until(capped, what="the second e-mail deferred to the next hour window")
    assert notifier.metrics.deferred.labels("email", "hourly_cap")._value.get() >= 1
    assert "Target" in mailbox.messages[0]["Subject"]
    await h.worker_passes()
    assert len(mailbox.messages) == 1

    h.clock.now = datetime(2026, 11, 30, 16, 0, 5, tzinfo=UTC)
    notifier.wake.set()
    await until(lambda: len(mailbox.messages) == 2, what="the second e-mail in the next hour")
    assert "Accelerator" in mailbox.messages[1]["Subject"]
    # The receiver has the message a moment before the notifier marks it sent in SQL: wait for the mark.
    await until(lambda: _sent(h, 2), what="both deliveries marked sent")


async def test_coaching_digest_goes_to_the_manager_once_per_slot_with_the_streaks_about_to_break(
    harness: Harness, mailbox: Mailbox
) -> None:
    h = harness
    h.settings.notify_smtp_host, h.settings.notify_smtp_port = "127.0.0.1", mailbox.port
    h.settings.notify_digest_schedule = "daily"
    h.settings.notify_digest_at = "08:00"
    # 08:05 in Berlin (the manager's zone) on Nov 19: 18 of 30 days of the month gone.
    h.clock.now = datetime(2026, 11, 19, 7, 5, tzinfo=UTC)
    await h.config("plan", "ae-revenue", {**PLAN, "participants": {"teams": ["east"], "reps": []}})
    await h.config("streak", "calls", {"streak_id": "calls", "name": "20 calls a day",
                                       "rule": {"metric": "activities.call", "at_least": 20}})
    # Ada met the streak Monday to Wednesday; on Thursday morning it is alive and about to break. Bob's ended on
    # Tuesday: broken, not at risk.
    await h.snapshot("ada", {}, [{"plan_id": "ae-revenue", "period_key": "2026-11", "attainment": 0.9}],
                     streaks={"calls": [["2026-11-16", "2026-11-18"]]})
    await h.snapshot("bob", {}, [{"plan_id": "ae-revenue", "period_key": "2026-11", "attainment": 0.2}],
                     streaks={"calls": [["2026-11-16", "2026-11-17"]]})
    one = await h.start_notifier(digests=False)
    two = await h.start_notifier(consume=False, digests=False)
    for n in (one, two):
        await until(lambda n=n: n.progress.progress.get("bob") and n.config.caught_up.is_set(), what="feeds")
        await until(lambda n=n: n.config.state.plans().get("ae-revenue", {}).get("participants"), what="plan")
    made = await one.run_scheduled_digests()
    assert [d["team_id"] for d in made] == ["east"]
    assert [r["rep_id"] for r in made[0]["rows"]] == ["cy", "bob"]  # cy has no progress: attainment 0
    assert [(r["rep_id"], r["days"], r["since"]) for r in made[0]["streaks_at_risk"]] == [("ada", 3, "2026-11-16")]
    assert await two.run_scheduled_digests() == []  # the other notifier finds the slot taken
    assert await one.run_scheduled_digests() == []
    await until(lambda: len(mailbox.messages) == 1, what="the digest e-mail")
    await h.worker_passes()
    assert len(mailbox.messages) == 1 and await h.count(CoachingDigest) == 1
    digest = mailbox.messages[0]
    assert digest["To"] == "mia@example.com" and "2 reps behind pace, 1 streak about to break" in digest["Subject"]
    body = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Bob" in body and "Cy" in body and "Ada:" not in body
    assert "Ada — a 3-day streak of 20 calls a day, since 2026-11-16" in body and "Bob —" not in body

    # Before 08:00 Berlin the next day nothing new; after it, the next slot.
    h.clock.now = datetime(2026, 11, 20, 6, 55, tzinfo=UTC)
    assert await one.run_scheduled_digests() == []
    h.clock.now = datetime(2026, 11, 20, 7, 1, tzinfo=UTC)
    assert [d["slot"] for d in await one.run_scheduled_digests()] == ["daily:2026-11-20"]
    # A manual run always makes a fresh one.
    assert len(await one.run_digests_now()) == 1
    await until(lambda: len(mailbox.messages) == 3, what="the next and the manual digest")


async def test_a_crossing_seen_by_two_notifiers_at_once_is_recorded_once(harness: Harness) -> None:
    h = harness
    a = await h.start_notifier(consume=False, deliver=False, digests=False)
    b = await h.start_notifier(consume=False, deliver=False, digests=False)
    await until(lambda: a.config.caught_up.is_set() and b.config.caught_up.is_set(), what="config")
    snapshot = RepProgress(rep_id="cy", version=1, reached=reached("target", "accel"))  # type: ignore[arg-type]
    results = await asyncio.gather(*(n.handle_snapshots([snapshot]) for n in (a, b, a, b)))
    assert sum(len(r) for r in results) == 2
    assert await h.count(TierCrossingRow) == 2
    assert await h.count(NotificationDelivery) == 4  # board + in_app for each (no webhook or SMTP configured)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_deliveries_left_by_a_crashed_worker_are_taken_over_after_the_lease(harness: Harness) -> None:
    h = harness
    h.settings.notify_lease_seconds = 1
    a = await h.start_notifier(deliver=False, digests=False)
    await h.snapshot("cy", reached("target"))
    await until(lambda: h.log("cy"), what="recorded")
    # `a` claims the deliveries and "crashes" before sending anything.
    from services.notifier import store

    now = h.clock()
    claimed = await store.claim_due_deliveries(h.sessions, now=now, owner=a.owner,
                                               lease_until=now + timedelta(seconds=1))
    assert {c.channel for c in claimed} == {"board", "in_app"}
    b = await h.start_notifier(consume=False, digests=False)
    log = await until(lambda: _sent(h, 1), timeout=10, what="the other notifier took over")
    assert all(d["attempts"] == 1 for d in log[0]["deliveries"])
    assert b.metrics.sent.labels("in_app")._value.get() == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_crossing_of_a_plan_the_config_feed_has_not_delivered_yet_waits_for_its_names(
    harness: Harness,
) -> None:
    h = harness
    notifier = await h.start_notifier()
    await h.snapshot("bob", {"new-plan": {"2026-11": {"gold": "2026-11-20T10:00:00Z"}}})
    await until(lambda: "new-plan" in notifier.recorder.awaiting, what="the notifier waiting for the new plan")
    await h.config("plan", "new-plan", {**PLAN, "plan_id": "new-plan", "name": "New plan", "tiers": [
        {"tier_id": "gold", "name": "Gold", "threshold": 1.0, "rate": 0.1, "reward": "A trophy"}]})
    log = await until(lambda: h.log("bob"), what="the crossing recorded")
    assert log[0]["tier"] == {"tier_id": "gold", "name": "Gold", "threshold": 1.0}
    assert log[0]["reward"] == "A trophy"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_unreadable_snapshots_go_to_the_dead_letter_topic_and_the_others_go_on(harness: Harness) -> None:
    h = harness
    n = await h.start_notifier(deliver=False, digests=False)
    bad = [b"not json", orjson.dumps({"no": "rep"}), orjson.dumps({"rep_id": "bob", "version": 1, "reached": [1, 2]}),
           orjson.dumps({"rep_id": "ada", "version": 1,
                         "reached": {"ae-revenue": {"2026-11": {"target": "yesterday"}}}})]
    topic = topic_name(h.settings, REP_SNAPSHOTS)
    for raw in bad:  # on the good snapshot's partition, ahead of it
        await h.producer.send_and_wait(topic, raw, key=b"cy", partition=partition_for("cy", h.settings.partitions))
    await h.snapshot("cy", reached("target"))
    log = await until(lambda: h.log("cy"), what="the crossing of the snapshot behind the unreadable ones")
    assert [(e["rep_id"], e["tier"]["tier_id"]) for e in log] == [("cy", "target")]
    dead_topic = topic_name(h.settings, DEAD_LETTER)
    dead = await until(lambda: _at_least(asyncio.to_thread(read_topic_raw, h.settings.bootstrap, dead_topic), len(bad)),
                       what="the unreadable snapshots on the dead-letter topic")
    assert [value for value, _ in dead] == bad
    assert all(headers["salespulse-reader"] == b"notifier snapshots" for _, headers in dead)
    assert all(headers["salespulse-source"].startswith(topic.encode()) for _, headers in dead)
    assert n.dead_letters.counted.labels("notifier snapshots")._value.get() == len(bad)


async def _at_least(records: Any, count: int) -> Any:
    found = await records
    return found if len(found) >= count else None
