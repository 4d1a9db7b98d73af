"""The notifier's durable record in SQL: tier crossings (unique per rep, plan, period and tier), one delivery
row per channel with its status, attempts and lease, coaching digests, and the delivery log the gateway
serves. Every write that decides "is this new?" is an INSERT … ON CONFLICT DO NOTHING on a unique key."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, exists, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from schemas.preferences import Preferences
from services.common.db import Sessions, rows_matched
from services.common.models import CoachingDigest, NotificationDelivery
from services.common.models import TierCrossingRow as CrossingRow
from services.common.notification_log import OPEN, utc
from services.common.preferences import load_preferences
from services.notifier.tier_crossings import CrossingKey, TierCrossing

__all__ = [
    "BOARD",
    "SLACK",
    "TEAMS",
    "ClaimedDelivery",
    "ClaimedDigest",
    "NewDelivery",
    "begin_attempt",
    "claim_due_deliveries",
    "claim_due_digests",
    "count_open",
    "create_digest",
    "defer",
    "mark_failed",
    "mark_retry",
    "mark_sent",
    "mark_target_done",
    "next_due",
    "record_crossings",
    "sent_in_window",
]

BOARD = "board"
"""The pseudo-channel of board celebrations: never deferred, not subject to the rep's preferences."""
SLACK, TEAMS = "slack", "teams"
"""The team channels in Slack and Microsoft Teams (a team's chat route): like the board, not the rep's own."""
def _insert(session: AsyncSession, model: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to create with a crossing: its channel, first status, when it is due, and why."""

    channel: str
    status: str = "pending"
    due_at: datetime | None = None
    last_error: str | None = None
    reason: str | None = None
    """"quiet_hours" when created deferred; for metrics and logs."""


_KEY_COLUMNS = (CrossingRow.rep_id, CrossingRow.kind, CrossingRow.plan_id, CrossingRow.period_key, CrossingRow.tier_id)
"""The columns of the unique key, in the order of `TierCrossing.key`."""

Router = Callable[[TierCrossing, Preferences | None], list[NewDelivery]]
"""Decides a new crossing's deliveries from the rep's stored preferences (None: never set)."""


def _crossing_of(row: CrossingRow) -> TierCrossing:
    return TierCrossing(
        rep_id=row.rep_id,
        kind=row.kind,
        plan_id=row.plan_id,
        period_key=row.period_key,
        tier_id=row.tier_id,
        tier_name=row.tier_name,
        threshold=row.threshold,
        reward=row.reward,
        crossed_at=utc(row.crossed_at),
        details=orjson.loads(row.details),
    )


async def record_crossings(
    sessions: Sessions, crossings: Sequence[TierCrossing], *, route: Router, now: datetime
) -> list[tuple[TierCrossing, list[NewDelivery]]]:
    """Record the crossings not recorded yet, each with its deliveries, in one transaction; return those
    that were new (in the given order) with the deliveries made for them.

    A crossing already in the table — recorded before a restart, by another notifier during a rebalance,
    or seen in an earlier snapshot — is skipped: the unique key decides, so each is new exactly once.
    """
    wanted: dict[CrossingKey, TierCrossing] = {}
    for crossing in crossings:
        wanted.setdefault(crossing.key, crossing)
    if not wanted:
        return []
    now = utc(now)
    created: list[tuple[TierCrossing, list[NewDelivery]]] = []
    async with sessions() as session, session.begin():
        known: set[CrossingKey] = set()
        keys = list(wanted)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = await session.execute(
                select(*_KEY_COLUMNS).where(tuple_(*_KEY_COLUMNS).in_(chunk))
            )
            known.update(tuple(row) for row in rows)  # type: ignore[misc]
        fresh = [c for key, c in wanted.items() if key not in known]
        if not fresh:
            return []
        prefs = await load_preferences(session, {c.rep_id for c in fresh})
        for crossing in fresh:
            # One statement per crossing, in order, so `seq` ascends the way the notifications must go out.
            inserted = await session.execute(
                _insert(session, CrossingRow)
                .values(
                    notification_id=crossing.notification_id,
                    rep_id=crossing.rep_id,
                    kind=crossing.kind,
                    plan_id=crossing.plan_id,
                    period_key=crossing.period_key,
                    tier_id=crossing.tier_id,
                    tier_name=crossing.tier_name[:200],
                    threshold=crossing.threshold,
                    reward=crossing.reward,
                    crossed_at=utc(crossing.crossed_at),
                    recorded_at=now,
                    details=orjson.dumps(crossing.details).decode(),
                )
                .on_conflict_do_nothing()
                .returning(CrossingRow.seq)
            )
            seq = inserted.scalar()
            if seq is None:
                continue  # recorded by someone else a moment ago
            deliveries = route(crossing, prefs.get(crossing.rep_id))
            for delivery in deliveries:
                await session.execute(
                    _insert(session, NotificationDelivery)
                    .values(
                        notification_id=crossing.notification_id,
                        seq=seq,
                        rep_id=crossing.rep_id,
                        channel=delivery.channel,
                        status=delivery.status,
                        attempts=0,
                        last_error=delivery.last_error,
                        due_at=utc(delivery.due_at or now),
                        targets_done="[]",
                        created_at=now,
                    )
                    .on_conflict_do_nothing()
                )
            created.append((crossing, deliveries))
    return created


# --- the delivery worker's side -----------------------------------------------------------------------------


@dataclass(slots=True)
class ClaimedDelivery:
    """A delivery this process holds the lease on, with the crossing it is about."""

    delivery_id: int
    notification_id: str
    rep_id: str
    channel: str
    status: str
    attempts: int
    targets_done: list[str]
    created_at: datetime
    crossing: TierCrossing


@dataclass(slots=True)
class ClaimedDigest:
    digest_id: str
    team_id: str
    slot: str
    email: str | None
    attempts: int
    body: dict[str, Any] = field(default_factory=dict)


def _claimable(model: Any, now: datetime) -> list[Any]:
    """Conditions of a row that may be leased now: open, and not leased or its lease run out."""
    return [model.status.in_(OPEN), or_(model.lease_until.is_(None), model.lease_until < now)]


async def _lease_due(
    session: AsyncSession,
    model: Any,
    id_col: Any,
    *,
    order_by: Any,
    now: datetime,
    owner: str,
    until: datetime,
    limit: int,
    also: Iterable[Any] = (),
) -> list[Any]:
    """Lease up to `limit` rows that are due and claimable (and meet `also`), first by `order_by`; each is
    taken by a compare-and-set, so two workers never hold the same row. The ids taken."""
    candidates = (
        await session.execute(
            select(id_col).where(model.due_at <= now, *_claimable(model, now), *also).order_by(order_by).limit(limit)
        )
    ).scalars().all()
    taken = []
    for row_id in candidates:
        result = await session.execute(
            update(model).where(id_col == row_id, *_claimable(model, now)).values(lease_until=until, lease_owner=owner)
        )
        if rows_matched(result) == 1:
            taken.append(row_id)
    return taken


async def claim_due_deliveries(
    sessions: Sessions, *, now: datetime, owner: str, lease_until: datetime, limit: int = 50
) -> list[ClaimedDelivery]:
    """Lease up to `limit` deliveries that are due, at most one per (rep, channel): the oldest open one, so
    a rep's notifications go out on each channel in the order they were recorded (a deferred or retrying
    one holds back the later ones)."""
    now, lease_until = utc(now), utc(lease_until)
    earlier = aliased(NotificationDelivery)
    blocked = exists().where(
        and_(
            earlier.rep_id == NotificationDelivery.rep_id,
            earlier.channel == NotificationDelivery.channel,
            earlier.seq < NotificationDelivery.seq,
            earlier.status.in_(OPEN),
        )
    )
    async with sessions() as session, session.begin():
        taken = await _lease_due(
            session, NotificationDelivery, NotificationDelivery.delivery_id, order_by=NotificationDelivery.seq,
            now=now, owner=owner, until=lease_until, limit=limit, also=[~blocked],
        )
        if not taken:
            return []
        rows = (
            await session.execute(
                select(NotificationDelivery, CrossingRow)
                .join(CrossingRow, CrossingRow.notification_id == NotificationDelivery.notification_id)
                .where(NotificationDelivery.delivery_id.in_(taken))
                .order_by(NotificationDelivery.seq)
            )
        ).all()
    return [
        ClaimedDelivery(
            delivery_id=d.delivery_id,
            notification_id=d.notification_id,
            rep_id=d.rep_id,
            channel=d.channel,
            status=d.status,
            attempts=d.attempts,
            targets_done=orjson.loads(d.targets_done or "[]"),
            created_at=utc(d.created_at),
            crossing=_crossing_of(c),
        )
        for d, c in rows
    ]


async def next_due(sessions: Sessions) -> datetime | None:
    """When the earliest open delivery or digest comes due (leases aside), or None when none is open."""
    async with sessions() as session:
        first = (
            await session.execute(
                select(func.min(NotificationDelivery.due_at)).where(NotificationDelivery.status.in_(OPEN))
            )
        ).scalar()
        digest = (
            await session.execute(select(func.min(CoachingDigest.due_at)).where(CoachingDigest.status.in_(OPEN)))
        ).scalar()
    times = [utc(t) for t in (first, digest) if t is not None]
    return min(times) if times else None


async def sent_in_window(sessions: Sessions, rep_id: str, channel: str, start: datetime,
                         end: datetime) -> int:
    """How many of the rep's deliveries on `channel` were sent in [start, end): what the hourly cap counts."""
    async with sessions() as session:
        return int(
            (
                await session.execute(
                    select(func.count()).select_from(NotificationDelivery).where(
                        NotificationDelivery.rep_id == rep_id,
                        NotificationDelivery.channel == channel,
                        NotificationDelivery.status == "sent",
                        NotificationDelivery.sent_at >= utc(start),
                        NotificationDelivery.sent_at < utc(end),
                    )
                )
            ).scalar()
            or 0
        )


