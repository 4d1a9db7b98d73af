"""The KPI names of CONTRACT §3 and the activity-kind token of §1, the one definition every layer checks
against: event and configuration validation (schemas/) and the pure core (services/scoring/domain/)."""

from __future__ import annotations

import functools
import re
from typing import Final, Literal, get_args

__all__ = ["ACTIVITY_KIND_PATTERN", "ACTIVITY_KIND_REGEX", "ACTIVITY_PREFIX", "ALL_ROLES", "CREDIT_ROLES", "KPI_NAMES",
           "OVERLAY", "PRIMARY", "PRIMARY_ONLY", "ROLLUP_METRICS", "CreditRole", "is_activity_kind", "is_kpi_name"]

KPI_NAMES: Final[tuple[str, ...]] = (
    "revenue",
    "deals_won",
    "deals_lost",
    "win_rate",
    "avg_deal_size",
    "renewals_won",
    "renewals_lost",
    "retention_rate",
    "activities",
)
"""Every KPI but the per-kind activity counts, in report order."""

CreditRole = Literal["primary", "overlay"]
CREDIT_ROLES: Final[tuple[CreditRole, ...]] = get_args(CreditRole)
"""The roles a deal credits a rep in (docs/plans-and-boards.md, Overlay credit): the deal's split, or a
specialist's share on top of it."""
PRIMARY, OVERLAY = CREDIT_ROLES
ALL_ROLES: Final[frozenset[str]] = frozenset(CREDIT_ROLES)
"""A rep's own KPIs count every role by default."""
PRIMARY_ONLY: Final[frozenset[str]] = frozenset({PRIMARY})
"""A team's KPIs count the primary credit only by default, so overlays never inflate the team's revenue."""
ROLLUP_METRICS: Final[tuple[str, ...]] = (
    "revenue", "deals_won", "deals_lost", "win_rate", "avg_deal_size", "renewals_won", "renewals_lost",
    "retention_rate",
)
"""The KPIs a manager's team roll-up holds: those of deal credit (activities are counted for reps only)."""

ACTIVITY_KIND_REGEX: Final = r"^[a-z][a-z0-9_]{0,31}$"
"""A lowercase activity token such as `call` or `demo_booked` (for pydantic `pattern=`)."""
ACTIVITY_KIND_PATTERN: Final = re.compile(ACTIVITY_KIND_REGEX.strip("^$"))
ACTIVITY_PREFIX: Final = "activities."


def is_activity_kind(kind: str) -> bool:
    """True for a lowercase activity token such as `call` or `demo_booked`."""
    return isinstance(kind, str) and _matches_activity_kind(kind)


@functools.lru_cache(maxsize=4096)  # asked for every activity scored; a floor has a handful of kinds
def _matches_activity_kind(kind: str) -> bool:
    return ACTIVITY_KIND_PATTERN.fullmatch(kind) is not None


def is_kpi_name(name: str) -> bool:
    """True for a KPI of CONTRACT §3, including `activities.<kind>` for a valid kind."""
    if name in KPI_NAMES:
        return True
    return isinstance(name, str) and name.startswith(ACTIVITY_PREFIX) and is_activity_kind(name[len(ACTIVITY_PREFIX):])
