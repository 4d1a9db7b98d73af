"""schemathesis against the ingest and gateway OpenAPI documents, on real processes: no 5xx, and every
response (status code, content type, body) exactly as the document declares it.

The run is derandomised (schemathesis' deterministic mode) and bounded per operation, so the same code
gives the same cases; the figures are printed and recorded in docs/security.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import Stack, sqlite_stack

pytestmark = pytest.mark.integration

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# Cases per operation: ingest has two keyed operations, so each gets more; the gateway has two dozen.
MAX_EXAMPLES = {"ingest": 15, "api": 6}
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The stack on SQLite (scoring too: the gateway is ready only once the pipeline has caught up)."""
    stack = sqlite_stack(broker, tmp_path_factory, "st")
    stack.start()
    yield stack
    stack.stop()


def run_schemathesis(base_url: str, key: str, max_examples: int, report: Path) -> dict[str, Any]:
    """`st run` as a user would run it; returns its JSON report."""
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(max_examples),
        "--generation-deterministic",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    # Its cache and example database go beside the report, not into the repository.
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=report.parent)
    if not report.exists():
        raise AssertionError(f"schemathesis wrote no report (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(report.read_text())
    result["output"] = done.stdout
    return result


@pytest.mark.parametrize("service", ["ingest", "api"])
def test_openapi_document_holds_for_every_generated_case(
    stack: Stack, service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_url = stack.ingest if service == "ingest" else stack.api
    result = run_schemathesis(base_url, stack.admin_key, MAX_EXAMPLES[service], tmp_path / "report.json")
    operations, cases = result["operations"], result["test_cases"]
    failures = sum(failure["count"] for failure in result["failures"])
    with capsys.disabled():
        print(
            f"\nschemathesis {service}: {operations['tested']} operations, {cases['generated']} cases tried, "
            f"{failures} failures, {len(result['errors'])} errors, {result['running_time']:.0f} s"
        )
    assert (failures, result["errors"]) == (0, []), result["output"][-6000:]
    assert result["exit_code"] == 0, result["output"][-6000:]
    assert operations["tested"] == operations["total"] > 0
    assert cases["generated"] > 0 and cases["errored"] == 0
    for service_name in ("ingest", "api"):
        assert stack.services[service_name].proc.poll() is None, stack.tail(service_name)