def _model(kind: str) -> tuple[Any, Any]:
    if kind == "digest":
        return CoachingDigest, CoachingDigest.digest_id
    return NotificationDelivery, NotificationDelivery.delivery_id


async def _update(sessions: Sessions, kind: str, row_id: Any, owner: str, **values: Any) -> bool:
    """Update a row this process holds the lease on; False when the lease was lost (someone else took over)."""
    model, id_col = _model(kind)
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(model).where(id_col == row_id, model.lease_owner == owner).values(**values)
        )
    return rows_matched(result) == 1


async def defer(sessions: Sessions, kind: str, row_id: Any, owner: str, due_at: datetime) -> bool:
    """Not now (quiet hours, hourly cap): status deferred, due again at `due_at`, lease released."""
    return await _update(sessions, kind, row_id, owner, status="deferred", due_at=utc(due_at), lease_until=None,
                         lease_owner=None)


async def begin_attempt(sessions: Sessions, kind: str, row_id: Any, owner: str, attempts: int,
                        lease_until: datetime) -> bool:
    """Count the attempt before it is made (a crash mid-send still shows it) and renew the lease."""
    return await _update(sessions, kind, row_id, owner, attempts=attempts, status="pending",
                         lease_until=utc(lease_until))


async def mark_target_done(sessions: Sessions, row_id: int, owner: str, targets: list[str],
                           lease_until: datetime) -> bool:
    """Remember that one webhook URL has the message, so a retry of the delivery skips it."""
    return await _update(sessions, "delivery", row_id, owner, targets_done=orjson.dumps(targets).decode(),
                         lease_until=utc(lease_until))


