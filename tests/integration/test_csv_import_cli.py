"""`salespulse import` as a user runs it: the real CLI in a subprocess against a running ingest service."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.stack import ROOT, Stack

pytestmark = pytest.mark.integration

CRM_MAPPING = ROOT / "services" / "ingest" / "mappings" / "crm-sales-pipeline.yaml"
HEADER = "opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value"
PIPELINE = [
    "A1,Moses Frase,GTX Plus Basic,Cancity,Won,2016-10-20,2017-03-01,1054",
    "A2,Darcel Schlecht,GTXPro,,Engaging,2016-10-25,,",
    "A3,Anna Snelling,MG Special,Bioholding,Lost,2016-11-04,2017-03-10,0",
    "A4,Anna Snelling,GTX Basic,Green-Plus,Prospecting,,,",
    "A5,Anna Snelling,GTX Basic,Green-Plus,Negotiating,2016-11-04,2017-03-10,53",
    "A6,Moses Frase,GTX Basic,Cancity,Won,2016-10-20,2017-02-30,588",
    "A7,,GTX Basic,Cancity,Won,2016-10-20,2017-03-09,588",
]


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def salespulse_import(
    stack: Stack, csv_path: Path, mapping: Path, *extra: str, key: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `salespulse import` as a separate process, with no SALESPULSE_* settings but those given."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("SALESPULSE_")}
    clean.update({"SALESPULSE_DATA_DIR": str(csv_path.parent / "cli-data"), **env})
    command = [sys.executable, "-m", "services.cli.main", "import", str(csv_path), "--type", "deal"]
    command += ["--mapping", str(mapping), "--ingest-url", stack.ingest, *extra]
    if key:
        command += ["--key", stack.admin_key]
    return subprocess.run(command, capture_output=True, text=True, env=clean, cwd=ROOT, timeout=120)


def stored(stack: Stack, event_id: str) -> dict[str, Any] | None:
    response = httpx.get(f"{stack.ingest}/v1/events/{event_id}", headers=stack.headers, timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def rejects(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def counts(stdout: str) -> dict[str, int]:
    """The summary's `accepted`, `duplicates`, `skipped` and `rejected` lines as numbers."""
    found = {}
    for line in stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("accepted", "duplicates", "skipped", "rejected"):
            found[words[0]] = int(words[1].replace(",", ""))
    return found


