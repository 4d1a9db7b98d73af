"""The event contract (CONTRACT §1): every validation rule with its user-facing problem, exact money,
batch reporting, and the canonical encoding that tells a duplicate from a conflict."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import (
    EVENT_ADAPTER,
    EVENTS_ADAPTER,
    AcceptWindow,
    ActivityEvent,
    DealEvent,
    Split,
    ValidationProblem,
    _validated,  # the reference: the window checked by its field validator
    body_hash,
    canonical_json,
    event_from_canonical,
    validate_events,
)

OFFSET_HINT = "must include a UTC offset, e.g. 2026-11-29T10:00:00Z"
KIND_RULE = "kind must be a lowercase token: a letter, then up to 31 letters, digits or _, e.g. call or demo_booked"
BAD_TIMESTAMP = "must be an RFC 3339 timestamp with a UTC offset, e.g. 2026-11-29T10:00:00Z"
ABSENT = object()


def deal(**fields: Any) -> dict[str, Any]:
    """A valid minimal open deal; keyword arguments override fields, ABSENT removes one."""
    body: dict[str, Any] = {
        "event_id": "evt-1",
        "type": "deal",
        "occurred_at": "2026-11-29T10:00:00Z",
        "deal_id": "opp-1",
        "owner_id": "ana",
        "stage": "open",
        "amount": 1000,
    }
    body.update(fields)
    return {key: value for key, value in body.items() if value is not ABSENT}


def won_deal(**fields: Any) -> dict[str, Any]:
    return deal(**{"stage": "won", "closed_at": "2026-11-28T17:00:00Z", **fields})


def activity(**fields: Any) -> dict[str, Any]:
    """A valid call; keyword arguments override fields, ABSENT removes one."""
    body: dict[str, Any] = {
        "event_id": "act-1",
        "type": "activity",
        "occurred_at": "2026-11-29T10:00:00Z",
        "rep_id": "ana",
        "kind": "call",
    }
    body.update(fields)
    return {key: value for key, value in body.items() if value is not ABSENT}


def encode(value: Any) -> bytes:
    """JSON bytes as a client would send them (stdlib json: big integers welcome)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode()


def problems(*items: Any) -> list[ValidationProblem]:
    """The problems of a batch, checked to be the same for a JSON body and for parsed objects."""
    from_json = validate_events(encode(list(items)))
    from_objects = validate_events(list(items))
    assert from_json[1] == from_objects[1]
    if from_json[1]:
        assert from_json[0] == [] and from_objects[0] == []
    return from_json[1]


def accepted(*items: Any) -> list[DealEvent | ActivityEvent]:
    events, found = validate_events(encode(list(items)))
    assert found == []
    assert events == validate_events(list(items))[0]
    return events


def only(item: Any) -> ValidationProblem:
    [problem] = problems(item)
    return problem


def with_amount_number(text: str) -> bytes:
    """A one-deal batch whose amount is the JSON number written as text."""
    return b"[" + encode(deal()).replace(b'"amount": 1000', b'"amount": ' + text.encode()) + b"]"


def one(body: bytes) -> DealEvent | ActivityEvent:
    events, found = validate_events(body)
    assert found == []
    [event] = events
    return event


# --- valid events -----------------------------------------------------------------------------------


def test_minimal_deal_is_accepted_with_defaults() -> None:
    [event] = accepted(deal())
    assert isinstance(event, DealEvent)
    assert event.amount == Decimal("1000")
    assert event.kind == "new"
    assert event.splits is None and event.currency is None and event.closed_at is None
    assert event.occurred_at == datetime(2026, 11, 29, 10, tzinfo=UTC)


def test_full_deal_with_splits_is_accepted() -> None:
    [event] = accepted(
        won_deal(
            source="salesforce",
            version=7,
            amount="12500.50",
            currency="USD",
            splits=[{"rep_id": "ana", "share": 0.6}, {"rep_id": "ben", "share": "0.4"}],
            kind="renewal",
            customer_id="acct-9",
        )
    )
    assert isinstance(event, DealEvent)
    assert event.version == 7
    assert event.amount == Decimal("12500.50")
    assert event.splits == (
        Split(rep_id="ana", share=Decimal("0.6")),
        Split(rep_id="ben", share=Decimal("0.4")),
    )
    assert event.closed_at == datetime(2026, 11, 28, 17, tzinfo=UTC)


def test_activity_is_accepted() -> None:
    [event] = accepted(activity(source="dialer", deal_id="opp-1", customer_id="acct-9", kind="demo_booked"))
    assert isinstance(event, ActivityEvent)
    assert (event.rep_id, event.kind, event.deal_id) == ("ana", "demo_booked", "opp-1")


def test_optional_fields_may_be_null() -> None:
    [event] = accepted(deal(source=None, version=None, currency=None, splits=None, customer_id=None))
    assert event == accepted(deal())[0]


