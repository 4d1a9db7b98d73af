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

__all__ = ["OPEN", "notification_log", "own_part", "utc"]

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
    part = own_part(c.kind, c.plan_id, c.tier_name, c.tier_id, c.period_key, orjson.loads(c.details))
    if part is not None:
        entry.update({"plan_id": None, "tier": None, part[0]: part[1]})
    return entry


def own_part(
    kind: str, subject_id: str, name: str, tier_id: str, period_key: str, details: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """What an achievement (`achievement`: id, name, badge, description) or a streak milestone (`streak`: id, name,
    badge, days, since) carries of its own in messages and in the log, from what the notifier recorded: the subject
    (achievement or streak id), the name, the milestone, the period (a streak's first day) and the details. None for
    a tier crossing."""
    if kind == "achievement":
        return "achievement", {"achievement_id": subject_id, "name": name, "badge": str(details.get("badge") or ""),
                               "description": details.get("description")}
    if kind == "streak":
        return "streak", {"streak_id": subject_id, "name": str(details.get("streak_name") or subject_id),
                          "badge": str(details.get("badge") or ""), "days": int(details.get("days") or tier_id),
                          "since": period_key}
    return None
