"""The messages services exchange on the topics (DESIGN.md, "Topics"), one model per topic.

Each topic is written by one service and read by the others only through these models: a reader never
rebuilds the writer's internal classes. `decode` raises `UnreadableMessage` for anything that is not a
valid message, so the reader can move the record to the dead-letter topic and go on. The JSON Schema files
in schemas/json/ are generated from these models (`python -m schemas.export`; a test keeps them in sync).

| topic | model | written by | read by |
|---|---|---|---|
| `events.deals`, `events.activities` | `EventEnvelope` | ingest relay | scoring |
| `credits` | `CreditsMessage` | scoring's deal-state agent | scoring's rep agent |
| `rep-snapshots` | `RepSnapshot` | scoring's rep agent | gateway, notifier |
| `config` | `ConfigChange` | gateway admin routes | scoring, notifier, gateway |
| `notifications` | `NotificationMessage` (`InAppNotification` or `Celebration`) | notifier | gateway |
| `dead-letter` | the unreadable record as it was | any reader | operators |
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from schemas.config import Achievement, Board, ChatRoute, FxRates, Plan, Rep, Streak, Team

__all__ = [
    "CONFIG_DOCUMENTS",
    "AchievementRefModel",
    "StreakRefModel",
    "MESSAGE_MODELS",
    "Celebration",
    "ConfigChange",
    "CreditLine",
    "CreditsMessage",
    "EventEnvelope",
    "InAppNotification",
    "NotificationMessage",
    "PeriodKindName",
    "PlanProgressEntry",
    "RepProgress",
    "RepSnapshot",
    "TierRefModel",
    "Totals",
    "UnreadableMessage",
    "decode",
    "decode_notification",
    "encode",
]

PeriodKindName = Literal["day", "week", "month", "quarter", "year"]
ConfigKind = Literal["rep", "team", "plan", "board", "fx", "achievement", "streak", "chat"]
Money = Annotated[Decimal, Field(description="exact decimal, written as a string")]
CONFIG_DOCUMENTS: dict[str, type[BaseModel]] = {
    "rep": Rep, "team": Team, "plan": Plan, "board": Board, "fx": FxRates, "achievement": Achievement,
    "streak": Streak, "chat": ChatRoute,
}
"""The document model of each configuration kind."""


class UnreadableMessage(ValueError):
    """A record that is not a valid message of its topic's model; the reader dead-letters it."""


class _Message(BaseModel):
    # Frozen values; unknown fields pass (a newer writer may add one) but are not kept.
    model_config = ConfigDict(frozen=True, extra="ignore")


class EventEnvelope(_Message):
    """A ledger event on `events.deals` (key deal_id) or `events.activities` (key rep_id), written by the relay.

    `event` is the event exactly as ingest accepted it (CONTRACT §1); the relay writes the envelope around
    the stored body without parsing it again, and scoring reads the body with the event models."""

    seq: int = Field(ge=0, description="ledger sequence number: gapless and increasing per ledger")
    accepted_ms: int = Field(ge=0, description="when ingest accepted the event (Unix ms, system clock)")
    event: dict[str, Any]


class CreditLine(_Message):
    """What one deal snapshot changed for one rep in the period containing `at` (zero measures left out)."""

    rep_id: str
    at: AwareDatetime = Field(description="the close time the credit is attributed to")
    revenue: Money = Decimal(0)
    deals_won: Money = Decimal(0)
    deals_lost: Money = Decimal(0)
    renewals_won: Money = Decimal(0)
    renewals_lost: Money = Decimal(0)
    overlay: bool = Field(False, description="credited as an overlay, on top of the deal's primary credit")
    rollup: bool = Field(False, description="a team member's credit counted for their manager, rep_id")
    currency: str | None = Field(None, description="a deal's credit in its own currency (not the reporting one), "
                                 "counted in that currency's sums only")
    deal_total: Money | None = Field(None, description="the rep's whole revenue credit from the deal after this "
                                     "event (this line's role), for achievements judged on one deal; in no KPI")


class CreditsMessage(_Message):
    """`credits` (key rep_id): the credit deltas one ledger event produced for one rep."""

    src: str = Field(description='the deals partition the event came from, e.g. "deals/3"')
    seq: int = Field(ge=0, description="the ledger sequence of the event: the rep agent's dedup mark")
    accepted_ms: int = Field(0, ge=0)
    credits: list[CreditLine]


