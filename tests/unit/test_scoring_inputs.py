"""The agents' readers of the ledger's envelopes (services/scoring/inputs.py) against the contract's models: any
event ingest accepts, wrapped by the relay, reads back as the model reads it; anything else is a ValueError (the
message's dead letter), never a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import EVENT_ADAPTER, ActivityEvent, DealEvent, canonical_json
from schemas.kpis import OVERLAY, PRIMARY
from schemas.messages import EventEnvelope, decode
from services.ingest.relay import envelope
from services.scoring.domain.deals import DealSnapshot
from services.scoring.inputs import read_activity, read_deal

ACCEPTED = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
OFFSETS = [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30))]
instants = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.sampled_from(OFFSETS)
)


@st.composite
def deal_events(draw: st.DrawFn) -> dict[str, Any]:
    stage = draw(st.sampled_from(["open", "won", "lost"]))
    reps = draw(st.lists(st.sampled_from(["ana", "ben", "cy"]), max_size=3, unique=True))
    splits = [{"rep_id": rep, "share": f"{Decimal(1) / len(reps):.6f}"} for rep in reps]
    if splits:
        splits[-1]["share"] = str(Decimal(1) - sum((Decimal(s["share"]) for s in splits[:-1]), Decimal(0)))
    overlays = [{"rep_id": rep, "share": share, "role": OVERLAY}
                for rep, share in draw(st.lists(st.tuples(st.sampled_from(["se", "pm"]), st.sampled_from(["0.1", "1"])),
                                                max_size=2, unique_by=lambda pair: pair[0]))]
    body: dict[str, Any] = {
        "event_id": draw(st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)),
        "type": "deal",
        "occurred_at": draw(instants).isoformat(),
        "deal_id": "d-1",
        "owner_id": "ana",
        "stage": stage,
        "amount": draw(st.one_of(
            st.integers(0, 10**11).map(lambda cents: str(Decimal(cents).scaleb(-2))),
            st.integers(0, 10**6),  # a JSON number
        )),
        "kind": draw(st.sampled_from(["new", "renewal", "expansion"])),
    }
    if stage != "open" or draw(st.booleans()):
        body["closed_at"] = draw(instants).isoformat()
    if draw(st.booleans()):
        body["version"] = draw(st.integers(0, 10**6))
    if draw(st.booleans()):
        body["currency"] = draw(st.sampled_from(["EUR", "JPY", "USD"]))
    if splits or overlays:
        body["splits"] = [*splits, *overlays]
    return body


def expected_snapshot(event: DealEvent) -> DealSnapshot:
    """The snapshot as the contract's model reads the event: primary splits (none: the owner) and overlays apart."""
    splits = event.splits or ()
    return DealSnapshot(
        event.deal_id, event.event_id, event.version, event.occurred_at, event.owner_id, event.stage, event.amount,
        event.closed_at,
        tuple((s.rep_id, s.share) for s in splits if s.role == PRIMARY), event.kind,
        tuple((s.rep_id, s.share) for s in splits if s.role == OVERLAY), event.currency,
    )


@settings(max_examples=300, deadline=None)
@given(deal_events(), st.integers(0, 2**62))
def test_a_relayed_deal_event_reads_back_as_the_model_reads_it(body: dict[str, Any], seq: int) -> None:
    event = EVENT_ADAPTER.validate_python(body)
    assert isinstance(event, DealEvent)
    raw = envelope(seq, ACCEPTED, canonical_json(event).decode())
    read = read_deal(raw)
    model = decode(EventEnvelope, raw)
    assert (read.seq, read.accepted_ms) == (model.seq, model.accepted_ms) == (seq, int(ACCEPTED.timestamp() * 1000))
    snapshot = read.event.snapshot()
    stored = EVENT_ADAPTER.validate_json(canonical_json(event))  # the event as the ledger holds it (splits by rep)
    assert isinstance(stored, DealEvent)
    assert snapshot == expected_snapshot(stored)
    assert snapshot == DealSnapshot.from_event(orjson.loads(canonical_json(event)))  # the stored-event path


@settings(max_examples=200, deadline=None)
@given(instants, st.sampled_from(["call", "email", "demo_booked"]), st.integers(0, 2**62))
def test_a_relayed_activity_reads_back_as_the_model_reads_it(at: datetime, kind: str, seq: int) -> None:
    event = EVENT_ADAPTER.validate_python(
        {"event_id": "a1", "type": "activity", "occurred_at": at.isoformat(), "rep_id": "ana", "kind": kind}
    )
    assert isinstance(event, ActivityEvent)
    read = read_activity(envelope(seq, ACCEPTED, canonical_json(event).decode()))
    assert (read.seq, read.event.kind, read.event.occurred_at) == (seq, kind, event.occurred_at)
    assert read.event.occurred_at.utcoffset() is not None


GOOD_DEAL = {"event_id": "e1", "type": "deal", "occurred_at": "2026-11-20T10:00:00Z", "deal_id": "d1",
             "owner_id": "ana", "stage": "won", "amount": "10.00", "closed_at": "2026-11-20T10:00:00Z"}


@pytest.mark.parametrize("raw", [
    b"",
    b"[]",
    b'{"seq":1}',
    b'{"seq":"1","event":%s}' % orjson.dumps(GOOD_DEAL),
    b'{"seq":1,"event":%s}' % orjson.dumps({**GOOD_DEAL, "stage": "pending"}),
    b'{"seq":1,"event":%s}' % orjson.dumps({**GOOD_DEAL, "amount": "ten"}),
    b'{"seq":1,"event":%s}' % orjson.dumps({**GOOD_DEAL, "amount": "-1.00"}),
    b'{"seq":1,"event":%s}' % orjson.dumps({**GOOD_DEAL, "amount": "NaN"}),
    b'{"seq":1,"event":%s}' % orjson.dumps({**GOOD_DEAL, "closed_at": None}),
    b'{"seq":1,"event":%s}' % orjson.dumps({**GOOD_DEAL, "occurred_at": "2026-11-20T10:00:00"}),
    b'{"seq":1,"event":%s}' % orjson.dumps({**GOOD_DEAL, "version": True}),
    b'{"seq":1,"event":%s}' % orjson.dumps({**GOOD_DEAL, "splits": [{"share": "1"}]}),
    b'{"seq":1,"event":%s}' % orjson.dumps({**GOOD_DEAL, "splits": [{"rep_id": "ana", "share": "0"}]}),
    b'{"seq":1,"event":%s}' % orjson.dumps({**GOOD_DEAL, "kind": "upsell"}),
])
def test_a_deal_message_that_is_no_valid_event_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        read_deal(raw).event.snapshot()


@pytest.mark.parametrize("raw", [
    b"{",
    b'{"seq":1,"event":{"kind":"call"}}',
    b'{"seq":1,"event":{"kind":7,"occurred_at":"2026-11-20T10:00:00Z"}}',
    b'{"seq":1,"event":{"kind":"call","occurred_at":"not a time"}}',
    b'{"seq":null,"event":{"kind":"call","occurred_at":"2026-11-20T10:00:00Z"}}',
])
def test_an_activity_message_that_does_not_decode_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        read_activity(raw)
