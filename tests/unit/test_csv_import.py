"""CSV import: the mapping language, the shipped CRM mapping, and what the importer does with ingest's answers."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schemas.events import validate_events
from services.demo.roster import data_rows, rep_id_for
from services.ingest.importer import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    CsvMapper,
    ImportMapping,
    ImportOptions,
    ImportRow,
    MappingError,
    Tally,
    load_mapping,
    parse_mapping,
    read_csv,
    run_import,
)
from services.ingest.importer.command import ImportProgress, default_rejects_path
from services.ingest.importer.sender import IngestSender

MAPPINGS = Path(__file__).resolve().parents[2] / "services" / "ingest" / "mappings"
PIPELINE_HEADER = [
    "opportunity_id",
    "sales_agent",
    "product",
    "account",
    "deal_stage",
    "engage_date",
    "close_date",
    "close_value",
]

BASE_FIELDS = """\
  event_id: "crm-{opportunity_id}-{deal_stage|lower}"
  deal_id: "{opportunity_id}"
  owner_id: "{sales_agent|rep_id}"
  stage: {column: deal_stage, map: {Won: won, Lost: lost, Engaging: open, Prospecting: open}}
  amount: {column: close_value, default: 0}
"""


def mapping(text: str, *, origin: str = "test.yaml") -> ImportMapping:
    return parse_mapping(yaml.safe_load(textwrap.dedent(text)), origin=origin)


def deal_mapping(
    extra_fields: str = "", top: str = "", occurred_at: str = "occurred_at: {first: [close_date, engage_date]}"
) -> ImportMapping:
    return mapping(f"type: deal\n{top}fields:\n{BASE_FIELDS}  {occurred_at}\n{extra_fields}")


def row(**values: str) -> dict[str, str]:
    base = {
        "opportunity_id": "OPP1",
        "sales_agent": "Moses Frase",
        "product": "GTX Basic",
        "account": "Cancity",
        "deal_stage": "Won",
        "engage_date": "2016-10-20",
        "close_date": "2017-03-01",
        "close_value": "1054",
    }
    return {**base, **values}


def mapping_problems(text: str) -> list[str]:
    with pytest.raises(MappingError) as caught:
        mapping(text)
    return caught.value.problems


# --- value maps -------------------------------------------------------------------------------------


def test_value_map_translates_crm_stages_to_contract_stages() -> None:
    deals = deal_mapping()
    assert deals.map_row(row(deal_stage="Won")).event["stage"] == "won"  # type: ignore[index]
    assert deals.map_row(row(deal_stage="Engaging", close_date="")).event["stage"] == "open"  # type: ignore[index]


def test_value_missing_from_the_map_rejects_the_row_naming_the_value_and_the_known_ones() -> None:
    mapped = deal_mapping().map_row(row(deal_stage="Negotiating"))
    assert mapped.event is None
    assert mapped.problems == (
        "stage: 'Negotiating' is not in the value map (known: Won, Lost, Engaging, Prospecting)",
    )


def test_otherwise_catches_values_the_map_does_not_list() -> None:
    deals = deal_mapping("  kind: {column: product, map: {Renewal: renewal}, otherwise: new}\n")
    assert deals.map_row(row(product="GTX Basic")).event["kind"] == "new"  # type: ignore[index]
    assert deals.map_row(row(product="Renewal")).event["kind"] == "renewal"  # type: ignore[index]


def test_transform_runs_before_the_map() -> None:
    deals = deal_mapping("  kind: {column: product, transform: lower, map: {renewal: renewal}, otherwise: new}\n")
    assert deals.map_row(row(product="RENEWAL")).event["kind"] == "renewal"  # type: ignore[index]


def test_yaml_booleans_as_map_keys_are_refused_with_a_quoting_hint() -> None:
    problems = mapping_problems(
        "type: deal\nfields:\n"
        + BASE_FIELDS
        + "  occurred_at: '{close_date}'\n  kind: {column: product, map: {yes: renewal}}\n"
    )
    assert problems == ["fields.kind.map: True is a YAML boolean; quote it (e.g. 'Yes') to compare with CSV text"]


def test_version_from_a_map_is_a_whole_number_and_text_that_is_not_one_rejects_the_row() -> None:
    deals = deal_mapping("  version: {column: deal_stage, map: {Engaging: 1, Won: 2, Lost: 2}}\n")
    assert deals.map_row(row()).event["version"] == 2  # type: ignore[index]
    from_column = deal_mapping("  version: '{product}'\n")
    assert from_column.map_row(row(product="7")).event["version"] == 7  # type: ignore[index]
    assert from_column.map_row(row(product="v7")).problems == ("version: 'v7' is not a whole number",)


def test_map_values_for_version_must_be_whole_numbers() -> None:
    problems = mapping_problems(
        "type: deal\nfields:\n" + BASE_FIELDS + "  occurred_at: '{close_date}'\n"
        "  version: {column: deal_stage, map: {Won: two}}\n"
    )
    assert problems == ["fields.version: 'two' is not a whole number"]


# --- dates and times --------------------------------------------------------------------------------


def test_naive_date_gets_the_default_timezone_so_the_timestamp_carries_an_offset() -> None:
    deals = deal_mapping(top="timezone: America/New_York\ndate_format: '%Y-%m-%d'\n")
    event = deals.map_row(row(close_date="2017-07-01")).event
    assert event is not None
    assert event["occurred_at"] == "2017-07-01T00:00:00-04:00"  # summer time in New York
    winter = deals.map_row(row(close_date="2017-01-15")).event
    assert winter is not None and winter["occurred_at"] == "2017-01-15T00:00:00-05:00"


def test_date_only_values_take_the_time_of_day() -> None:
    deals = deal_mapping(top="time_of_day: '12:00'\n")
    event = deals.map_row(row(close_date="2017-03-01")).event
    assert event is not None and event["occurred_at"] == "2017-03-01T12:00:00+00:00"


def test_values_with_an_offset_keep_it_and_the_default_timezone_is_not_applied() -> None:
    deals = deal_mapping(top="timezone: Europe/Berlin\n")
    event = deals.map_row(row(close_date="2017-03-01T09:30:00-08:00")).event
    assert event is not None and event["occurred_at"] == "2017-03-01T09:30:00-08:00"


def test_strptime_formats_are_tried_in_order() -> None:
    deals = deal_mapping(
        occurred_at=(
            "occurred_at: {column: close_date, format: ['%m/%d/%Y %I:%M %p', '%m/%d/%Y'], "
            "timezone: America/Chicago, time_of_day: '17:00'}"
        )
    )
    with_time = deals.map_row(row(close_date="03/01/2017 09:30 AM")).event
    date_only = deals.map_row(row(close_date="03/01/2017")).event
    assert with_time is not None and with_time["occurred_at"] == "2017-03-01T09:30:00-06:00"
    assert date_only is not None and date_only["occurred_at"] == "2017-03-01T17:00:00-06:00"


def test_unix_seconds_are_utc() -> None:
    deals = deal_mapping(occurred_at="occurred_at: {column: close_date, format: unix}")
    event = deals.map_row(row(close_date="1488369600")).event
    assert event is not None and event["occurred_at"] == "2017-03-01T12:00:00+00:00"


def test_a_date_that_does_not_parse_rejects_the_row_with_the_expected_format() -> None:
    deals = deal_mapping(top="date_format: '%Y-%m-%d'\n")
    mapped = deals.map_row(row(close_date="2017-02-30"))
    assert mapped.problems == ("occurred_at: '2017-02-30' is not a date/time in the format %Y-%m-%d",)


def test_unquoted_time_of_day_is_refused_because_yaml_reads_it_as_a_number() -> None:
    problems = mapping_problems(
        "type: deal\ntime_of_day: 12:00\nfields:\n" + BASE_FIELDS + "  occurred_at: '{close_date}'\n"
    )
    assert problems == ["time_of_day: quote the time, e.g. '12:00' (YAML reads 12:00 unquoted as the number 720)"]


def test_unknown_timezone_is_a_mapping_error() -> None:
    problems = mapping_problems(
        "type: deal\ntimezone: Mars/Olympus\nfields:\n" + BASE_FIELDS + "  occurred_at: '{close_date}'\n"
    )
    assert problems == ["timezone: unknown IANA time zone 'Mars/Olympus', e.g. UTC or America/New_York"]


def test_date_options_only_apply_to_timestamp_fields() -> None:
    problems = mapping_problems(
        "type: deal\nfields:\n"
        + BASE_FIELDS
        + "  occurred_at: '{close_date}'\n  customer_id: {column: account, format: iso}\n"
    )
    assert problems == ["fields.customer_id: format only apply to occurred_at and closed_at"]


# --- templates, first and defaults ------------------------------------------------------------------


def test_templates_fill_columns_and_apply_transforms() -> None:
    event = deal_mapping("  customer_id: 'acct-{account|slug}'\n").map_row(row(account="Acme Corporation")).event
    assert event is not None
    assert event["event_id"] == "crm-OPP1-won"
    assert event["owner_id"] == "moses-frase"
    assert event["customer_id"] == "acct-acme-corporation"


def test_owner_id_uses_the_demo_roster_rule_for_rep_ids() -> None:
    event = deal_mapping().map_row(row(sales_agent="Mei-Mei Johns")).event
    assert event is not None and event["owner_id"] == rep_id_for("Mei-Mei Johns") == "mei-mei-johns"


def test_double_braces_are_literal_braces() -> None:
    event = deal_mapping("  customer_id: '{{x}}-{account}'\n").map_row(row()).event
    assert event is not None and event["customer_id"] == "{x}-Cancity"


def test_a_template_with_an_empty_column_leaves_the_field_out() -> None:
    event = deal_mapping("  customer_id: '{account|slug}'\n").map_row(row(account="")).event
    assert event is not None and "customer_id" not in event


def test_a_required_field_left_empty_is_rejected_naming_the_empty_column() -> None:
    header = list(row())
    mapper = CsvMapper(deal_mapping(), header)
    [result] = mapper.map_batch([(2, list(row(sales_agent="", deal_stage="Engaging").values()))])
    assert result.event is None
    assert result.reasons == ["owner_id is required (column sales_agent is empty)"]


def test_first_takes_the_first_non_empty_column() -> None:
    deals = deal_mapping()
    closed = deals.map_row(row()).event
    open_deal = deals.map_row(row(deal_stage="Engaging", close_date="", close_value="")).event
    assert closed is not None and closed["occurred_at"].startswith("2017-03-01")
    assert open_deal is not None and open_deal["occurred_at"].startswith("2016-10-20")


def test_first_accepts_value_specs_as_fallbacks() -> None:
    deals = mapping(
        "type: deal\nfields:\n"
        + BASE_FIELDS.replace(
            "amount: {column: close_value, default: 0}",
            "amount: {first: [close_value, {column: product, map: {GTX Basic: 550}, otherwise: 0}]}",
        )
        + "  occurred_at: '{close_date}'\n"
    )
    assert deals.map_row(row(close_value="")).event["amount"] == 550  # type: ignore[index]
    assert deals.map_row(row(close_value="", product="Other")).event["amount"] == 0  # type: ignore[index]
    assert deals.map_row(row()).event["amount"] == "1054"  # type: ignore[index]


def test_default_fills_an_empty_value() -> None:
    event = deal_mapping().map_row(row(close_value="")).event
    assert event is not None and event["amount"] == 0


def test_constants_are_used_as_written() -> None:
    event = deal_mapping("  source: csv\n  currency: {value: USD}\n").map_row(row()).event
    assert event is not None and event["source"] == "csv" and event["currency"] == "USD"


# --- skip and reject rules --------------------------------------------------------------------------


def test_skip_rule_needs_every_test_to_hold() -> None:
    deals = deal_mapping(
        top="skip:\n  - when: {deal_stage: Prospecting, engage_date: {empty: true}}\n    reason: no date\n"
    )
    assert deals.map_row(row(deal_stage="Prospecting", engage_date="")).skipped == "no date"
    assert deals.map_row(row(deal_stage="Prospecting")).skipped is None
    assert deals.map_row(row(engage_date="")).skipped is None


def test_skip_when_close_date_is_empty_and_stage_is_won() -> None:
    deals = deal_mapping(top="skip:\n  - when: {close_date: '', deal_stage: [Won]}\n")
    assert deals.map_row(row(close_date="")).skipped == "close_date is empty and deal_stage is 'Won'"
    assert deals.map_row(row(close_date="", deal_stage="Engaging")).skipped is None


def test_tests_cover_lists_not_in_and_patterns() -> None:
    deals = deal_mapping(
        top=(
            "skip:\n"
            "  - when: {deal_stage: {not_in: [Won, Lost, Engaging]}}\n"
            "  - when: {opportunity_id: {matches: '^TEST-'}}\n"
        )
    )
    assert deals.map_row(row(deal_stage="Prospecting")).skipped == "deal_stage is not 'Won' or 'Lost' or 'Engaging'"
    assert deals.map_row(row(opportunity_id="TEST-1")).skipped == "opportunity_id matches '^TEST-'"
    assert deals.map_row(row()).skipped is None


def test_reject_rule_rejects_with_its_reason() -> None:
    deals = deal_mapping(
        top="reject:\n  - when: {deal_stage: [Won, Lost], close_date: {empty: true}}\n    reason: needs a close_date\n"
    )
    assert deals.map_row(row(close_date="")).problems == ("needs a close_date",)


# --- mapping-file errors ----------------------------------------------------------------------------


def test_unknown_column_names_the_place_and_lists_the_csv_columns() -> None:
    deals = deal_mapping("  customer_id: '{acount|slug}'\n")
    with pytest.raises(MappingError) as caught:
        deals.check_columns(PIPELINE_HEADER)
    assert caught.value.problems == [
        "fields.customer_id: column 'acount' is not in the CSV (did you mean account?)",
        "the CSV's columns are: " + ", ".join(PIPELINE_HEADER),
    ]


def test_unknown_column_in_a_skip_rule_is_found_too() -> None:
    deals = deal_mapping(top="skip:\n  - when: {stage: Prospecting}\n")
    with pytest.raises(MappingError) as caught:
        deals.check_columns(PIPELINE_HEADER)
    assert caught.value.problems[0] == "skip[0].when: column 'stage' is not in the CSV (did you mean deal_stage?)"


def test_a_constant_that_is_also_a_column_name_is_refused_as_a_likely_mistake() -> None:
    deals = deal_mapping("  customer_id: account\n")
    with pytest.raises(MappingError) as caught:
        deals.check_columns(PIPELINE_HEADER)
    assert caught.value.problems == [
        "fields.customer_id: 'account' is a constant text but also a column name; write '{account}' for the "
        "column's value, or {value: account} to keep the text"
    ]


def test_unknown_event_field_is_named_with_a_suggestion() -> None:
    problems = mapping_problems(
        "type: deal\nfields:\n" + BASE_FIELDS + "  occurred_at: '{close_date}'\n  custmer_id: x\n"
    )
    assert problems[0].startswith(
        "fields.custmer_id: a deal event has no field 'custmer_id' (did you mean customer_id?)"
    )


def test_missing_required_fields_are_listed() -> None:
    problems = mapping_problems("type: deal\nfields:\n  event_id: '{opportunity_id}'\n  deal_id: '{opportunity_id}'\n")
    assert problems == ["fields: occurred_at, owner_id, stage, amount missing; every deal event needs them"]


def test_unmappable_fields_say_why() -> None:
    problems = mapping_problems(
        "type: deal\nfields:\n" + BASE_FIELDS + "  occurred_at: '{close_date}'\n  splits: x\n  type: deal\n"
    )
    assert problems == [
        "fields.splits: splits cannot be mapped from a CSV; each deal is credited 100 % to owner_id",
        "fields.type: type is not a field: it comes from the mapping's top-level type (or --type)",
    ]


def test_structural_mistakes_are_all_reported_at_once() -> None:
    problems = mapping_problems(
        """\
        type: deals
        fieldz: {}
        fields:
          event_id: {column: a, template: '{b}'}
          deal_id: '{a|upercase}'
          owner_id: 'x}'
          stage: {column: s, mapp: {}}
        """
    )
    assert problems == [
        "unknown key 'fieldz' (did you mean fields?); known: description, type, delimiter, timezone, date_format, "
        "time_of_day, skip, reject, fields",
        "type: must be deal or activity, not 'deals'",
        "fields.event_id: give exactly one of value, column, template, first (got column, template)",
        "fields.deal_id: unknown transform 'upercase' (did you mean upper?); known: lower, upper, slug, rep_id",
        "fields.owner_id: unbalanced '}' in 'x}'; write }} for a literal brace",
        "fields.stage: unknown key 'mapp' (did you mean map?); known: value, column, template, first, transform, "
        "map, otherwise, default, format, timezone, time_of_day",
    ]


def test_a_mapping_without_a_type_takes_the_one_from_the_command_line() -> None:
    untyped = mapping("fields:\n" + BASE_FIELDS + "  occurred_at: '{close_date}'\n")
    assert untyped.for_type("deal").map_row(row()).event["type"] == "deal"  # type: ignore[index]
    with pytest.raises(MappingError) as caught:
        untyped.for_type("activity")
    known = "known: event_id, occurred_at, source, rep_id, kind, deal_id, customer_id"
    assert caught.value.problems == [
        f"fields.owner_id: an activity event has no field 'owner_id'; {known}",
        f"fields.stage: an activity event has no field 'stage'; {known}",
        f"fields.amount: an activity event has no field 'amount'; {known}",
        "fields: rep_id, kind missing; every activity event needs them",
    ]


def test_a_mapping_for_deals_refuses_type_activity() -> None:
    with pytest.raises(MappingError) as caught:
        deal_mapping().for_type("activity")
    assert caught.value.problems == ["the mapping is for deal events, but --type asks for activity events"]


def test_invalid_yaml_is_a_mapping_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("fields: [unclosed\n")
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert caught.value.origin == "broken.yaml"
    assert caught.value.problems[0].startswith("not valid YAML")


# --- rows: validation, repeats, short records -------------------------------------------------------


def mapper_for(text: str, mapping_: ImportMapping) -> tuple[CsvMapper, list[ImportRow]]:
    header, records = read_csv(io.StringIO(textwrap.dedent(text)))
    mapper = CsvMapper(mapping_, header)
    return mapper, mapper.map_batch(records)


def test_rows_are_validated_against_the_event_contract() -> None:
    _, rows = mapper_for(
        """\
        opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value
        A,Moses Frase,GTX Basic,Cancity,Won,2016-10-20,2017-03-01,1054
        B,Moses Frase,GTX Basic,Cancity,Won,2016-10-20,2017-03-01,-5
        C,Moses Frase,GTX Basic,Cancity,Won,2016-10-20,,10.999
        """,
        deal_mapping("  closed_at: '{close_date}'\n"),
    )
    assert [r.line for r in rows] == [2, 3, 4]
    assert rows[0].event is not None and rows[0].reasons == []
    assert rows[1].reasons == ["amount must not be negative"]
    assert rows[2].reasons == [
        "amount must have at most 2 decimal places",
        "closed_at is required when stage is won (column close_date is empty)",
    ]


def test_a_row_repeating_an_earlier_event_is_a_duplicate_and_one_with_other_data_is_rejected() -> None:
    _, rows = mapper_for(
        """\
        opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value
        A,Moses Frase,GTX Basic,Cancity,Won,2016-10-20,2017-03-01,1054
        A,Moses Frase,GTX Basic,Cancity,Won,2016-10-20,2017-03-01,1054
        A,Moses Frase,GTX Basic,Cancity,Won,2016-10-20,2017-03-01,999
        """,
        deal_mapping("  closed_at: '{close_date}'\n"),
    )
    assert rows[1].duplicate_of == 2 and rows[1].reasons == []
    assert rows[2].event is None
    assert rows[2].reasons == [
        "event_id crm-A-won was already produced by line 2 with different data; "
        "make the event_id template tell these rows apart"
    ]


def test_short_rows_are_rejected_and_line_numbers_count_quoted_newlines() -> None:
    _, rows = mapper_for(
        "opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value\n"
        'A,Moses Frase,GTX Basic,"Can\ncity",Won,2016-10-20,2017-03-01,1054\n'
        "\n"
        "B,Moses Frase\n",
        deal_mapping(),
    )
    assert [r.line for r in rows] == [2, 5]
    assert rows[1].reasons == ["line 5 has 2 values but the header names 8 columns"]


def test_duplicate_header_columns_are_refused() -> None:
    with pytest.raises(MappingError, match="more than once"):
        CsvMapper(deal_mapping(), [*PIPELINE_HEADER, "account"])


# --- the shipped mappings ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_pipeline() -> list[ImportRow]:
    mapping_ = load_mapping(MAPPINGS / "crm-sales-pipeline.yaml").for_type("deal")
    path = Path(__file__).resolve().parents[2] / "services" / "demo" / "data" / "sales_pipeline.csv"
    with path.open(encoding="utf-8", newline="") as stream:
        header, records = read_csv(stream)
        return CsvMapper(mapping_, header).map_batch(records)


def test_shipped_crm_mapping_turns_every_row_into_a_valid_event_or_a_documented_skip(
    shipped_pipeline: list[ImportRow],
) -> None:
    assert len(shipped_pipeline) == 8_800
    assert [r for r in shipped_pipeline if r.reasons] == []
    skipped = Counter(r.skipped for r in shipped_pipeline if r.skipped)
    assert skipped == {"Prospecting deal without an engage_date (not yet in the pipeline)": 500}
    events = [r.event for r in shipped_pipeline if r.event is not None]
    assert len(events) == 8_300
    assert Counter(e["stage"] for e in events) == {"won": 4_238, "lost": 2_473, "open": 1_589}
    parsed, problems = validate_events(json.loads(json.dumps(events)))
    assert problems == [] and len(parsed) == 8_300
    assert len({e["event_id"] for e in events}) == 8_300


def test_shipped_crm_mapping_credits_the_sales_agent_and_orders_closed_after_open(
    shipped_pipeline: list[ImportRow],
) -> None:
    source = {r["opportunity_id"]: r for r in data_rows("sales_pipeline.csv")}
    for result in shipped_pipeline:
        event = result.event
        if event is None:
            continue
        original = source[event["deal_id"]]
        assert event["owner_id"] == rep_id_for(original["sales_agent"])
        assert event["event_id"] == f"crm-{original['opportunity_id']}-{original['deal_stage'].lower()}"
        if event["stage"] == "open":
            assert event["version"] == 1 and "closed_at" not in event
            assert event["occurred_at"] == f"{original['engage_date']}T12:00:00+00:00"
        else:
            assert event["version"] == 2
            assert event["occurred_at"] == event["closed_at"] == f"{original['close_date']}T12:00:00+00:00"
            assert event["amount"] == original["close_value"]


def test_shipped_activity_example_maps_a_crm_activity_export() -> None:
    mapping_ = load_mapping(MAPPINGS / "crm-activities.yaml").for_type("activity")
    _, rows = mapper_for(
        """\
        Activity ID,Assigned To,Type,Status,Date,Opportunity ID,Account
        00T1,Moses Frase,Call,Completed,07/03/2017 09:30 AM,1C1I7A6R,Cancity
        00T2,Moses Frase,Video Call,Completed,07/03/2017,,
        00T3,Moses Frase,Call,Open,07/04/2017,,
        """,
        mapping_,
    )
    assert rows[0].event == {
        "type": "activity",
        "event_id": "crm-activity-00T1",
        "source": "csv",
        "rep_id": "moses-frase",
        "kind": "call",
        "occurred_at": "2017-07-03T09:30:00-04:00",
        "deal_id": "1C1I7A6R",
        "customer_id": "cancity",
    }
    assert rows[1].event is not None and rows[1].event["kind"] == "meeting"
    assert rows[2].skipped == "activity not completed"


# --- talking to ingest ------------------------------------------------------------------------------


def sendable(count: int) -> list[ImportRow]:
    return [
        ImportRow(
            line=i + 2,
            values=[f"v{i}"],
            event={"event_id": f"e{i}", "type": "activity", "occurred_at": "2017-01-01T00:00:00Z"},
        )
        for i in range(count)
    ]


def ndjson_ids(request: httpx.Request) -> list[str]:
    return [json.loads(line)["event_id"] for line in request.content.splitlines() if line]


def sender_for(
    handler: Any, tally: Tally, rejected: list[ImportRow], sleeps: list[float] | None = None
) -> IngestSender:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return IngestSender(
        client,
        "http://ingest.test",
        "k",
        tally=tally,
        reject=rejected.append,
        sleep=(sleeps.append if sleeps is not None else lambda _: None),
    )


def test_rows_ingest_refuses_with_422_are_rejected_with_its_message_and_the_rest_is_resent() -> None:
    bodies: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = ndjson_ids(request)
        bodies.append(ids)
        if "e1" in ids:
            errors = [{"index": ids.index("e1"), "field": "rep_id", "message": "unknown rep 'x'"}]
            return httpx.Response(422, json={"detail": "1 of the events are invalid", "errors": errors})
        return httpx.Response(202, json={"accepted": len(ids), "duplicates": 0})

    tally, rejected = Tally(), []
    sender_for(handler, tally, rejected).send(sendable(3))
    assert bodies == [["e0", "e1", "e2"], ["e0", "e2"]]
    assert (tally.accepted, tally.rejected) == (2, 1)
    assert rejected[0].line == 3 and rejected[0].reasons == ["ingest: unknown rep 'x'"]


def test_409_rows_are_reported_as_conflicts_and_the_rest_of_the_batch_goes_in() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        ids = ndjson_ids(request)
        if "e2" in ids:
            detail = (
                "These event_ids were already accepted with a different body: e2. Send a new event_id for a new fact"
            )
            return httpx.Response(409, json={"detail": detail})
        return httpx.Response(202, json={"accepted": 0, "duplicates": len(ids)})

    tally, rejected = Tally(), []
    sender = sender_for(handler, tally, rejected)
    sender.send(sendable(4))
    assert (tally.duplicates, tally.rejected, tally.conflicts) == (3, 1, 1)
    assert sender.conflicting == [("e2", 4)]
    assert "already accepted with a different body (409)" in rejected[0].reasons[0]


def test_409_without_recognisable_ids_is_narrowed_down_by_halving_the_batch() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        ids = ndjson_ids(request)
        if "e5" in ids:
            return httpx.Response(409, json={"detail": "conflict"})
        return httpx.Response(202, json={"accepted": len(ids), "duplicates": 0})

    tally, rejected = Tally(), []
    sender_for(handler, tally, rejected).send(sendable(8))
    assert (tally.accepted, tally.conflicts) == (7, 1)
    assert [r.line for r in rejected] == [7]


def test_503_and_connection_errors_are_retried_with_backoff_honouring_retry_after() -> None:
    answers = iter(["connect", "503", "202"])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if answer == "connect":
            raise httpx.ConnectError("refused", request=request)
        if answer == "503":
            return httpx.Response(503, json={"detail": "ledger down"}, headers={"Retry-After": "2"})
        return httpx.Response(202, json={"accepted": 2, "duplicates": 0})

    tally, sleeps = Tally(), []
    sender_for(handler, tally, [], sleeps).send(sendable(2))
    assert tally.accepted == 2
    assert sleeps == [0.25, 2.0]


def test_413_splits_the_batch() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = ndjson_ids(request)
        sizes.append(len(ids))
        if len(ids) > 2:
            return httpx.Response(413, json={"detail": "too big"})
        return httpx.Response(202, json={"accepted": len(ids), "duplicates": 0})

    tally = Tally()
    sender_for(handler, tally, []).send(sendable(5))
    assert tally.accepted == 5 and sizes == [5, 2, 3, 1, 2]


# --- the command, without a server ------------------------------------------------------------------

SMALL_CSV = """\
opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value
A1,Moses Frase,GTX Basic,Cancity,Won,2016-10-20,2017-03-01,1054
A2,Moses Frase,GTX Basic,Cancity,Negotiating,2016-10-20,2017-03-01,1054
A3,Darcel Schlecht,GTXPro,,Engaging,2016-10-25,,
A4,Anna Snelling,GTX Basic,Green-Plus,Prospecting,,,
"""


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.csv"
    path.write_text(SMALL_CSV)
    return path


def refuse_requests(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"a dry run sent {request.method} {request.url}")


def run(options: ImportOptions, handler: Any = refuse_requests) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_import(options, out=out, err=err, transport=httpx.MockTransport(handler))
    return code, out.getvalue(), err.getvalue()


def test_dry_run_writes_rejects_with_the_original_columns_line_and_reason_and_sends_nothing(small_csv: Path) -> None:
    options = ImportOptions(file=small_csv, type="deal", mapping=MAPPINGS / "crm-sales-pipeline.yaml", dry_run=True)
    code, out, _ = run(options)
    assert code == EXIT_REJECTED
    with default_rejects_path(small_csv).open(newline="") as stream:
        rejects = list(csv.DictReader(stream))
    assert [(r["opportunity_id"], r["deal_stage"], r["line"]) for r in rejects] == [("A2", "Negotiating", "3")]
    assert rejects[0]["reason"].startswith("version: 'Negotiating' is not in the value map")
    assert "2 rows would be sent" in out
    assert "1  Prospecting deal without an engage_date" in out.replace("       ", "")


def test_an_import_that_ingest_takes_whole_exits_0(small_csv: Path) -> None:
    small_csv.write_text("\n".join(line for line in SMALL_CSV.splitlines() if "Negotiating" not in line) + "\n")
    posted: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer secret"
        assert request.headers["content-type"] == "application/x-ndjson"
        posted.extend(ndjson_ids(request))
        return httpx.Response(202, json={"accepted": 2, "duplicates": 0})

    options = ImportOptions(
        file=small_csv, type="deal", mapping=MAPPINGS / "crm-sales-pipeline.yaml", key="secret", ingest_url="http://x"
    )
    code, out, err = run(options, handler)
    assert code == EXIT_OK, out + err
    assert posted == ["crm-A1-won", "crm-A3-engaging"]
    assert "accepted           2" in out


def test_a_key_ingest_refuses_is_a_usage_error(small_csv: Path) -> None:
    options = ImportOptions(
        file=small_csv, type="deal", mapping=MAPPINGS / "crm-sales-pipeline.yaml", key="wrong", ingest_url="http://x"
    )
    code, _, err = run(options, lambda request: httpx.Response(401, json={"detail": "Unknown API key."}))
    assert code == EXIT_USAGE
    assert "ingest refused the key (401): Unknown API key." in err


def test_mapping_errors_exit_2_naming_the_problem(small_csv: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((MAPPINGS / "crm-sales-pipeline.yaml").read_text().replace("{sales_agent|rep_id}", "{agent|rep_id}"))
    code, _, err = run(ImportOptions(file=small_csv, type="deal", mapping=bad, dry_run=True))
    assert code == EXIT_USAGE
    assert "fields.owner_id: column 'agent' is not in the CSV" in err
    assert "the CSV's columns are: opportunity_id, sales_agent," in err


def test_wrong_type_and_bad_batch_size_exit_2(small_csv: Path) -> None:
    mapping_path = MAPPINGS / "crm-sales-pipeline.yaml"
    assert run(ImportOptions(file=small_csv, type="activity", mapping=mapping_path, dry_run=True))[0] == EXIT_USAGE
    code, _, err = run(ImportOptions(file=small_csv, type="deal", mapping=mapping_path, dry_run=True, batch=20_000))
    assert code == EXIT_USAGE and "--batch must be between 1 and 10,000" in err


def test_rejects_file_defaults_next_to_the_input() -> None:
    assert default_rejects_path(Path("data/sales.csv")) == Path("data/sales.rejects.csv")
    assert default_rejects_path(Path("data/export")) == Path("data/export.rejects.csv")


def test_progress_line_shows_rows_rate_and_eta() -> None:
    stream = io.StringIO()
    progress = ImportProgress(1_000, stream, label="x.csv", interactive=False)
    progress.done = 250
    line = progress.line()
    assert line.startswith("x.csv [######------------------] 250/1,000 rows  25% · ")
    assert "rows/s · ETA " in line