@pytest.mark.parametrize("offset", ["Z", "z", "+00:00", "+05:30", "-08:00"])
def test_occurred_at_accepts_any_utc_offset(offset: str) -> None:
    [event] = accepted(deal(occurred_at=f"2026-11-29T10:00:00{offset}"))
    assert event.occurred_at.utcoffset() is not None


# --- money ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected"),
    [(1250, "1250"), (1250.5, "1250.5"), ("1250.50", "1250.50"), ("0", "0"), (0, "0"), ("1e3", "1000")],
)
def test_amount_is_accepted_as_json_number_or_string(amount: Any, expected: str) -> None:
    [event] = accepted(deal(amount=amount))
    assert isinstance(event, DealEvent)
    assert event.amount == Decimal(expected)


def test_amount_number_is_the_exact_decimal_written_not_a_binary_float() -> None:
    event = one(
        b'[{"event_id":"e","type":"deal","occurred_at":"2026-11-29T10:00:00Z","deal_id":"d",'
        b'"owner_id":"ana","stage":"open","amount":0.1}]'
    )
    assert isinstance(event, DealEvent)
    assert event.amount == Decimal("0.1")
    assert EVENT_ADAPTER.validate_json(encode(deal(amount=0.1))).amount == Decimal("0.1")  # type: ignore[union-attr]


@pytest.mark.parametrize("amount", ["999999999999999.99", "123456789012345.67", "90071992547409.93"])
def test_large_amount_keeps_every_digit_as_number_and_as_string(amount: str) -> None:
    as_number = one(with_amount_number(amount))
    as_string = one(encode([deal(amount=amount)]))
    assert isinstance(as_number, DealEvent) and isinstance(as_string, DealEvent)
    assert as_number.amount == as_string.amount == Decimal(amount)


def test_amount_with_more_digits_than_a_float_holds_is_not_rounded_into_validity() -> None:
    # As a float, 99999999999999.995 is 100000000000000.0 and would pass the two-decimals rule.
    body = with_amount_number("99999999999999.995")
    assert validate_events(body) == ([], [ValidationProblem(0, "amount", "amount must have at most 2 decimal places")])


@settings(max_examples=300, deadline=None)
@given(st.decimals(min_value=0, max_value=Decimal("999999999999999.99"), places=2))
def test_amount_as_json_number_is_exact_for_every_cent_value(amount: Decimal) -> None:
    event = one(with_amount_number(f"{amount:f}"))
    assert isinstance(event, DealEvent)
    assert event.amount == amount


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=0, max_value=Decimal("999999999999999.999"), places=3))
def test_amount_as_json_number_with_a_fraction_of_a_cent_is_always_rejected(amount: Decimal) -> None:
    if amount == amount.quantize(Decimal("0.01")):
        return
    assert validate_events(with_amount_number(f"{amount:f}"))[1] == [
        ValidationProblem(0, "amount", "amount must have at most 2 decimal places")
    ]


def test_amount_with_three_decimal_places_is_rejected() -> None:
    assert only(deal(amount="10.125")) == ValidationProblem(0, "amount", "amount must have at most 2 decimal places")


def test_trailing_zeros_beyond_cents_are_not_extra_decimal_places() -> None:
    [event] = accepted(deal(amount="10.500"))
    assert event.amount == Decimal("10.5")  # type: ignore[union-attr]


def test_negative_amount_is_rejected() -> None:
    assert only(deal(amount=-5)) == ValidationProblem(0, "amount", "amount must not be negative")


@pytest.mark.parametrize("amount", [10**15, "1000000000000000", 10**30, "1e20"])
def test_amount_of_10_to_the_15_or_more_is_rejected(amount: Any) -> None:
    assert only(deal(amount=amount)) == ValidationProblem(0, "amount", "amount must be less than 1,000,000,000,000,000")


def test_amount_too_large_for_a_float_is_rejected_as_too_large() -> None:
    body = with_amount_number("1e400")
    assert validate_events(body)[1] == [
        ValidationProblem(0, "amount", "amount must be less than 1,000,000,000,000,000")
    ]


@pytest.mark.parametrize("amount", ["1_000", " 5 ", "NaN", "Infinity", "12 USD", "", True, None, [5]])
def test_amount_that_is_not_a_decimal_numeral_is_rejected(amount: Any) -> None:
    assert only(deal(amount=amount)) == ValidationProblem(0, "amount", "amount must be a decimal number, e.g. 1250.00")


def test_amount_is_required() -> None:
    assert only(deal(amount=ABSENT)) == ValidationProblem(0, "amount", "amount is required")


# --- every event ------------------------------------------------------------------------------------


def test_unknown_field_is_rejected_naming_the_field() -> None:
    assert only(deal(priority="high")) == ValidationProblem(0, "priority", "unknown field priority")


