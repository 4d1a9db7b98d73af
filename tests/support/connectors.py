"""Helpers of the CRM connector tests: twin contract events, KPIs side by side, the connectors' state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

import httpx

from tests.support.stack import ROOT, Stack, wait_until

__all__ = [
    "CLOSED", "DAY", "Twin", "connect", "connectors", "drained", "kpis", "metric", "revenue", "same_as_twins",
    "summary",
]

DAY = "2026-12-05"
CLOSED = "2026-12-05T10:00:00Z"
PERIODS = (("month", DAY), ("quarter", DAY), ("year", DAY))


_TWIN_DEALS: dict[str, dict[str, dict[str, Any]]] = {}
"""Per stack (topic prefix): each twin deal's latest event, for what the twins' own KPIs must be."""


class Twin:
    """The same deals told as contract events, for reps `twin-<rep>`; every deal closes on DAY."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.version = 0
        self.deals = _TWIN_DEALS.setdefault(stack.topic_prefix, {})

    def deal(self, deal_id: str, owner: str, stage: str, amount: str, **more: Any) -> None:
        self.version += 1
        event = {"event_id": f"twin-{deal_id}-{self.version}", "type": "deal", "occurred_at": CLOSED,
                 "deal_id": f"twin-{deal_id}", "version": self.version, "owner_id": f"twin-{owner}",
                 "stage": stage, "amount": amount, **more}
        if stage != "open":
            event.setdefault("closed_at", CLOSED)
        answer = httpx.post(f"{self.stack.ingest}/v1/events", json=event, headers=self.stack.headers, timeout=10)
        assert answer.status_code == 202, answer.text
        self.deals[deal_id] = event


def twin_expectation(stack: Stack, rep: str) -> dict[str, float]:
    """What the twin rep's revenue, won and lost deals must be in DAY's month, from the twin events posted."""
    sums = {"revenue": Decimal(0), "deals_won": Decimal(0), "deals_lost": Decimal(0)}
    for event in _TWIN_DEALS.get(stack.topic_prefix, {}).values():
        splits = event.get("splits") or [{"rep_id": event["owner_id"], "share": "1"}]
        for split in splits:
            if split["rep_id"] != f"twin-{rep}":
                continue
            share = Decimal(split["share"])
            if event["stage"] == "won":
                sums["revenue"] += Decimal(event["amount"]) * share
                sums["deals_won"] += share
            elif event["stage"] == "lost":
                sums["deals_lost"] += share
    return {name: float(value) for name, value in sums.items()}


def _twin_caught_up(stack: Stack, rep: str, found: dict[str, Any]) -> bool:
    expected = twin_expectation(stack, rep)
    month = found["month"]
    if not isinstance(month, dict):  # 404: no events at all
        return not any(expected.values())
    return all(abs(float(month[name]) - value) < 0.005 for name, value in expected.items())


def kpis(stack: Stack, rep: str) -> dict[str, Any]:
    found = {}
    for period, day in PERIODS:
        answer = httpx.get(f"{stack.api}/v1/reps/{rep}/kpis", params={"period": period, "date": day},
                           headers=stack.headers, timeout=10)
        found[period] = answer.json()["kpis"] if answer.status_code == 200 else answer.status_code
    return found


def same_as_twins(stack: Stack, *reps: str, what: str) -> None:
    def probe() -> bool:
        for rep in reps:
            twin = kpis(stack, f"twin-{rep}")
            if not _twin_caught_up(stack, rep, twin) or kpis(stack, rep) != twin:
                return False
        return True

    try:
        wait_until(probe, timeout=30, what=what)
    except AssertionError:
        detail = {rep: (kpis(stack, rep), kpis(stack, f"twin-{rep}")) for rep in reps}
        raise AssertionError(f"{what}: {json.dumps(detail)[:2000]}\n{stack.tail('ingest')}") from None


def connectors(stack: Stack) -> dict[str, dict[str, Any]]:
    answer = httpx.get(f"{stack.ingest}/v1/connectors", headers=stack.headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return {c["connector"]: c for c in answer.json()["connectors"]}


def drained(stack: Stack, name: str) -> None:
    wait_until(lambda: connectors(stack)[name]["pending"] == 0, timeout=30, what=f"{name} inbox drained")


def metric(stack: Stack, name: str, **labels: str) -> float:
    text = httpx.get(f"{stack.ingest}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
        elif not labels and line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def connect(stack: Stack, crm: str, *args: str, **env: str) -> subprocess.Popen[str]:
    """`salespulse connect CRM --backfill ...` as an admin runs it, in its own process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SALESPULSE_")}
    clean.update({"SALESPULSE_DATA_DIR": str(stack.data_dir / "cli"), **env})
    command = [sys.executable, "-m", "services.cli.main", "connect", crm, "--backfill", "--ingest-url", stack.ingest,
               "--key", stack.admin_key, *args]
    return subprocess.Popen(command, env=clean, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def summary(out: str) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[1].replace(",", "")) for line in out.splitlines()
            if line.split() and line.split()[0] in ("read", "accepted", "duplicates", "rejected")}


def revenue(stack: Stack, rep: str, day: str = "2026-11-10") -> float:
    """The rep's revenue in the month of `day` (-1 when the rep has no KPIs at all)."""
    answer = httpx.get(f"{stack.api}/v1/reps/{rep}/kpis", params={"period": "month", "date": day},
                       headers=stack.headers, timeout=10)
    return answer.json()["kpis"]["revenue"] if answer.status_code == 200 else -1.0
