"""Deal snapshots: the state of one opportunity as a CRM sent it, and the rule that orders them.

A snapshot is stale when its order key `(version or 0, occurred_at, event_id)` is not greater than the
last one applied for the same deal (CONTRACT §1, Ordering).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, get_args

import msgspec
from msgspec.structs import force_setattr

from schemas.kpis import OVERLAY, PRIMARY

__all__ = [
    "DEAL_KINDS", "DEAL_STAGES", "DealEvent", "DealKind", "DealSnapshot", "DealSplit", "DealStage", "OrderKey",
    "is_newer",
]

DealStage = Literal["open", "won", "lost"]
DealKind = Literal["new", "renewal", "expansion"]
DEAL_STAGES: Final[tuple[DealStage, ...]] = get_args(DealStage)
DEAL_KINDS: Final[tuple[DealKind, ...]] = get_args(DealKind)

OrderKey = tuple[int, datetime, str]

_ONE: Final = Decimal(1)
_UTC: Final = UTC


def _decimal(value: Any) -> Decimal:
    """An exact Decimal from a Decimal, a string or a JSON number (through its shortest repr, never binary)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _require_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a datetime with a UTC offset, got {value!r}")


class DealSnapshot(msgspec.Struct, frozen=True, gc=False):
    """One opportunity as of one deal event; `splits` (the primary credit) defaults to the owner at 100 %.

    `overlays` credit other reps (specialists) their share of the deal on top of the primary credit, which
    they do not reduce (CONTRACT §1, Overlay credit).

    Immutable, compared and hashed by value like a frozen dataclass; a msgspec Struct because the deal agent
    builds one per event (built several times faster than a frozen dataclass: docs/BENCHMARKS.md)."""

    deal_id: str
    event_id: str
    version: int | None
    occurred_at: datetime
    owner_id: str
    stage: DealStage
    amount: Decimal
    closed_at: datetime | None = None
    splits: tuple[tuple[str, Decimal], ...] = ()
    kind: DealKind = "new"
    overlays: tuple[tuple[str, Decimal], ...] = ()
    currency: str | None = None
    """The deal's ISO 4217 currency; None means the reporting currency (services/scoring/domain/fx.py)."""

    def __post_init__(self) -> None:
        if self.stage not in DEAL_STAGES:
            raise ValueError(f"stage must be one of {', '.join(DEAL_STAGES)}, got {self.stage!r}")
        if self.kind not in DEAL_KINDS:
            raise ValueError(f"kind must be one of {', '.join(DEAL_KINDS)}, got {self.kind!r}")
        if self.version is not None and (isinstance(self.version, bool) or self.version < 0):
            raise ValueError(f"version must be an integer ≥ 0 or None, got {self.version!r}")
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite() or self.amount < 0:
            raise ValueError(f"amount must be a finite Decimal ≥ 0, got {self.amount!r}")
        _require_aware("occurred_at", self.occurred_at)
        if self.closed_at is not None:
            _require_aware("closed_at", self.closed_at)
        elif self.stage != "open":
            raise ValueError(f"closed_at is required when the stage is {self.stage}")
        if not self.splits:
            force_setattr(self, "splits", ((self.owner_id, _ONE),))
        else:
            splits = tuple((rep_id, share) for rep_id, share in self.splits)
            for rep_id, share in splits:
                if not isinstance(share, Decimal) or not share.is_finite() or share <= 0:
                    raise ValueError(f"the share of {rep_id!r} must be a Decimal > 0, got {share!r}")
            force_setattr(self, "splits", splits)
        if self.overlays:
            overlays = tuple((rep_id, share) for rep_id, share in self.overlays)
            for rep_id, share in overlays:
                if not isinstance(share, Decimal) or not share.is_finite() or not 0 < share <= _ONE:
                    raise ValueError(f"the overlay share of {rep_id!r} must be a Decimal in (0, 1], got {share!r}")
            force_setattr(self, "overlays", overlays)
        elif self.overlays != ():  # none, as a tuple (an empty list would make the snapshot unhashable)
            force_setattr(self, "overlays", ())

    def order_key(self) -> OrderKey:
        """`(version or 0, occurred_at, event_id)`, with `occurred_at` in UTC so instants compare exactly."""
        return (self.version or 0, self.occurred_at.astimezone(_UTC), self.event_id)

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-safe form (decimals and timestamps as strings; defaults left out)."""
        data: dict[str, Any] = {
            "deal_id": self.deal_id,
            "event_id": self.event_id,
            "occurred_at": self.occurred_at.isoformat(),
            "owner_id": self.owner_id,
            "stage": self.stage,
            "amount": str(self.amount),
        }
        if self.version is not None:
            data["version"] = self.version
        if self.closed_at is not None:
            data["closed_at"] = self.closed_at.isoformat()
        if self.splits != ((self.owner_id, _ONE),):
            data["splits"] = [[rep_id, str(share)] for rep_id, share in self.splits]
        if self.kind != "new":
            data["kind"] = self.kind
        if self.overlays:
            data["overlays"] = [[rep_id, str(share)] for rep_id, share in self.overlays]
        if self.currency is not None:
            data["currency"] = self.currency
        return data

    def rep_ids(self) -> list[str]:
        """Every rep the snapshot credits, primary then overlay, each once."""
        return list(dict.fromkeys(rep_id for rep_id, _ in self.splits + self.overlays))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DealSnapshot:
        """Rebuild a snapshot from `to_dict()` output (splits and overlays as `[rep_id, share]` pairs)."""
        try:
            closed_at = data.get("closed_at")
            return cls(
                deal_id=data["deal_id"],
                event_id=data["event_id"],
                version=data.get("version"),
                occurred_at=datetime.fromisoformat(data["occurred_at"]),
                owner_id=data["owner_id"],
                stage=data["stage"],
                amount=_decimal(data["amount"]),
                closed_at=datetime.fromisoformat(closed_at) if closed_at else None,
                splits=tuple((rep_id, _decimal(share)) for rep_id, share in data.get("splits", ())),
                kind=data.get("kind") or "new",
                overlays=tuple((rep_id, _decimal(share)) for rep_id, share in data.get("overlays", ())),
                currency=data.get("currency"),
            )
        except (KeyError, TypeError, InvalidOperation) as exc:
            raise ValueError(f"not a deal snapshot: {exc!r}") from exc

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> DealSnapshot:
        """A snapshot from a deal event's canonical JSON, parsed (see `DealEvent`)."""
        try:
            parsed = msgspec.convert(event, DealEvent)
        except msgspec.ValidationError as exc:
            raise ValueError(f"not a deal snapshot: {exc}") from exc
        return parsed.snapshot()


