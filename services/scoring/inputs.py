"""What scoring reads from the ledger's topics: the relay's envelopes `{"seq", "accepted_ms", "event"}` on
events.deals and events.activities (schemas.messages.EventEnvelope), decoded by msgspec straight into what the
agents use, the event's other fields passed over unread.

Every event on these topics was validated by ingest (CONTRACT §1) and written in canonical JSON (timestamps as
RFC 3339 instants, amounts as strings); a message that does not decode is that message's dead letter
(msgspec.DecodeError is a ValueError). tests/unit/test_scoring_inputs.py reads the relay's own envelopes with both
these and the model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import msgspec

from services.scoring.domain.deals import DealEvent

__all__ = ["ActivityEnvelope", "DealEnvelope", "read_activity", "read_deal"]


class DealEnvelope(msgspec.Struct, frozen=True, gc=False):
    seq: int
    event: DealEvent
    accepted_ms: int = 0


class Activity(msgspec.Struct, frozen=True, gc=False):
    kind: str
    occurred_at: datetime


class ActivityEnvelope(msgspec.Struct, frozen=True, gc=False):
    seq: int
    event: Activity
    accepted_ms: int = 0


read_deal: Final = msgspec.json.Decoder(DealEnvelope).decode
"""A deal event's envelope from its bytes; msgspec.DecodeError (a ValueError) when it is not one."""
read_activity: Final = msgspec.json.Decoder(ActivityEnvelope).decode
"""An activity event's envelope from its bytes; msgspec.DecodeError (a ValueError) when it is not one."""
