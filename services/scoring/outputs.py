"""What scoring writes: `credits` (schemas.messages.CreditsMessage) and `rep-snapshots`
(schemas.messages.RepSnapshot), and how the rep agent reads credits back.

The writers serialise straight from the domain objects' stored forms instead of building the pydantic models:
a snapshot of a rep with a full hot state (about 130 periods) costs 8 µs this way and about 220 µs through
the model, on the hot path of every batch. tests/unit/test_scoring_outputs.py decodes what they write with
the models, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from schemas.messages import CreditsMessage, decode
from services.scoring.domain.credits import Credit
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.rep_state import RepState

__all__ = ["credits_message", "read_credits", "snapshot_message"]


def credits_message(src: str, seq: int, accepted_ms: int, credits: Iterable[Credit]) -> bytes:
    """A `credits` message: the credit deltas ledger event `seq` (from partition `src`) made for one rep."""
    return b'{"src":%s,"seq":%d,"accepted_ms":%d,"credits":%s}' % (
        orjson.dumps(src),
        seq,
        accepted_ms,
        orjson.dumps([credit.to_dict() for credit in credits]),
    )


def read_credits(raw: bytes) -> tuple[CreditsMessage, list[Credit]]:
    """A `credits` message and its lines as domain credits; UnreadableMessage when it is not one."""
    message = decode(CreditsMessage, raw)
    lines = [
        Credit(c.rep_id, c.at, c.revenue, c.deals_won, c.deals_lost, c.renewals_won, c.renewals_lost, c.overlay,
               c.rollup, c.currency, c.deal_total)
        for c in message.credits
    ]
    return message, lines


def snapshot_message(
    state: RepState,
    *,
    progress: Sequence[Mapping[str, object]],
    contests: Mapping[str, KpiTotals],
    updated_ms: int,
    accepted_ms: int,
) -> bytes:
    """A `rep-snapshots` message: the rep's hot periods and history horizons, plan progress, tiers reached
    and contest totals; dedup marks, the history outbox and per-minute totals stay inside scoring."""
    document: dict[str, Any] = {
        "rep_id": state.rep_id,
        "version": state.version,
        "updated_ms": updated_ms,
        "accepted_ms": accepted_ms,
        "periods": {
            kind: {key: totals.to_dict() for key, totals in bucket.items()}
            for kind, bucket in state.periods.items()
            if bucket
        },
        "horizons": dict(state.horizons),
        "minute_floor": state.minute_floor,
        "contests": {board_id: totals.to_dict() for board_id, totals in contests.items()},
        "progress": list(progress),
        "reached": state.reached.to_dict(),
        "earned": state.earned,
        "streaks": state.streak_days,
        "milestones": state.streak_marks,
    }
    return orjson.dumps(document)