class DealSplit(msgspec.Struct, frozen=True, gc=False):
    """One rep's share of a deal event's credit (CONTRACT §1: role `primary` when absent, or `overlay`)."""

    rep_id: str
    share: Decimal
    role: str = PRIMARY


class DealEvent(msgspec.Struct, frozen=True, gc=False):
    """The fields of a deal event (CONTRACT §1) a snapshot is made of, as msgspec reads them from the event's JSON
    (its other fields pass unread): the deal agent decodes the ledger's envelopes straight into it."""

    deal_id: str
    event_id: str
    occurred_at: datetime
    owner_id: str
    stage: DealStage
    amount: Decimal
    version: int | None = None
    closed_at: datetime | None = None
    splits: tuple[DealSplit, ...] | None = None
    kind: DealKind | None = None
    currency: str | None = None

    def snapshot(self) -> DealSnapshot:
        """The event's snapshot: its primary splits (none: the owner at 100 %) and overlays apart; ValueError when
        it is not a valid one."""
        splits = self.splits or ()
        return DealSnapshot(
            self.deal_id,
            self.event_id,
            self.version,
            self.occurred_at,
            self.owner_id,
            self.stage,
            self.amount,
            self.closed_at,
            tuple((split.rep_id, split.share) for split in splits if split.role == PRIMARY),
            self.kind or "new",
            tuple((split.rep_id, split.share) for split in splits if split.role == OVERLAY),
            self.currency,
        )


def is_newer(candidate: DealSnapshot, applied: DealSnapshot | None) -> bool:
    """True when `candidate` should replace `applied`: nothing applied yet, or a greater order key."""
    if applied is None:
        return True
    if candidate.deal_id != applied.deal_id:
        raise ValueError(f"cannot order snapshots of different deals: {candidate.deal_id!r}, {applied.deal_id!r}")
    return candidate.order_key() > applied.order_key()
