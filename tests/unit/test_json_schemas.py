"""The committed JSON Schema files (schemas/json) are exactly what the event models export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.export import SCHEMA_DIR, main, rendered_schemas, stale_files, write_schemas

SCHEMA_FILES = [
    "deal-event.schema.json", "activity-event.schema.json", "event.schema.json",
    # one per topic message (schemas/messages.py)
    "event-envelope.schema.json", "credits.schema.json", "rep-snapshot.schema.json", "config-change.schema.json",
    "notification.schema.json",
]


def test_committed_schema_files_equal_what_export_generates_now() -> None:
    for name, text in rendered_schemas().items():
        assert (SCHEMA_DIR / name).read_text(encoding="utf-8") == text, f"{name} is stale: run python -m schemas.export"
    assert stale_files() == []


def test_export_writes_the_event_schemas_and_one_per_topic_message() -> None:
    assert sorted(rendered_schemas()) == sorted(SCHEMA_FILES)


def test_schema_files_are_pretty_sorted_json_with_a_trailing_newline() -> None:
    for name, text in rendered_schemas().items():
        parsed = json.loads(text)
        assert text == json.dumps(parsed, indent=2, sort_keys=True, ensure_ascii=False) + "\n", name
        assert parsed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_union_schema_discriminates_on_type() -> None:
    union = json.loads(rendered_schemas()["event.schema.json"])
    assert union["discriminator"]["propertyName"] == "type"
    assert set(union["discriminator"]["mapping"]) == {"deal", "activity"}
    assert {"DealEvent", "ActivityEvent", "Split"} <= set(union["$defs"])


def test_deal_schema_states_the_contract_rules() -> None:
    deal = json.loads(rendered_schemas()["deal-event.schema.json"])
    assert deal["additionalProperties"] is False
    assert set(deal["required"]) == {"event_id", "type", "occurred_at", "deal_id", "owner_id", "stage", "amount"}
    assert deal["then"]["required"] == ["closed_at"]
    assert deal["properties"]["occurred_at"]["format"] == "date-time"
    assert [branch["type"] for branch in deal["properties"]["amount"]["anyOf"]] == ["number", "string"]


def test_check_exits_1_naming_stale_and_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(tmp_path)]) == 0
    assert main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "deal-event.schema.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "event.schema.json").unlink()
    capsys.readouterr()

    assert main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "deal-event.schema.json" in err and "event.schema.json" in err
    assert "activity-event.schema.json" not in err


def test_export_rewrites_only_what_changed(tmp_path: Path) -> None:
    assert sorted(path.name for path in write_schemas(tmp_path)) == sorted(SCHEMA_FILES)
    assert write_schemas(tmp_path) == []
    (tmp_path / "activity-event.schema.json").write_text("{}\n", encoding="utf-8")
    assert [path.name for path in write_schemas(tmp_path)] == ["activity-event.schema.json"]
    assert stale_files(tmp_path) == []
