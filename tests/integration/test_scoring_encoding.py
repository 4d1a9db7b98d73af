"""The scoring worker's hot-path encodings store exactly what the domain's own forms say.

No broker: these check the worker's shortcuts (incremental rep-state encoding, deal state stored as the
event JSON it came from, intake ordering) against the plain, obviously right forms."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson

from services.ingest.relay import envelope
from services.scoring.codecs import DealState, RepStateEncoder, decode_deal_state, encode_deal_state, event_json
from services.scoring.domain.credits import Credit
from services.scoring.domain.deals import DealSnapshot
from services.scoring.domain.periods import Calendar
from services.scoring.domain.rep_state import RepState


def test_incremental_rep_state_encoding_equals_the_state_s_own_form() -> None:
    calendar = Calendar("Pacific/Auckland", 4)
    rng = random.Random(3)
    encoder = RepStateEncoder()
    state = RepState("rep-1")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for seq in range(1, 2500):
        at = start + timedelta(hours=rng.randint(0, 24 * 500))
        if rng.random() < 0.5:
            credit = Credit("rep-1", at, revenue=Decimal(rng.randint(-50, 100)), deals_won=Decimal(1))
            state.apply_credits([credit], source="deals/1", seq=seq, calendar=calendar)
        else:
            state.apply_activity(rng.choice(["call", "email"]), at, source="activities/1", seq=seq, calendar=calendar)
        if seq % 7 == 0 and state.evictions:
            state.acknowledge_evictions(state.evictions[-1].seq)
        encoded = encoder.encode(state)
        assert orjson.loads(encoded) == orjson.loads(orjson.dumps(state.to_dict())), seq
        if seq % 500 == 0:  # a restored state is a new object: nothing cached may leak into it
            state = RepState.from_dict(orjson.loads(encoded))


def test_deal_state_is_stored_as_the_event_it_came_from_and_restores_equal() -> None:
    body = (
        '{"event_id":"e1","type":"deal","occurred_at":"2026-01-01T10:00:00Z","deal_id":"d \\"event\\": 1",'
        '"owner_id":"rep-1","stage":"won","amount":"12.50","closed_at":"2026-01-01T10:00:00Z","kind":"new"}'
    )
    raw = envelope(7, datetime(2026, 1, 1, 10, 0, 5, tzinfo=UTC), body)
    assert event_json(raw) == body.encode()
    state = DealState(7, DealSnapshot.from_event(orjson.loads(raw)["event"]), event_json(raw))
    restored = decode_deal_state(encode_deal_state(state))
    assert (restored.seq, restored.snapshot) == (7, state.snapshot)
    # The older stored form (the snapshot's own dict) still restores.
    old_form = orjson.dumps({"seq": 7, "snapshot": state.snapshot.to_dict()})
    assert decode_deal_state(old_form).snapshot == state.snapshot