class Totals(_Message):
    """KPI sums of one period (CONTRACT §3 before rates are derived); zero sums left out."""

    revenue: Money = Decimal(0)
    deals_won: Money = Decimal(0)
    deals_lost: Money = Decimal(0)
    renewals_won: Money = Decimal(0)
    renewals_lost: Money = Decimal(0)
    activities: int = 0
    activities_by_kind: dict[str, int] = Field(default_factory=dict)
    overlay: Totals | None = Field(None, description="the overlay credit's deal sums, apart from the primary ones")
    team: Totals | None = Field(None, description="a manager's team roll-up: their members' credit, in no KPI "
                                "of the manager's own")
    currencies: dict[str, Totals] | None = Field(None, description="by currency other than the reporting one, the "
                                                 "deal sums of the deals in it, in it (KPIs ?currency=)")


class TierRefModel(_Message):
    """A tier as the API shows it (CONTRACT §6)."""

    tier_id: str
    name: str
    threshold: float


class PlanProgressEntry(_Message):
    """A rep's progress in one plan-period, as `GET /v1/reps/{rep_id}/progress` shows it (CONTRACT §6)."""

    plan_id: str
    period_key: str
    metric: str
    value: float
    quota: float
    attainment: float
    tier: TierRefModel | None
    next_tier: TierRefModel | None
    gap_to_next: float | None
    payout: float
    rewards: list[str]
    pace: float | None
    forecast_attainment: float | None
    closed: bool | None = Field(None, description="the period is closed (its statements are frozen); REST only")
    restated: bool | None = Field(
        None, description="a closed period whose ledger changed after the close: the live value differs from the "
        "frozen statement's, and the difference is carried to the next open statement; REST only"
    )


class RepProgress(_Message):
    """The part of a `rep-snapshots` message the notifier reads: who, which version, progress and tiers reached.

    The same message as `RepSnapshot` (its base), decoded without the KPI totals it does not need."""

    rep_id: str
    version: int = Field(ge=0)
    progress: list[PlanProgressEntry] = Field(default_factory=list, description="plans covering the rep today")
    reached: dict[str, dict[str, dict[str, AwareDatetime]]] = Field(
        default_factory=dict, description="plan_id → period_key → tier_id → when first reached"
    )
    earned: dict[str, dict[str, AwareDatetime]] = Field(
        default_factory=dict, description="achievement_id → period_key (\"window\" for a window rule) → when earned"
    )
    milestones: dict[str, dict[str, dict[str, AwareDatetime]]] = Field(
        default_factory=dict, description="streak_id → first day of the streak → milestone (days) → when reached"
    )
    streaks: dict[str, list[tuple[str, str]]] = Field(
        default_factory=dict, description="streak_id → the rep's qualifying days as runs [first, last] (ISO dates)"
    )


class RepSnapshot(RepProgress):
    """`rep-snapshots` (compacted, key rep_id): everything a reader needs to know of one rep, in full.

    `periods[kind][key]` are the totals of the periods scoring keeps hot; `horizons[kind]` is the newest key
    of that kind already handed to SQL history (`kpi_history`): a period at or before it is answered from
    there, one after it from `periods` (zeros when absent). Readers keep the highest `version` per rep."""

    updated_ms: int = Field(ge=0, description="when scoring made the snapshot (the business clock, Unix ms)")
    accepted_ms: int = Field(0, ge=0, description="when ingest accepted the newest event in it (Unix ms)")
    periods: dict[PeriodKindName, dict[str, Totals]] = Field(default_factory=dict)
    horizons: dict[PeriodKindName, str] = Field(default_factory=dict)
    contests: dict[str, Totals] = Field(
        default_factory=dict, description="totals per contest board (window), over the minutes the state holds"
    )
    minute_floor: int | None = Field(
        None, description="the oldest UTC minute (since 1970) the state holds; older minutes are in kpi_history"
    )

    def holds(self, kind: PeriodKindName, key: str) -> bool:
        """True when the period's totals are in this snapshot (not yet handed to history)."""
        horizon = self.horizons.get(kind)
        return horizon is None or key > horizon