def test_misspelled_field_is_rejected_with_the_likely_intended_name() -> None:
    assert problems(deal(amount=ABSENT, amout=5)) == [
        ValidationProblem(0, "amount", "amount is required"),
        ValidationProblem(0, "amout", "unknown field amout (did you mean amount?)"),
    ]


def test_unknown_field_inside_a_split_is_rejected() -> None:
    splits = [{"rep_id": "ana", "share": 1, "rol": "overlay"}]
    assert only(deal(splits=splits)) == ValidationProblem(0, "splits.0.rol", "unknown field rol (did you mean role?)")


def test_a_split_role_is_primary_or_overlay() -> None:
    splits = [{"rep_id": "ana", "share": 1, "role": "ae"}]
    assert only(deal(splits=splits)) == ValidationProblem(
        0, "splits.0.role", "splits.0.role must be one of primary, overlay"
    )


def test_overlay_shares_come_on_top_of_primary_shares_that_sum_to_one() -> None:
    splits = [{"rep_id": "ana", "share": 0.5}, {"rep_id": "ben", "share": 0.5},
              {"rep_id": "se", "share": 1, "role": "overlay"}, {"rep_id": "pm", "share": 0.25, "role": "overlay"}]
    [event] = accepted(deal(splits=splits))
    assert isinstance(event, DealEvent)
    assert event.credited_splits() == (("ana", Decimal("0.5")), ("ben", Decimal("0.5")))
    short = [{"rep_id": "ana", "share": 0.5}, {"rep_id": "se", "share": 0.5, "role": "overlay"}]
    assert only(deal(splits=short)) == ValidationProblem(
        0, "splits", "split shares must add up to 1, not 0.5 (the primary ones: overlays come on top)"
    )
    above_one = [{"rep_id": "ana", "share": 1}, {"rep_id": "se", "share": 1.5, "role": "overlay"}]
    assert only(deal(splits=above_one)) == ValidationProblem(0, "splits.1.share", "splits.1.share must be at most 1")


def test_overlays_alone_leave_the_owner_the_whole_primary_credit() -> None:
    [event] = accepted(deal(splits=[{"rep_id": "se", "share": 0.3, "role": "overlay"}]))
    assert isinstance(event, DealEvent)
    assert event.credited_splits() == (("ana", Decimal(1)),)


def test_a_rep_may_hold_each_role_once_on_a_deal() -> None:
    """Salesforce's own example: rep A has a 50 % revenue split and a 20 % overlay on the same deal."""
    both = [{"rep_id": "ana", "share": 0.5}, {"rep_id": "ben", "share": 0.5},
            {"rep_id": "ana", "share": 0.2, "role": "overlay"}]
    assert problems(deal(splits=both)) == []
    twice = [{"rep_id": "ana", "share": 1}, {"rep_id": "se", "share": 0.2, "role": "overlay"},
             {"rep_id": "se", "share": 0.3, "role": "overlay"}]
    assert only(deal(splits=twice)) == ValidationProblem(
        0, "splits.2.rep_id", "rep se appears more than once in splits as an overlay"
    )


def test_the_primary_role_written_out_is_the_same_event_as_left_out() -> None:
    plain, explicit = accepted(
        deal(splits=[{"rep_id": "ben", "share": 1}]), deal(splits=[{"rep_id": "ben", "share": 1, "role": "primary"}])
    )
    overlay = accepted(deal(splits=[{"rep_id": "ben", "share": 1}, {"rep_id": "se", "share": 1, "role": "overlay"}]))[0]
    assert body_hash(plain) == body_hash(explicit)
    assert body_hash(overlay) != body_hash(plain)
    assert event_from_canonical(canonical_json(overlay)) == overlay


def test_deal_field_on_an_activity_is_an_unknown_field() -> None:
    assert only(activity(amount=5)) == ValidationProblem(0, "amount", "unknown field amount")


def test_missing_type_is_rejected_listing_the_event_types() -> None:
    assert only(deal(type=ABSENT)) == ValidationProblem(0, "type", "type is required: one of deal, activity")


def test_unknown_type_is_rejected_listing_the_event_types() -> None:
    assert only(deal(type="opportunity")) == ValidationProblem(
        0, "type", "type must be one of deal, activity, not 'opportunity'"
    )


@pytest.mark.parametrize("item", [5, "deal", None, [deal()]])
def test_event_that_is_not_an_object_is_rejected(item: Any) -> None:
    assert only(item) == ValidationProblem(0, "", "each event must be a JSON object")


def test_event_id_is_required() -> None:
    assert only(deal(event_id=ABSENT)) == ValidationProblem(0, "event_id", "event_id is required")


def test_empty_event_id_is_rejected() -> None:
    assert only(deal(event_id="")) == ValidationProblem(0, "event_id", "event_id must not be empty")


