"""Deal snapshots for property tests: one deal's snapshots with close times on period edges (some the same
instant in two offsets), splits that sum to 1, overlays, any stage and kind."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from services.scoring.domain.credits import CREDIT_MEASURES, Credit
from services.scoring.domain.deals import DEAL_KINDS, DEAL_STAGES, DealSnapshot, DealStage

__all__ = [
    "CLOSE_TIMES", "OCCURRED", "REPS", "Totals", "amounts", "deal_snapshot_lists", "fold", "snapshot", "split_lists",
]

REPS = ["ana", "ben", "cy", "dee"]
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = timezone(timedelta(hours=-5))
# Close times on both sides of month, quarter and fiscal-year edges, some the same instant in two offsets.
CLOSE_TIMES = [
    datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
    datetime(2026, 2, 1, 0, 30, tzinfo=BERLIN),  # = 2026-01-31 23:30 UTC
    datetime(2026, 2, 1, 9, tzinfo=UTC),
    datetime(2026, 3, 31, 22, tzinfo=NEW_YORK),
    datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
]
OCCURRED = [
    datetime(2026, 1, 1, 9, tzinfo=UTC),
    datetime(2026, 1, 1, 10, tzinfo=BERLIN),  # = 09:00 UTC
    datetime(2026, 1, 2, 9, tzinfo=UTC),
    datetime(2026, 1, 2, 3, tzinfo=NEW_YORK),  # = 08:00 UTC, earlier than the line above
]

def snapshot(
    stage: str = "won",
    *,
    amount: str = "1000.00",
    closed_at: datetime | None = CLOSE_TIMES[2],
    owner_id: str = "ana",
    splits: tuple[tuple[str, Decimal], ...] = (),
    overlays: tuple[tuple[str, Decimal], ...] = (),
    kind: str = "new",
    version: int | None = 1,
    event_id: str = "e1",
    occurred_at: datetime = OCCURRED[0],
) -> DealSnapshot:
    return DealSnapshot(
        deal_id="deal-1",
        event_id=event_id,
        version=version,
        occurred_at=occurred_at,
        owner_id=owner_id,
        stage=stage,  # type: ignore[arg-type]
        amount=Decimal(amount),
        closed_at=closed_at,
        splits=splits,
        kind=kind,  # type: ignore[arg-type]
        overlays=overlays,
    )


@st.composite
def split_lists(draw: st.DrawFn) -> tuple[tuple[str, Decimal], ...]:
    """No splits (owner 100 %), or 1–4 reps with positive shares that sum to exactly 1."""
    reps = draw(st.lists(st.sampled_from(REPS), min_size=0, max_size=4, unique=True))
    if not reps:
        return ()
    weights = [draw(st.integers(min_value=1, max_value=100)) for _ in reps]
    total = Decimal(sum(weights))
    shares = [(Decimal(weight) / total).quantize(Decimal("1e-10")) for weight in weights[:-1]]
    shares.append(Decimal(1) - sum(shares, Decimal(0)))
    return tuple(zip(reps, shares, strict=True))


@st.composite
def overlay_lists(draw: st.DrawFn) -> tuple[tuple[str, Decimal], ...]:
    """No overlays, or 1–2 overlay reps (other than the split reps' names) with shares in (0, 1]."""
    reps = draw(st.lists(st.sampled_from(["se", "pm"]), max_size=2, unique=True))
    return tuple((rep, Decimal(draw(st.integers(min_value=1, max_value=1000))) / 1000) for rep in reps)


amounts = st.integers(min_value=0, max_value=10**9).map(lambda cents: Decimal(cents).scaleb(-2))


@st.composite
def deal_snapshot_lists(draw: st.DrawFn) -> list[DealSnapshot]:
    """Up to six distinct snapshots of one deal, each with its own event_id."""
    count = draw(st.integers(min_value=1, max_value=6))
    snapshots = []
    for index in range(count):
        stage: DealStage = draw(st.sampled_from(DEAL_STAGES))
        closed_at: datetime | None = draw(st.sampled_from(CLOSE_TIMES))
        if stage == "open":
            closed_at = draw(st.one_of(st.none(), st.just(closed_at)))
        snapshots.append(
            DealSnapshot(
                deal_id="deal-1",
                event_id=f"e{index}",
                version=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=3))),
                occurred_at=draw(st.sampled_from(OCCURRED)),
                owner_id=draw(st.sampled_from(REPS)),
                stage=stage,
                amount=draw(amounts),
                closed_at=closed_at,
                splits=draw(split_lists()),
                kind=draw(st.sampled_from(DEAL_KINDS)),
                overlays=draw(overlay_lists()),
            )
        )
    return snapshots


Totals = dict[tuple[str, datetime, bool], tuple[Decimal, ...]]


def fold(credits: Iterable[Credit]) -> Totals:
    """Sum credits per (rep, instant, overlay or not), dropping sums that cancel to zero."""
    sums: dict[tuple[str, datetime, bool], list[Decimal]] = {}
    for credit in credits:
        measures = sums.setdefault((credit.rep_id, credit.at.astimezone(UTC), credit.overlay), [Decimal(0)] * 5)
        for i, name in enumerate(CREDIT_MEASURES):
            measures[i] += getattr(credit, name)
    return {key: tuple(values) for key, values in sums.items() if any(values)}
