"""Topic messages for tests that stand in for a writer (scoring's rep snapshots), built with the models in
schemas/messages.py so they are exactly what the readers expect."""

from __future__ import annotations

import time
from typing import Any

from schemas.messages import PlanProgressEntry, RepSnapshot, encode

__all__ = ["progress_entry", "rep_snapshot"]

_PROGRESS_DEFAULTS: dict[str, Any] = {
    "metric": "revenue", "value": 0.0, "quota": 1.0, "attainment": 0.0, "tier": None, "next_tier": None,
    "gap_to_next": None, "payout": 0.0, "rewards": [], "pace": None, "forecast_attainment": None,
}


def progress_entry(**fields: Any) -> PlanProgressEntry:
    """A progress entry: `plan_id`, `period_key` and whatever the test cares about; the rest at neutral values."""
    return PlanProgressEntry.model_validate({**_PROGRESS_DEFAULTS, **fields})


def rep_snapshot(
    rep_id: str, version: int, reached: dict[str, Any], progress: list[dict[str, Any]] | None = None,
    earned: dict[str, Any] | None = None, milestones: dict[str, Any] | None = None,
    streaks: dict[str, Any] | None = None,
) -> bytes:
    """A rep-snapshots message with no KPI totals: who, which version, the progress entries, tiers reached and
    achievements earned and streak milestones reached."""
    return encode(
        RepSnapshot(
            rep_id=rep_id,
            version=version,
            updated_ms=int(time.time() * 1000),
            progress=[progress_entry(**entry) for entry in progress or []],
            reached=reached,
            earned=earned or {},
            milestones=milestones or {},
            streaks=streaks or {},
        )
    )
