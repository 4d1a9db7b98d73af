"""What scoring writes: `credits` (schemas.messages.CreditsMessage) and `rep-snapshots`
(schemas.messages.RepSnapshot), and how the rep agent reads credits back.

The writers serialise straight from the domain objects' stored forms instead of building the pydantic models:
a snapshot of a rep with a full hot state (about 130 periods) costs 8 µs this way and about 220 µs through
the model, on the hot path of every batch. Credits go through msgspec both ways, domain credits in and out (a
message read in ~1 µs instead of ~6 µs through the model). tests/unit/test_topic_messages.py decodes what they
write with the models, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Final

import msgspec
import orjson

from schemas.messages import UnreadableMessage
from services.scoring.domain.credits import CREDIT_MEASURES, Credit
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.rep_state import RepState

__all__ = ["CreditsWire", "credits_message", "read_credits", "snapshot_message"]


class CreditsWire(msgspec.Struct, frozen=True, kw_only=True):
    """A `credits` message as the deal agent writes it and the rep agent reads it, straight into domain credits.
    schemas.messages.CreditsMessage is its documented model: tests/unit/test_topic_messages.py checks that both
    read what the writer writes alike and refuse the same malformed messages."""

    src: str
    seq: Annotated[int, msgspec.Meta(ge=0)]
    accepted_ms: Annotated[int, msgspec.Meta(ge=0)] = 0
    credits: list[Credit]


_ENCODE: Final = msgspec.json.Encoder().encode
_DECODE_CREDITS: Final = msgspec.json.Decoder(CreditsWire).decode


def credits_message(src: str, seq: int, accepted_ms: int, credits: Iterable[Credit]) -> bytes:
    """A `credits` message: the credit deltas ledger event `seq` (from partition `src`) made for one rep."""
    return _ENCODE(CreditsWire(src=src, seq=seq, accepted_ms=accepted_ms, credits=list(credits)))


def read_credits(raw: bytes) -> tuple[CreditsWire, list[Credit]]:
    """A `credits` message and its lines as domain credits; UnreadableMessage when it is not one."""
    try:
        message = _DECODE_CREDITS(raw)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise UnreadableMessage(f"not a CreditsMessage: {exc}") from exc
    for credit in message.credits:
        total = credit.deal_total
        if not all(getattr(credit, name).is_finite() for name in CREDIT_MEASURES) or (
            total is not None and not total.is_finite()
        ):
            raise UnreadableMessage(f"not a CreditsMessage: a measure of {credit.rep_id!r} is not a finite number")
    return message, message.credits


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