async def mark_sent(sessions: Sessions, kind: str, row_id: Any, owner: str, now: datetime) -> bool:
    return await _update(sessions, kind, row_id, owner, status="sent", sent_at=utc(now), lease_until=None,
                         lease_owner=None)


async def mark_retry(sessions: Sessions, kind: str, row_id: Any, owner: str, error: str,
                     due_at: datetime) -> bool:
    return await _update(sessions, kind, row_id, owner, status="pending", last_error=error[:2000],
                         due_at=utc(due_at), lease_until=None, lease_owner=None)


async def mark_failed(sessions: Sessions, kind: str, row_id: Any, owner: str, error: str) -> bool:
    return await _update(sessions, kind, row_id, owner, status="failed", last_error=error[:2000], lease_until=None,
                         lease_owner=None)


# --- coaching digests ---------------------------------------------------------------------------------------


async def create_digest(
    sessions: Sessions, *, digest_id: str, team_id: str, slot: str, manager_rep_id: str,
    email: str | None, body: dict[str, Any], status: str, last_error: str | None, now: datetime,
) -> bool:
    """Record the team's digest for `slot` unless it exists; True when this call created it."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            _insert(session, CoachingDigest)
            .values(
                digest_id=digest_id, team_id=team_id, slot=slot, manager_rep_id=manager_rep_id, email=email,
                body=orjson.dumps(body).decode(), status=status, attempts=0, last_error=last_error,
                due_at=utc(now), created_at=utc(now),
            )
            .on_conflict_do_nothing()
            .returning(CoachingDigest.digest_id)
        )
        return result.scalar() is not None


async def claim_due_digests(
    sessions: Sessions, *, now: datetime, owner: str, lease_until: datetime, limit: int = 20
) -> list[ClaimedDigest]:
    now, lease_until = utc(now), utc(lease_until)
    async with sessions() as session, session.begin():
        taken = await _lease_due(
            session, CoachingDigest, CoachingDigest.digest_id, order_by=CoachingDigest.due_at,
            now=now, owner=owner, until=lease_until, limit=limit,
        )
        if not taken:
            return []
        rows = (await session.execute(select(CoachingDigest).where(CoachingDigest.digest_id.in_(taken)))).scalars()
        return [
            ClaimedDigest(
                digest_id=row.digest_id, team_id=row.team_id, slot=row.slot, email=row.email, attempts=row.attempts,
                body=orjson.loads(row.body),
            )
            for row in rows
        ]


# --- the delivery log (GET /v1/notifications) ---------------------------------------------------------------




async def count_open(sessions: Sessions) -> int:
    """Deliveries still to go out (pending or deferred)."""
    async with sessions() as session:
        return int(
            (
                await session.execute(
                    select(func.count()).select_from(NotificationDelivery).where(NotificationDelivery.status.in_(OPEN))
                )
            ).scalar()
            or 0
        )