def test_event_id_longer_than_128_characters_is_rejected() -> None:
    assert accepted(deal(event_id="e" * 128))
    assert only(deal(event_id="e" * 129)) == ValidationProblem(0, "event_id", "event_id must be at most 128 characters")


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (deal(event_id="evt\n1"), "event_id"),
        (deal(deal_id="opp\x001"), "deal_id"),
        (deal(owner_id="ana\t"), "owner_id"),
        (deal(customer_id="acct\x7f"), "customer_id"),
        (deal(source="crm\x85"), "source"),
        (deal(splits=[{"rep_id": "b\x1bn", "share": 1}]), "splits.0.rep_id"),
        (activity(rep_id="\rana"), "rep_id"),
        (activity(deal_id="opp\x0b"), "deal_id"),
    ],
)
def test_ids_with_control_characters_are_rejected(item: dict[str, Any], field: str) -> None:
    assert only(item) == ValidationProblem(0, field, f"{field} must not contain control characters")


def test_ids_with_unicode_letters_are_accepted() -> None:
    assert accepted(deal(owner_id="józef-müller", deal_id="商机-7"))


@pytest.mark.parametrize("field", ["event_id", "deal_id", "owner_id", "customer_id", "source"])
def test_ids_are_strings_not_numbers(field: str) -> None:
    assert only(deal(**{field: 42})) == ValidationProblem(0, field, f"{field} must be a string")


def test_naive_occurred_at_is_rejected_with_offset_hint() -> None:
    assert only(deal(occurred_at="2026-11-29T10:00:00")) == ValidationProblem(
        0, "occurred_at", f"occurred_at {OFFSET_HINT}"
    )


@pytest.mark.parametrize("occurred_at", [1764410400, "1764410400", "2026-11-29", "yesterday", "2026-13-01T00:00:00Z"])
def test_occurred_at_must_be_an_rfc_3339_timestamp(occurred_at: Any) -> None:
    assert only(deal(occurred_at=occurred_at)) == ValidationProblem(0, "occurred_at", f"occurred_at {BAD_TIMESTAMP}")


@pytest.mark.parametrize("occurred_at", ["0001-01-01T00:00:00+01:00", "1899-12-31T23:59:59Z", "3000-01-01T00:00:00Z"])
def test_timestamp_outside_the_years_1900_to_2999_is_rejected(occurred_at: str) -> None:
    assert only(deal(occurred_at=occurred_at)) == ValidationProblem(
        0, "occurred_at", "occurred_at must be between the years 1900 and 2999"
    )


def test_occurred_at_is_required() -> None:
    assert only(activity(occurred_at=ABSENT)) == ValidationProblem(0, "occurred_at", "occurred_at is required")


def test_source_longer_than_64_characters_is_rejected() -> None:
    assert accepted(deal(source="s" * 64))
    assert only(deal(source="s" * 65)) == ValidationProblem(0, "source", "source must be at most 64 characters")


# --- deal events ------------------------------------------------------------------------------------


def test_every_missing_required_deal_field_is_reported() -> None:
    item = {"type": "deal"}
    assert problems(item) == [
        ValidationProblem(0, field, f"{field} is required")
        for field in ["event_id", "occurred_at", "deal_id", "owner_id", "stage", "amount"]
    ]


def test_negative_version_is_rejected() -> None:
    assert accepted(deal(version=0))
    assert only(deal(version=-1)) == ValidationProblem(0, "version", "version must be at least 0")


@pytest.mark.parametrize("version", ["3", 1.5, True])
def test_version_must_be_a_whole_number(version: Any) -> None:
    assert only(deal(version=version)) == ValidationProblem(0, "version", "version must be a whole number")


def test_unknown_stage_is_rejected() -> None:
    assert only(deal(stage="closed_won")) == ValidationProblem(0, "stage", "stage must be one of open, won, lost")


@pytest.mark.parametrize("currency", ["usd", "US", "USDX", "€"])
def test_currency_must_be_an_iso_4217_code(currency: str) -> None:
    assert only(deal(currency=currency)) == ValidationProblem(
        0, "currency", "currency must be a 3-letter ISO 4217 code in capitals, e.g. USD"
    )


@pytest.mark.parametrize("currency", ["USX", "EUX", "ABC"])
def test_currency_must_be_one_iso_4217_knows(currency: str) -> None:
    assert only(deal(currency=currency)) == ValidationProblem(
        0, "currency", f"currency {currency} is not an ISO 4217 currency code, e.g. USD or EUR"
    )


@pytest.mark.parametrize("currency", ["USD", "EUR", "JPY", "CHF", "GBP"])
def test_any_iso_4217_currency_is_accepted_and_kept(currency: str) -> None:
    [event] = accepted(deal(currency=currency))
    assert event.currency == currency  # type: ignore[union-attr]
    assert DealEvent.model_validate(deal(currency=currency)).currency == currency