@pytest.fixture
def stack(stack_factory: Any, database_url: str) -> Stack:
    stack: Stack = stack_factory(database_url)
    stack.prepare()
    stack.start_service("ingest")
    stack.wait_healthy("ingest", "/v1/health")
    return stack


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_import_posts_valid_rows_rejects_bad_ones_and_a_second_run_is_all_duplicates(
    stack: Stack, tmp_path: Path
) -> None:
    pipeline = write_csv(tmp_path / "pipeline.csv", PIPELINE)
    rejects_path = tmp_path / "pipeline.rejects.csv"

    dry = salespulse_import(stack, pipeline, CRM_MAPPING, "--dry-run", key=False)
    assert dry.returncode == 1, dry.stderr
    assert "3 rows would be sent" in dry.stdout
    assert stored(stack, "crm-A1-won") is None
    assert [row["line"] for row in rejects(rejects_path)] == ["6", "7", "8"]

    first = salespulse_import(stack, pipeline, CRM_MAPPING)
    assert first.returncode == 1, first.stdout + first.stderr
    assert counts(first.stdout) == {"accepted": 3, "duplicates": 0, "skipped": 1, "rejected": 3}
    assert "pipeline.csv [########################] 7/7 rows 100%" in first.stderr
    assert [(row["opportunity_id"], row["line"], row["reason"]) for row in rejects(rejects_path)] == [
        (
            "A5",
            "6",
            "version: 'Negotiating' is not in the value map (known: Prospecting, Engaging, Won, Lost); "
            "stage: 'Negotiating' is not in the value map (known: Won, Lost, Engaging, Prospecting)",
        ),
        (
            "A6",
            "7",
            "occurred_at: '2017-02-30' is not a date/time in the format %Y-%m-%d; "
            "closed_at: '2017-02-30' is not a date/time in the format %Y-%m-%d",
        ),
        ("A7", "8", "owner_id is required (column sales_agent is empty)"),
    ]

    won = stored(stack, "crm-A1-won")
    assert won is not None
    assert won["event"] == {
        "event_id": "crm-A1-won",
        "type": "deal",
        "occurred_at": "2017-03-01T12:00:00Z",
        "source": "csv",
        "deal_id": "A1",
        "version": 2,
        "owner_id": "moses-frase",
        "stage": "won",
        "amount": "1054.00",
        "closed_at": "2017-03-01T12:00:00Z",
        "kind": "new",
        "customer_id": "cancity",
    }
    opened = stored(stack, "crm-A2-engaging")
    assert opened is not None
    assert (opened["event"]["stage"], opened["event"]["version"], opened["event"]["amount"]) == ("open", 1, "4821.00")
    lost = stored(stack, "crm-A3-lost")
    assert lost is not None and lost["event"]["stage"] == "lost"
    for never_sent in ("crm-A4-prospecting", "crm-A5-negotiating", "crm-A6-won", "crm-A7-won"):
        assert stored(stack, never_sent) is None

    second = salespulse_import(stack, pipeline, CRM_MAPPING)
    assert second.returncode == 1
    assert counts(second.stdout) == {"accepted": 0, "duplicates": 3, "skipped": 1, "rejected": 3}

    fixed = write_csv(tmp_path / "fixed.csv", PIPELINE[:4])
    third = salespulse_import(stack, fixed, CRM_MAPPING)
    assert third.returncode == 0, third.stdout + third.stderr
    assert counts(third.stdout) == {"accepted": 0, "duplicates": 3, "skipped": 1, "rejected": 0}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_changed_row_reusing_an_accepted_event_id_is_reported_as_a_409_conflict(stack: Stack, tmp_path: Path) -> None:
    first = salespulse_import(stack, write_csv(tmp_path / "v1.csv", PIPELINE[:3]), CRM_MAPPING)
    assert first.returncode == 0, first.stdout + first.stderr

    changed = [PIPELINE[0].replace(",1054", ",1100"), *PIPELINE[1:3]]
    second = salespulse_import(stack, write_csv(tmp_path / "v2.csv", changed), CRM_MAPPING)
    assert second.returncode == 1
    assert counts(second.stdout) == {"accepted": 0, "duplicates": 2, "skipped": 0, "rejected": 1}
    assert "reuse an event_id already accepted with different data (409): crm-A1-won (line 2)" in second.stdout
    [conflict] = rejects(tmp_path / "v2.rejects.csv")
    assert conflict["opportunity_id"] == "A1" and conflict["close_value"] == "1100"
    assert "event_id crm-A1-won was already accepted with a different body (409)" in conflict["reason"]
    still = stored(stack, "crm-A1-won")
    assert still is not None and still["event"]["amount"] == "1054.00"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_rows_ingest_refuses_go_to_the_rejects_file_and_the_rest_of_the_batch_is_accepted(
    stack: Stack, tmp_path: Path
) -> None:
    # The CLI checks what a row says, not when: ingest refuses timestamps past its accept window (CONTRACT §1), so a
    # row closing in 2099 passes the local check and only ingest's 422 can catch it.
    rows = [PIPELINE[0].replace("2017-03-01", "2099-03-01"), *PIPELINE[1:3]]
    path = write_csv(tmp_path / "late.csv", rows, header=HEADER)

    result = salespulse_import(stack, path, CRM_MAPPING, key=False, SALESPULSE_API_KEY=stack.admin_key)
    assert result.returncode == 1, result.stdout + result.stderr
    assert counts(result.stdout) == {"accepted": 2, "duplicates": 0, "skipped": 0, "rejected": 1}
    [refused] = rejects(tmp_path / "late.rejects.csv")
    assert refused["opportunity_id"] == "A1"
    assert refused["reason"].startswith("ingest: ") and "must not be after" in refused["reason"], refused
    assert stored(stack, "crm-A1-won") is None
    assert stored(stack, "crm-A2-engaging") is not None
