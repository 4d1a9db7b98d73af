"""The notification log the notifier keeps in SQL (tier crossings and their deliveries), as the gateway serves it:
`GET /v1/notifications` (CONTRACT §6, docs/notifications.md)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select

from services.common.db import Sessions
from services.common.models import NotificationDelivery
from services.common.models import TierCrossingRow as CrossingRow

__all__ = ["OPEN", "notification_log", "utc"]

OPEN = ("pending", "deferred")
"""Statuses of a delivery that still has to go out."""


def utc(at: datetime) -> datetime:
    """An aware UTC datetime; SQLite hands back naive ones that were written as UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


async def notification_log(
    sessions: Sessions, *, rep_id: str | None, limit: int, among: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """Newest first (in the order crossings were recorded), each with its deliveries (CONTRACT §6); only
    `rep_id`'s when given, only those of the reps `among` when given."""
    async with sessions() as session:
        query = select(CrossingRow).order_by(CrossingRow.seq.desc()).limit(limit)
        if rep_id is not None:
            query = query.where(CrossingRow.rep_id == rep_id)
        if among is not None:
            query = query.where(CrossingRow.rep_id.in_(list(among)))
        crossings = (await session.execute(query)).scalars().all()
        ids = [c.notification_id for c in crossings]
        deliveries: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        if ids:
            rows = await session.execute(
                select(NotificationDelivery)
                .where(NotificationDelivery.notification_id.in_(ids))
                .order_by(NotificationDelivery.delivery_id)
            )
            for d in rows.scalars():
                deliveries[d.notification_id].append(
                    {
                        "channel": d.channel,
                        "status": d.status,
                        "attempts": d.attempts,
                        "last_error": d.last_error,
                        "due_at": utc(d.due_at).isoformat() if d.status in OPEN else None,
                        "sent_at": utc(d.sent_at).isoformat() if d.sent_at else None,
                    }
                )
    return [_entry(c, deliveries[c.notification_id]) for c in crossings]


def _entry(c: CrossingRow, deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    """One log entry: a tier crossing (`kind` tier) as CONTRACT §6 shows it, an achievement earned (`kind`
    achievement: `achievement` instead of `plan_id` and `tier`) or a streak milestone (`kind` streak: `streak`)."""
    entry: dict[str, Any] = {
        "notification_id": c.notification_id,
        "kind": c.kind,
        "rep_id": c.rep_id,
        "plan_id": c.plan_id,
        "period_key": c.period_key,
        "tier": {"tier_id": c.tier_id, "name": c.tier_name, "threshold": c.threshold},
        "reward": c.reward,
        "crossed_at": utc(c.crossed_at).isoformat(),
        "deliveries": deliveries,
    }
    if c.kind == "achievement":
        details = orjson.loads(c.details)
        entry.update(plan_id=None, tier=None, achievement={
            "achievement_id": c.plan_id, "name": c.tier_name, "badge": details.get("badge"),
            "description": details.get("description"),
        })
    elif c.kind == "streak":
        details = orjson.loads(c.details)
        entry.update(plan_id=None, tier=None, streak={
            "streak_id": c.plan_id, "name": details.get("streak_name") or c.plan_id, "badge": details.get("badge"),
            "days": int(c.tier_id), "since": c.period_key,
        })
    return entry