@pytest.mark.parametrize("stage", ["won", "lost"])
def test_won_or_lost_deal_without_closed_at_is_rejected(stage: str) -> None:
    assert only(deal(stage=stage)) == ValidationProblem(0, "closed_at", f"closed_at is required when stage is {stage}")
    assert only(deal(stage=stage, closed_at=None)) == ValidationProblem(
        0, "closed_at", f"closed_at is required when stage is {stage}"
    )


def test_open_deal_needs_no_closed_at() -> None:
    assert accepted(deal(stage="open"))


def test_naive_closed_at_is_rejected_with_offset_hint() -> None:
    assert only(won_deal(closed_at="2026-11-28 17:00:00")) == ValidationProblem(
        0, "closed_at", f"closed_at {OFFSET_HINT}"
    )


def test_unknown_deal_kind_is_rejected() -> None:
    assert only(deal(kind="upsell")) == ValidationProblem(0, "kind", "kind must be one of new, renewal, expansion")


def test_split_shares_must_sum_to_one() -> None:
    splits = [{"rep_id": "ana", "share": "0.5"}, {"rep_id": "ben", "share": "0.4"}]
    assert only(deal(splits=splits)) == ValidationProblem(0, "splits", "split shares must add up to 1, not 0.9")


def test_split_shares_within_one_billionth_of_one_are_accepted() -> None:
    thirds = [{"rep_id": rep, "share": "0.3333333333"} for rep in ("ana", "ben", "cy")]
    assert accepted(deal(splits=thirds))
    at_tolerance = [{"rep_id": rep, "share": "0.333333333"} for rep in ("ana", "ben", "cy")]
    assert accepted(deal(splits=at_tolerance))
    off = [{"rep_id": rep, "share": "0.33333333"} for rep in ("ana", "ben", "cy")]
    assert only(deal(splits=off)) == ValidationProblem(0, "splits", "split shares must add up to 1, not 0.99999999")


@pytest.mark.parametrize("share", [0, -0.5, "0"])
def test_split_share_must_be_positive(share: Any) -> None:
    splits = [{"rep_id": "ana", "share": 1}, {"rep_id": "ben", "share": share}]
    assert only(deal(splits=splits)) == ValidationProblem(0, "splits.1.share", "splits.1.share must be greater than 0")


def test_split_share_above_one_is_rejected() -> None:
    splits = [{"rep_id": "ana", "share": 1.5}, {"rep_id": "ben", "share": -0.5}]
    assert problems(deal(splits=splits)) == [
        ValidationProblem(0, "splits.0.share", "splits.0.share must be at most 1"),
        ValidationProblem(0, "splits.1.share", "splits.1.share must be greater than 0"),
    ]


def test_split_needs_a_rep_and_a_share() -> None:
    assert problems(deal(splits=[{}])) == [
        ValidationProblem(0, "splits.0.rep_id", "splits.0.rep_id is required"),
        ValidationProblem(0, "splits.0.share", "splits.0.share is required"),
    ]


def test_rep_named_twice_in_splits_is_rejected() -> None:
    splits = [{"rep_id": "ana", "share": "0.5"}, {"rep_id": "ana", "share": "0.5"}]
    assert only(deal(splits=splits)) == ValidationProblem(
        0, "splits.1.rep_id", "rep ana appears more than once in splits"
    )


def test_empty_splits_are_rejected() -> None:
    assert only(deal(splits=[])) == ValidationProblem(
        0, "splits", "splits must not be empty; leave it out to credit the owner 100 %"
    )


def test_splits_must_be_a_list() -> None:
    assert only(deal(splits={"ana": 1})) == ValidationProblem(0, "splits", "splits must be a list")


def test_credited_splits_default_to_the_owner_at_full_share() -> None:
    [event] = accepted(deal())
    assert isinstance(event, DealEvent)
    assert event.credited_splits() == (("ana", Decimal(1)),)


def test_credited_splits_are_the_splits_when_given() -> None:
    [event] = accepted(deal(splits=[{"rep_id": "ben", "share": 0.25}, {"rep_id": "cy", "share": 0.75}]))
    assert isinstance(event, DealEvent)
    assert event.credited_splits() == (("ben", Decimal("0.25")), ("cy", Decimal("0.75")))


def test_rep_ids_name_the_owner_and_every_split_rep() -> None:
    [deal_event, activity_event] = accepted(
        deal(splits=[{"rep_id": "ben", "share": 0.5}, {"rep_id": "cy", "share": 0.5}]), activity(rep_id="dee")
    )
    assert deal_event.rep_ids() == {"ana", "ben", "cy"}
    assert activity_event.rep_ids() == {"dee"}