class ConfigChange(_Message):
    """`config` (compacted, key "kind:id"): the newest document of one configuration entry; `body` null when
    it was deleted. `updated_ms` orders the changes of one entry. The body must be a valid document of its
    kind (schemas/config.py); it is kept as the gateway wrote it."""

    kind: ConfigKind
    id: str = Field(min_length=1)
    body: dict[str, Any] | None
    updated_ms: int = Field(ge=0)

    @model_validator(mode="after")
    def _body_of_its_kind(self) -> ConfigChange:
        if self.body is not None:
            CONFIG_DOCUMENTS[self.kind].model_validate(self.body)
        return self


RecognitionKind = Literal["tier", "achievement", "streak"]


class AchievementRefModel(_Message):
    """An achievement as messages show it (docs/achievements.md)."""

    achievement_id: str
    name: str
    badge: str
    description: str | None = None


class StreakRefModel(_Message):
    """A streak milestone as messages show it (docs/achievements.md, Streaks): `days` reached since `since`."""

    streak_id: str
    name: str
    badge: str
    days: int
    since: str = Field(description="the first working day of the streak (ISO date)")


class _Recognition(_Message):
    """What a notification and a celebration share: the shape a screen is pushed (`screen_payload`)."""

    def screen_payload(self) -> dict[str, Any]:
        """The message as the gateway pushes it to screens: a tier crossing exactly as CONTRACT §6 has it (no
        `kind`), an achievement or a streak milestone with `kind` and its own part, without the empty others."""
        if getattr(self, "kind", "tier") == "tier":
            return self.model_dump(mode="json", exclude={"sent_ms", "kind", "achievement", "streak"})
        return self.model_dump(mode="json", exclude={"sent_ms"}, exclude_none=True)


class InAppNotification(_Recognition):
    """`notifications` (key rep_id), `type` notification: a tier crossing (`kind` tier, the default: plan_id,
    plan_name and tier set) or an achievement earned (`kind` achievement: `achievement` set) for the rep's own
    screen."""

    type: Literal["notification"]
    kind: RecognitionKind = "tier"
    notification_id: str
    rep_id: str
    name: str
    plan_id: str | None = None
    plan_name: str | None = None
    period_key: str
    tier: TierRefModel | None = None
    achievement: AchievementRefModel | None = None
    streak: StreakRefModel | None = None
    reward: str | None = None
    crossed_at: AwareDatetime
    attainment: float | None = None
    next_tier: TierRefModel | None = None
    gap_to_next: float | None = None
    text: str
    sent_ms: int = Field(0, ge=0, description="when the notifier published it (Unix ms, system clock)")


class Celebration(_Recognition):
    """`notifications` (key rep_id), `type` celebration: shown on every board the rep is on (CONTRACT §6) — a
    tier crossing (plan_id and tier set) or an achievement earned (`kind` achievement, `achievement` set)."""

    type: Literal["celebration"]
    kind: RecognitionKind = "tier"
    notification_id: str
    rep_id: str
    name: str
    plan_id: str | None = None
    period_key: str
    tier: TierRefModel | None = None
    achievement: AchievementRefModel | None = None
    streak: StreakRefModel | None = None
    at: AwareDatetime
    sent_ms: int = Field(0, ge=0)


NotificationMessage = Annotated[InAppNotification | Celebration, Field(discriminator="type")]
_NOTIFICATION_ADAPTER: TypeAdapter[InAppNotification | Celebration] = TypeAdapter(NotificationMessage)

MESSAGE_MODELS: dict[str, Any] = {
    "event-envelope": EventEnvelope,
    "credits": CreditsMessage,
    "rep-snapshot": RepSnapshot,
    "config-change": ConfigChange,
    "notification": NotificationMessage,
}
"""Every topic message model by the name of its JSON Schema file (schemas/json/<name>.schema.json)."""

M = TypeVar("M", bound=BaseModel)


def decode(model: type[M], raw: bytes | str) -> M:
    """The message in `raw`, or UnreadableMessage saying what is wrong with it."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise UnreadableMessage(_reason(model.__name__, exc)) from exc


def decode_notification(raw: bytes | str) -> InAppNotification | Celebration:
    """A `notifications` message of either type, or UnreadableMessage."""
    try:
        return _NOTIFICATION_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise UnreadableMessage(_reason("notification", exc)) from exc


def encode(message: BaseModel) -> bytes:
    """The message as compact JSON, leaving out fields at their defaults (zeros, empty maps)."""
    return message.model_dump_json(exclude_defaults=True).encode()


def _reason(what: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the message"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"not a {what}: {where}: {first['msg']}{more}"
