"""Deliberate crashes at named points of the scoring agents, so fault tests can hit the risky orders exactly.

`SALESPULSE_SCORING_CRASH_AT=deal-state:credits-sent:2` makes the worker kill itself with SIGKILL right after
the second batch of the deal-state agent has its credits acknowledged and before its table write. The points
are listed in `POINTS`. A test-only hook: unset (the default), `reached` is one attribute test per batch.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Final

__all__ = ["POINTS", "CrashPoints"]

log = logging.getLogger("salespulse.scoring")

ENV: Final = "SALESPULSE_SCORING_CRASH_AT"

POINTS: Final = frozenset(
    {
        "deal-state:credits-sent",  # credits acknowledged; deal table not written; events not acknowledged
        "deal-state:table-written",  # deal table in the changelog; events not acknowledged (offsets behind)
        "rep-kpis:state-written",  # rep table acknowledged; no history, no snapshots; events not acknowledged
        "rep-kpis:history-written",  # evictions in SQL history; no snapshots; events not acknowledged
        "rep-kpis:days-written",  # minute days written and deleted; no snapshots; events not acknowledged
        "rollup:pending-written",  # a roll-up reconcile's deals stored with their move pending; nothing sent
        "rollup:credits-sent",  # its credits acknowledged; the deals not yet stored with the move done
    }
)


class CrashPoints:
    """Counts the batches that pass the configured point and SIGKILLs the process at the n-th."""

    def __init__(self, spec: str | None = None) -> None:
        spec = os.environ.get(ENV, "") if spec is None else spec
        self.point: str | None = None
        self.at = 0
        self._seen = 0
        if spec:
            name, _, count = spec.rpartition(":")
            if name not in POINTS or not count.isdigit() or int(count) < 1:
                raise ValueError(f"{ENV}={spec!r}: expected POINT:N with N ≥ 1 and POINT one of {sorted(POINTS)}")
            self.point, self.at = name, int(count)

    def reached(self, point: str) -> None:
        if self.point != point:
            return
        self._seen += 1
        if self._seen == self.at:
            log.warning("crash point %s reached at batch %d: killing the worker", point, self._seen)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)