def test_events_are_immutable() -> None:
    [event] = accepted(deal())
    with pytest.raises(ValueError, match="frozen"):
        event.amount = Decimal(5)  # type: ignore[misc]


# --- activity events --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["call", "email", "demo_booked", "q4_follow_up", "a" * 32])
def test_activity_kind_may_be_any_lowercase_token(kind: str) -> None:
    assert accepted(activity(kind=kind))


@pytest.mark.parametrize("kind", ["Call", "1call", "_call", "call-back", "call back", "", "a" * 33])
def test_activity_kind_must_be_a_lowercase_token(kind: str) -> None:
    assert only(activity(kind=kind)) == ValidationProblem(0, "kind", KIND_RULE)


def test_activity_needs_a_rep_and_a_kind() -> None:
    assert problems(activity(rep_id=ABSENT, kind=ABSENT)) == [
        ValidationProblem(0, "rep_id", "rep_id is required"),
        ValidationProblem(0, "kind", "kind is required"),
    ]


# --- batches ----------------------------------------------------------------------------------------


def test_batch_lists_every_problem_of_every_item_with_its_index() -> None:
    batch = [
        deal(),
        deal(event_id="evt-2", amount="-1", currency="EUX", stage="won"),
        activity(),
        activity(event_id="act-2", kind="Call", occurred_at="2026-11-29T10:00:00"),
        {"event_id": "evt-5"},
        deal(event_id="evt-6", splits=[{"rep_id": "ana", "share": "0.5"}, {"rep_id": "ben", "share": "x"}]),
    ]
    assert problems(*batch) == [
        ValidationProblem(1, "amount", "amount must not be negative"),
        ValidationProblem(1, "currency", "currency EUX is not an ISO 4217 currency code, e.g. USD or EUR"),
        ValidationProblem(1, "closed_at", "closed_at is required when stage is won"),
        ValidationProblem(3, "occurred_at", f"occurred_at {OFFSET_HINT}"),
        ValidationProblem(3, "kind", KIND_RULE),
        ValidationProblem(4, "type", "type is required: one of deal, activity"),
        ValidationProblem(5, "splits.1.share", "splits.1.share must be a decimal number, e.g. 1250.00"),
    ]


def test_one_bad_item_rejects_the_whole_batch() -> None:
    events, found = validate_events(encode([deal(), activity(), deal(event_id="")]))
    assert events == []
    assert found == [ValidationProblem(2, "event_id", "event_id must not be empty")]


def test_a_valid_batch_keeps_its_order() -> None:
    events = accepted(activity(event_id="a"), deal(event_id="b"), activity(event_id="c"))
    assert [event.event_id for event in events] == ["a", "b", "c"]


def test_an_empty_batch_is_valid() -> None:
    assert validate_events(b"[]") == ([], [])
    assert validate_events([]) == ([], [])


@pytest.mark.parametrize("body", [b"[{", b"not json", b"", b"[1,]"])
def test_body_that_is_not_json_is_one_problem_for_the_whole_body(body: bytes) -> None:
    events, found = validate_events(body)
    assert events == []
    [problem] = found
    assert (problem.index, problem.field) == (-1, "")
    assert problem.message.startswith("body is not valid JSON: ")


@pytest.mark.parametrize(
    "body", [b"\xff", b'[{"event_id": "\xc3("}]', b'[{"amount": 12345678901234567890, "x": "\xff"}]']
)
def test_body_that_is_not_utf8_says_so(body: bytes) -> None:
    [problem] = validate_events(body)[1]
    assert (problem.index, problem.field) == (-1, "")
    assert problem.message.startswith("body is not UTF-8: byte 0x")


def test_body_that_is_not_json_is_reported_on_the_exact_path_too() -> None:
    # A long digit run routes the body through the exact-decimal parser.
    events, found = validate_events(b'[{"amount": 12345678901234567890.5}')
    assert events == []
    assert [(problem.index, problem.field) for problem in found] == [(-1, "")]
    assert found[0].message.startswith("body is not valid JSON: ")


@pytest.mark.parametrize("body", [b'{"event_id": "evt-1"}', b'"deal"', b"null"])
def test_body_that_is_not_an_array_is_rejected(body: bytes) -> None:
    assert validate_events(body) == ([], [ValidationProblem(-1, "", "body must be a JSON array of events")])


def test_long_digit_runs_in_ids_are_validated_like_any_other_body() -> None:
    [event] = accepted(deal(event_id="evt-12345678901234567890", amount=0.1))
    assert event.amount == Decimal("0.1")  # type: ignore[union-attr]
    assert problems(deal(event_id="evt-12345678901234567890", amount=-1)) == [
        ValidationProblem(0, "amount", "amount must not be negative")
    ]


def test_events_adapter_validates_a_list_of_either_event_type() -> None:
    events = EVENTS_ADAPTER.validate_python([deal(), activity()])
    assert [type(event) for event in events] == [DealEvent, ActivityEvent]


