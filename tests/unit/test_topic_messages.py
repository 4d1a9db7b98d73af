"""Every topic message a service writes decodes with its model in schemas/messages.py, and what a reader gets
back is what the writer meant: the writers that serialise by hand for speed cannot drift from the contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.messages import (
    ConfigChange,
    CreditsMessage,
    EventEnvelope,
    RepProgress,
    RepSnapshot,
    UnreadableMessage,
    decode,
    decode_notification,
)
from services.common.config_feed import config_message
from services.ingest.relay import envelope
from services.scoring.domain.credits import Credit
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.periods import Calendar
from services.scoring.domain.rep_state import RepState
from services.scoring.outputs import credits_message, read_credits, snapshot_message

CAL = Calendar("America/New_York", 1)
AT = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)


def test_the_relay_envelope_carries_the_stored_event_unparsed() -> None:
    body = '{"event_id":"e1","type":"activity","occurred_at":"2026-11-20T15:30:00Z","rep_id":"ada","kind":"call"}'
    message = decode(EventEnvelope, envelope(41, AT, body))
    assert (message.seq, message.accepted_ms) == (41, int(AT.timestamp() * 1000))
    assert message.event == orjson.loads(body)


def test_credits_round_trip_exactly_through_the_model() -> None:
    credits = [
        Credit("ada", AT, revenue=Decimal("1234.56"), deals_won=Decimal("0.5")),
        Credit("ada", AT.replace(day=1), revenue=Decimal("-10.01"), deals_lost=Decimal("1"), renewals_lost=Decimal(1)),
    ]
    message, back = read_credits(credits_message("deals/3", 77, 1_700_000_000_000, credits))
    assert (message.src, message.seq, message.accepted_ms) == ("deals/3", 77, 1_700_000_000_000)
    assert back == credits  # exact decimals, the same instants
    assert isinstance(decode(CreditsMessage, credits_message("deals/0", 1, 0, credits)), CreditsMessage)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(
    Credit,
    st.sampled_from(["ada", "bo"]),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=45))])),
    revenue=st.decimals(min_value=-10**9, max_value=10**9, places=2),
    deals_won=st.sampled_from([Decimal(0), Decimal("0.25"), Decimal(-1), Decimal("1.000")]),
    deals_lost=st.sampled_from([Decimal(0), Decimal("0.5")]),
    renewals_won=st.sampled_from([Decimal(0), Decimal(1)]),
    renewals_lost=st.sampled_from([Decimal(0), Decimal(-1)]),
    overlay=st.booleans(),
    rollup=st.booleans(),
    currency=st.sampled_from([None, "EUR", "JPY"]),
    deal_total=st.sampled_from([None, Decimal(0), Decimal("12.50")]),
), max_size=4), st.integers(0, 2**62), st.integers(0, 2**50))
def test_any_credits_come_back_as_they_were_written_and_as_the_model_reads_them(
    credits: list[Credit], seq: int, accepted_ms: int
) -> None:
    raw = credits_message("deals/11", seq, accepted_ms, credits)
    message, back = read_credits(raw)
    assert (message.src, message.seq, message.accepted_ms) == ("deals/11", seq, accepted_ms)
    assert back == credits
    assert [(c.at.utcoffset(), str(c.revenue), str(c.deals_won)) for c in back] == [
        (c.at.utcoffset(), str(c.revenue), str(c.deals_won)) for c in credits]  # offsets and decimals as written
    model = decode(CreditsMessage, raw)
    assert (model.src, model.seq, model.accepted_ms) == ("deals/11", seq, accepted_ms)
    assert [Credit(line.rep_id, line.at, line.revenue, line.deals_won, line.deals_lost, line.renewals_won,
                   line.renewals_lost, line.overlay, line.rollup, line.currency, line.deal_total)
            for line in model.credits] == credits


@pytest.mark.parametrize("raw", [
    b"not json",
    b'{"src":"deals/0","seq":1}',
    b'{"seq":1,"credits":[]}',
    b'{"src":"deals/0","seq":-1,"credits":[]}',
    b'{"src":"deals/0","seq":1,"accepted_ms":-5,"credits":[]}',
    b'{"src":"deals/0","seq":1,"credits":[{"at":"2026-11-20T15:30:00Z"}]}',
    b'{"src":"deals/0","seq":1,"credits":[{"rep_id":"ada","at":"2026-11-20T15:30:00"}]}',
    b'{"src":"deals/0","seq":1,"credits":[{"rep_id":"ada","at":"yesterday"}]}',
    b'{"src":"deals/0","seq":1,"credits":[{"rep_id":"ada","at":"2026-11-20T15:30:00Z","revenue":"ten"}]}',
    b'{"src":"deals/0","seq":1,"credits":[{"rep_id":"ada","at":"2026-11-20T15:30:00Z","revenue":"NaN"}]}',
    b'{"src":"deals/0","seq":1,"credits":[{"rep_id":"ada","at":"2026-11-20T15:30:00Z","deal_total":"Infinity"}]}',
    b'{"src":"deals/0","seq":1,"credits":[{"rep_id":"ada","at":"2026-11-20T15:30:00Z","overlay":[1]}]}',
])
def test_the_rep_agent_refuses_every_credits_message_the_model_refuses(raw: bytes) -> None:
    with pytest.raises(UnreadableMessage):
        decode(CreditsMessage, raw)
    with pytest.raises(UnreadableMessage, match="^not a CreditsMessage: "):
        read_credits(raw)


def test_a_snapshot_carries_totals_horizons_progress_and_tiers_but_none_of_scorings_internals() -> None:
    state = RepState("ada")
    state.apply_credits([Credit("ada", AT, revenue=Decimal("500.25"), deals_won=Decimal(1))], source="deals/0", seq=5,
                        calendar=CAL)
    state.apply_activity("call", AT, source="activities/1", seq=9, calendar=CAL)
    state.record_tiers("ae", "2026-11", [("target", Decimal(1))], Decimal("1.2"), AT)
    progress = [{"plan_id": "ae", "period_key": "2026-11", "metric": "revenue", "value": 500.25, "quota": 400.0,
                 "attainment": 1.250625, "tier": {"tier_id": "target", "name": "Target", "threshold": 1.0},
                 "next_tier": None, "gap_to_next": None, "payout": 25.01, "rewards": [], "pace": None,
                 "forecast_attainment": None}]
    raw = snapshot_message(state, progress=progress, contests={"blitz": KpiTotals(activities=1)}, updated_ms=12,
                           accepted_ms=11)
    snapshot = decode(RepSnapshot, raw)
    assert (snapshot.rep_id, snapshot.version, snapshot.updated_ms, snapshot.accepted_ms) == ("ada", state.version,
                                                                                                12, 11)
    month = snapshot.periods["month"]["2026-11"]
    assert (month.revenue, month.deals_won, month.activities, month.activities_by_kind) == (
        Decimal("500.25"), Decimal(1), 1, {"call": 1})
    assert snapshot.holds("month", "2026-11")
    assert snapshot.contests["blitz"].activities == 1
    assert snapshot.progress[0].tier is not None and snapshot.progress[0].tier.tier_id == "target"
    assert snapshot.reached["ae"]["2026-11"]["target"] == AT
    assert not {"credit_marks", "activity_marks", "evictions", "eviction_seq", "minutes", "state"} & set(
        orjson.loads(raw))
    assert decode(RepProgress, raw).reached == snapshot.reached  # the notifier's part of the same message


def test_a_config_change_must_hold_a_valid_document_of_its_kind() -> None:
    rep = {"rep_id": "ada", "name": "Ada", "team_id": "east"}
    change = decode(ConfigChange, config_message("rep", "ada", rep, 5))
    assert (change.kind, change.id, change.body, change.updated_ms) == ("rep", "ada", rep, 5)
    assert decode(ConfigChange, config_message("plan", "gone", None, 6)).body is None
    with pytest.raises(UnreadableMessage, match="ConfigChange"):
        decode(ConfigChange, orjson.dumps({"kind": "plan", "id": "p", "body": {"name": "no tiers"}, "updated_ms": 1}))
    with pytest.raises(UnreadableMessage):
        decode(ConfigChange, orjson.dumps({"kind": "bonus", "id": "b", "body": None, "updated_ms": 1}))


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", b'{"rep_id": 7}', b'{"rep_id": "ada", "version": -1, "updated_ms": 0}',
     b'{"rep_id": "ada", "version": 1, "updated_ms": 0, "reached": {"p": {"2026-11": {"t": "yesterday"}}}}',
     b'{"rep_id": "ada", "version": 1, "updated_ms": 0, "periods": {"fortnight": {}}}'],
)
def test_unreadable_snapshots_say_what_is_wrong(raw: bytes) -> None:
    with pytest.raises(UnreadableMessage, match="not a RepSnapshot"):
        decode(RepSnapshot, raw)


def test_a_notification_of_an_unknown_type_is_unreadable() -> None:
    with pytest.raises(UnreadableMessage, match="not a notification"):
        decode_notification(b'{"type": "confetti", "rep_id": "ada"}')
