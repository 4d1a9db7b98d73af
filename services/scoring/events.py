"""Decoding of ledger events (their canonical JSON) into the domain's plain values."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from services.scoring.domain.deals import DealSnapshot


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def snapshot_from_event(event: dict[str, Any]) -> DealSnapshot:
    """A DealSnapshot from a deal event's canonical JSON; splits default to the owner at 100 %."""
    splits = event.get("splits")
    if splits:
        credited = tuple((s["rep_id"], _decimal(s["share"])) for s in splits)
    else:
        credited = ((event["owner_id"], Decimal(1)),)
    closed_at = event.get("closed_at")
    return DealSnapshot(
        deal_id=event["deal_id"],
        event_id=event["event_id"],
        version=event.get("version"),
        occurred_at=datetime.fromisoformat(event["occurred_at"]),
        owner_id=event["owner_id"],
        stage=event["stage"],
        amount=_decimal(event["amount"]),
        closed_at=datetime.fromisoformat(closed_at) if closed_at else None,
        splits=credited,
        kind=event.get("kind") or "new",
    )