# --- canonical encoding -----------------------------------------------------------------------------


def canonical(item: dict[str, Any]) -> bytes:
    [event] = accepted(item)
    return canonical_json(event)


def test_canonical_json_sorts_keys_normalises_values_and_omits_absent_fields() -> None:
    item = won_deal(
        occurred_at="2026-11-29T11:00:00.250+01:00",
        closed_at="2026-11-28T12:00:00-05:00",
        amount=100,
        splits=[{"rep_id": "ben", "share": "0.50"}, {"rep_id": "ana", "share": 0.5}],
        source=None,
    )
    assert canonical(item) == (
        b'{"amount":"100.00","closed_at":"2026-11-28T17:00:00Z","deal_id":"opp-1","event_id":"evt-1",'
        b'"kind":"new","occurred_at":"2026-11-29T10:00:00.250000Z","owner_id":"ana",'
        b'"splits":[{"rep_id":"ana","share":"0.5"},{"rep_id":"ben","share":"0.5"}],"stage":"won","type":"deal"}'
    )
    assert canonical(activity()) == (
        b'{"event_id":"act-1","kind":"call","occurred_at":"2026-11-29T10:00:00Z","rep_id":"ana","type":"activity"}'
    )


@pytest.mark.parametrize(
    "equivalent",
    [
        deal(amount="1000.00"),
        deal(amount=1000.0),
        deal(amount="1e3"),
        deal(occurred_at="2026-11-29T11:00:00+01:00"),
        deal(occurred_at="2026-11-29T10:00:00.000000Z"),
        deal(kind="new"),
        deal(source=None, customer_id=None, splits=None, version=None),
        dict(reversed(deal().items())),
    ],
)
def test_equivalent_bodies_have_the_same_canonical_json(equivalent: dict[str, Any]) -> None:
    assert canonical(equivalent) == canonical(deal())


def test_split_order_and_share_notation_do_not_change_the_canonical_json() -> None:
    forward = deal(splits=[{"rep_id": "ana", "share": 0.25}, {"rep_id": "ben", "share": "0.75"}])
    backward = deal(splits=[{"rep_id": "ben", "share": "0.750"}, {"rep_id": "ana", "share": "0.25"}])
    assert canonical(forward) == canonical(backward)


@pytest.mark.parametrize(
    "different",
    [
        deal(amount="1000.01"),
        deal(occurred_at="2026-11-29T10:00:00+01:00"),
        deal(occurred_at="2026-11-29T10:00:00.000001Z"),
        deal(stage="won", closed_at="2026-11-29T10:00:00Z"),
        deal(kind="renewal"),
        deal(version=0),
        deal(source="csv"),
        deal(currency="USD"),
        deal(customer_id="acct-1"),
        deal(owner_id="ben"),
        deal(splits=[{"rep_id": "ana", "share": 1}]),
        deal(event_id="evt-2"),
    ],
)
def test_different_bodies_have_different_canonical_json(different: dict[str, Any]) -> None:
    assert canonical(different) != canonical(deal())


def test_body_hash_is_the_sha256_of_the_canonical_json() -> None:
    [event] = accepted(deal())
    assert body_hash(event) == hashlib.sha256(canonical_json(event)).hexdigest()
    assert len(body_hash(event)) == 64


def test_event_from_canonical_reads_back_an_equal_event() -> None:
    for item in (won_deal(splits=[{"rep_id": "ana", "share": 1}], version=3, currency="USD"), activity()):
        [event] = accepted(item)
        again = event_from_canonical(canonical_json(event))
        assert again == event
        assert canonical_json(again) == canonical_json(event)


def test_event_from_canonical_keeps_the_deal_currency() -> None:
    [event] = accepted(deal(currency="EUR"))
    assert event_from_canonical(canonical_json(event)).currency == "EUR"  # type: ignore[union-attr]


IDS = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
MOMENTS = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2999, 12, 30), timezones=OFFSETS).map(
    datetime.isoformat
)
AMOUNTS = st.decimals(min_value=0, max_value=Decimal("999999999999999.99"), places=2)
AMOUNT_VALUES = st.one_of(AMOUNTS.map(str), AMOUNTS.map(int), AMOUNTS.map(lambda amount: f"{amount:e}"))


@st.composite
def split_lists(draw: st.DrawFn) -> list[dict[str, Any]] | None:
    reps = draw(st.lists(IDS, min_size=1, max_size=4, unique=True) | st.none())
    if reps is None:
        return None
    cuts = sorted(draw(st.lists(st.integers(1, 99), min_size=len(reps) - 1, max_size=len(reps) - 1)))
    bounds = [0, *cuts, 100]
    shares = [Decimal(high - low) / 100 for low, high in zip(bounds, bounds[1:], strict=False)]
    if any(share <= 0 for share in shares):
        return None
    return [{"rep_id": rep, "share": str(share)} for rep, share in zip(reps, shares, strict=True)]


@st.composite
def deal_bodies(draw: st.DrawFn) -> dict[str, Any]:
    stage = draw(st.sampled_from(["open", "won", "lost"]))
    body = {
        "event_id": draw(IDS),
        "type": "deal",
        "occurred_at": draw(MOMENTS),
        "source": draw(st.none() | st.text(max_size=8).filter(lambda s: s.isprintable())),
        "deal_id": draw(IDS),
        "version": draw(st.none() | st.integers(min_value=0, max_value=2**40)),
        "owner_id": draw(IDS),
        "stage": stage,
        "amount": draw(AMOUNT_VALUES),
        "currency": draw(st.sampled_from([None, "USD"])),
        "closed_at": draw(MOMENTS) if stage != "open" else draw(st.none() | MOMENTS),
        "splits": draw(split_lists()),
        "kind": draw(st.sampled_from(["new", "renewal", "expansion"])),
        "customer_id": draw(st.none() | IDS),
    }
    return body


@st.composite
def activity_bodies(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "event_id": draw(IDS),
        "type": "activity",
        "occurred_at": draw(MOMENTS),
        "rep_id": draw(IDS),
        "kind": draw(st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)),
        "deal_id": draw(st.none() | IDS),
    }


@settings(max_examples=300, deadline=None)
@given(st.one_of(deal_bodies(), activity_bodies()))
def test_canonical_json_is_stable_through_event_from_canonical(body: dict[str, Any]) -> None:
    [event] = accepted(body)
    encoded = canonical_json(event)
    again = event_from_canonical(encoded)
    assert canonical_json(again) == encoded
    assert canonical_json(event_from_canonical(canonical_json(again))) == encoded
    assert again.rep_ids() == event.rep_ids()


# --- the accept window, checked after validation -----------------------------------------------------------

NEAR = st.datetimes(min_value=datetime(2026, 11, 1), max_value=datetime(2027, 1, 31), timezones=OFFSETS)


@st.composite
def windowed_batches(draw: st.DrawFn) -> tuple[bytes, AcceptWindow]:
    """A batch of events, some perhaps invalid, timestamps near a window that some may fall outside of."""
    bodies = draw(st.lists(st.one_of(deal_bodies(), activity_bodies()), min_size=1, max_size=6))
    for body in bodies:
        body["occurred_at"] = draw(NEAR).isoformat()
        if body.get("closed_at") is not None:
            body["closed_at"] = draw(NEAR | st.just(datetime(2026, 12, 1, tzinfo=UTC))).isoformat()
        if draw(st.integers(0, 9)) == 0:
            body["amount"] = "-1"  # an invalid event beside the window's problems
    now = draw(NEAR)
    window = AcceptWindow.around(now, not_before=draw(NEAR), ahead=timedelta(days=draw(st.integers(0, 30))))
    return encode(bodies), window


@settings(max_examples=300, deadline=None)
@given(windowed_batches())
def test_the_window_checked_after_validation_reports_as_a_validator_would(batch: tuple[bytes, AcceptWindow]) -> None:
    """validate_events checks the window in one pass over valid events; the field validator (what validation
    with the window in its context runs) is the reference: the same events, the same problems in the same order."""
    body, window = batch
    assert validate_events(body, window=window) == _validated(body, window)
    parsed = json.loads(body)
    assert validate_events(parsed, window=window) == _validated(parsed, window)


def test_instants_on_the_window_edges_are_inside() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    window = AcceptWindow.around(now, not_before=datetime(2026, 12, 1, tzinfo=UTC), ahead=timedelta(days=7))
    edges = [
        activity(occurred_at="2026-12-01T00:00:00Z"),
        activity(event_id="a2", occurred_at="2026-12-14T13:00:00+01:00"),
    ]
    events, problems = validate_events(encode(edges), window=window)
    assert problems == [] and len(events) == 2
    late = [won_deal(occurred_at="2026-12-02T00:00:00Z", closed_at="2026-12-14T12:00:00.000001Z")]
    assert validate_events(encode(late), window=window)[1] == [
        ValidationProblem(0, "closed_at", window.too_late("closed_at"))
    ]


@pytest.mark.parametrize(
    "sent",
    ["2026-11-29T12:00:00+02:00", "2026-11-29T10:00:00Z", "2026-11-29T10:00:00+00:00", "2026-11-29T05:30:00-04:30"],
)
def test_canonical_timestamps_are_utc_whatever_offset_was_sent(sent: str) -> None:
    [event] = accepted(activity(occurred_at=sent))
    assert json.loads(canonical_json(event))["occurred_at"] == "2026-11-29T10:00:00Z"
