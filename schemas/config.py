"""Configuration an admin PUTs: reps, teams, incentive plans and boards (CONTRACT §4–6).

Every model rejects unknown fields, and each invalid document fails with a reason an admin can act on.
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.currencies import is_currency_code
from schemas.kpis import CREDIT_ROLES, KPI_NAMES, ROLLUP_METRICS, CreditRole, is_kpi_name

__all__ = [
    "KPI_NAMES",
    "Achievement",
    "AchievementRule",
    "Battle",
    "ChatRoute",
    "DailyRule",
    "Streak",
    "Board",
    "BoardPeriod",
    "FxRate",
    "FxRates",
    "Gate",
    "ManagerSpell",
    "Participants",
    "Plan",
    "PlanPeriod",
    "Rep",
    "Scope",
    "Team",
    "TeamSpell",
    "Tier",
    "Window",
    "is_kpi_name",
]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

PlanPeriod = Literal["week", "month", "quarter", "year"]
BoardPeriod = Literal["day", "week", "month", "quarter", "year"]


def _no_control_characters(text: str) -> str:
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise PydanticCustomError("control_character", "must not contain control characters")
    return text


def _known_metric(name: str) -> str:
    if not is_kpi_name(name):
        raise PydanticCustomError(
            "unknown_metric",
            "unknown metric '{metric}': expected one of {known}, or activities.<kind>",
            {"metric": name, "known": ", ".join(sorted(KPI_NAMES))},
        )
    return name


def _json_number(number: Decimal) -> int | float:
    # The contract writes quotas and rates as JSON numbers; configuration reads back the way it was written.
    return int(number) if number == number.to_integral_value() else float(number)


Id = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_no_control_characters)]
"""A rep, team, plan, board or tier id: 1–128 characters, no control characters."""
Label = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_control_characters)]
"""A display name or title."""
Number = Annotated[Decimal, PlainSerializer(_json_number, return_type=int | float, when_used="json")]
"""An exact decimal that is a JSON number on the wire."""
Metric = Annotated[str, AfterValidator(_known_metric)]
"""A KPI name of CONTRACT §3."""


def _distinct_roles(roles: list[CreditRole]) -> list[CreditRole]:
    """Each role once, in the order of CREDIT_ROLES (so equal choices compare and print alike)."""
    if not roles:
        raise PydanticCustomError(
            "no_credit_roles", "credit_roles must name at least one of {roles}", {"roles": ", ".join(CREDIT_ROLES)}
        )
    return [role for role in CREDIT_ROLES if role in roles]


CreditRoles = Annotated[
    list[CreditRole],
    AfterValidator(_distinct_roles),
    Field(description="which credit counts: primary (the deal's split), overlay (specialists' credit on top)"),
]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_Config):
    """One step of a plan: reached at `threshold` × quota, paying `rate` on the value in its band."""

    tier_id: Id
    name: Label
    threshold: float = Field(allow_inf_nan=False)
    rate: Number
    reward: Label | None = None

    @field_validator("rate")
    @classmethod
    def _rate_not_negative(cls, rate: Decimal) -> Decimal:
        if rate < 0:
            raise PydanticCustomError(
                "negative_rate", "rate must not be negative, got {rate}", {"rate": str(rate)}
            )
        return rate


class Gate(_Config):
    """Accelerators (tiers above 100 %) pay only while `metric` is at least `min`."""

    metric: Metric
    min: float = Field(allow_inf_nan=False)


class Participants(_Config):
    """Who a plan covers: listed reps plus members of listed teams; all empty means every rep. A manager plan
    lists `managers` only, each measured on their team's roll-up (docs/plans-and-boards.md, Manager roll-up)."""

    teams: list[Id] = Field(default_factory=list)
    reps: list[Id] = Field(default_factory=list)
    managers: list[Id] = Field(default_factory=list, exclude_if=lambda managers: not managers)

    @model_validator(mode="after")
    def _managers_alone(self) -> Participants:
        if self.managers and (self.teams or self.reps):
            raise PydanticCustomError(
                "managers_with_reps",
                "a manager plan lists managers only: move the teams and reps to a plan of their own",
            )
        return self


class Plan(_Config):
    """An incentive plan (CONTRACT §4)."""

    plan_id: Id
    name: Label
    metric: Metric
    period: PlanPeriod
    effective_from: date
    effective_to: date | None = None
    participants: Participants = Field(default_factory=Participants)
    quota: Number
    quota_overrides: dict[Id, Number] = Field(default_factory=dict)
    tiers: list[Tier]
    payout_cap: Number | None = None
    gate: Gate | None = None
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    credit_roles: CreditRoles = Field(default_factory=lambda: list(CREDIT_ROLES))

    @field_validator("effective_to")
    @classmethod
    def _ends_after_start(cls, effective_to: date | None, info: ValidationInfo) -> date | None:
        effective_from = info.data.get("effective_from")
        if effective_to is not None and effective_from is not None and effective_to < effective_from:
            raise PydanticCustomError(
                "effective_to_before_from",
                "effective_to {to} is before effective_from {start}",
                {"to": effective_to.isoformat(), "start": effective_from.isoformat()},
            )
        return effective_to

    @field_validator("quota")
    @classmethod
    def _quota_positive(cls, quota: Decimal) -> Decimal:
        if quota <= 0:
            raise PydanticCustomError(
                "quota_not_positive", "quota must be greater than 0, got {quota}", {"quota": str(quota)}
            )
        return quota

    @field_validator("quota_overrides")
    @classmethod
    def _overrides_positive(cls, overrides: dict[str, Decimal]) -> dict[str, Decimal]:
        for rep_id, quota in overrides.items():
            if quota <= 0:
                raise PydanticCustomError(
                    "quota_not_positive",
                    "quota override for '{rep_id}' must be greater than 0, got {quota}",
                    {"rep_id": rep_id, "quota": str(quota)},
                )
        return overrides

    @field_validator("tiers")
    @classmethod
    def _tier_table(cls, tiers: list[Tier]) -> list[Tier]:
        if not tiers:
            raise PydanticCustomError("no_tiers", "a plan needs at least one tier")
        if tiers[0].threshold < 0:
            raise PydanticCustomError(
                "negative_threshold",
                "the first tier's threshold must not be negative, got {threshold}",
                {"threshold": tiers[0].threshold},
            )
        for lower, upper in zip(tiers, tiers[1:], strict=False):
            if upper.threshold <= lower.threshold:
                raise PydanticCustomError(
                    "thresholds_not_ascending",
                    "tier thresholds must be strictly ascending: '{upper}' ({upper_t}) "
                    "does not come after '{lower}' ({lower_t})",
                    {
                        "upper": upper.tier_id,
                        "upper_t": upper.threshold,
                        "lower": lower.tier_id,
                        "lower_t": lower.threshold,
                    },
                )
        seen: set[str] = set()
        for tier in tiers:
            if tier.tier_id in seen:
                raise PydanticCustomError(
                    "duplicate_tier_id", "duplicate tier_id '{tier_id}'", {"tier_id": tier.tier_id}
                )
            seen.add(tier.tier_id)
        return tiers

    @model_validator(mode="after")
    def _manager_metric(self) -> Plan:
        if not self.participants.managers:
            return self
        for field, metric in (("metric", self.metric), ("gate.metric", self.gate and self.gate.metric)):
            if metric is not None and metric not in ROLLUP_METRICS:
                raise PydanticCustomError(
                    "manager_metric",
                    "a manager plan measures its team's deal credit: {field} must be one of {known}, got '{metric}'",
                    {"field": field, "known": ", ".join(ROLLUP_METRICS), "metric": metric},
                )
        return self

    @field_validator("payout_cap")
    @classmethod
    def _cap_not_negative(cls, cap: Decimal | None) -> Decimal | None:
        if cap is not None and cap < 0:
            raise PydanticCustomError(
                "negative_cap", "payout_cap must not be negative, got {cap}", {"cap": str(cap)}
            )
        return cap


class Window(_Config):
    """A contest's window: credits and activities attributed in [starts_at, ends_at)."""

    starts_at: AwareDatetime
    ends_at: AwareDatetime

    @model_validator(mode="after")
    def _ends_after_start(self) -> Window:
        if self.ends_at <= self.starts_at:
            raise PydanticCustomError("window_not_ascending", "window.ends_at must be after window.starts_at")
        return self


class Scope(_Config):
    """Which teams a board ranks; empty means every rep."""

    teams: list[Id] = Field(default_factory=list)


_RATIO_METRICS = frozenset({"win_rate", "avg_deal_size", "retention_rate"})
_MAX_BATTLE_TEAMS = 8


class Battle(_Config):
    """A team battle (docs/plans-and-boards.md, Team battles): the teams whose members' values are summed."""

    teams: list[Id] = Field(min_length=2, max_length=_MAX_BATTLE_TEAMS)

    @field_validator("teams")
    @classmethod
    def _distinct(cls, teams: list[str]) -> list[str]:
        if len(set(teams)) != len(teams):
            raise PydanticCustomError("battle_teams_repeated", "a battle lists each team once")
        return teams


class Board(_Config):
    """A leaderboard over a period, or a contest over a window (CONTRACT §5); with `battle`, teams against each
    other over it."""

    board_id: Id
    title: Label
    metric: Metric
    period: BoardPeriod | None = None
    window: Window | None = None
    scope: Scope = Field(default_factory=Scope)
    size: int = Field(default=10, ge=1, le=100)
    plan_id: Id | None = None
    credit_roles: CreditRoles = Field(default_factory=lambda: list(CREDIT_ROLES))
    battle: Battle | None = Field(None, exclude_if=lambda battle: battle is None)
    celebrations: bool = Field(
        True, exclude_if=lambda on: on,
        description="false mutes this board's celebrations (tier crossings, achievements); standings still show",
    )

    @model_validator(mode="after")
    def _period_xor_window(self) -> Board:
        if (self.period is None) == (self.window is None):
            raise PydanticCustomError(
                "period_xor_window",
                "a board needs exactly one of period (a leaderboard) or window (a contest)",
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _battle_scope(cls, data: Any) -> Any:
        """A battle's board ranks the battle's teams: its scope is theirs unless given."""
        if isinstance(data, dict) and isinstance(data.get("battle"), dict):
            teams, scope = data["battle"].get("teams"), data.get("scope")
            if isinstance(teams, list) and (scope is None or (isinstance(scope, dict) and not scope.get("teams"))):
                data = {**data, "scope": {**(scope or {}), "teams": list(teams)}}
        return data

    @model_validator(mode="after")
    def _battle_sums(self) -> Board:
        if self.battle is None:
            return self
        if self.metric in _RATIO_METRICS:
            raise PydanticCustomError(
                "battle_metric", "a battle sums its members' values: {metric} is a ratio; use a count or revenue",
                {"metric": self.metric},
            )
        if set(self.scope.teams) != set(self.battle.teams):
            raise PydanticCustomError("battle_scope", "a battle's scope.teams must be its battle.teams (or left out)")
        return self

    @property
    def is_contest(self) -> bool:
        """True when the board ranks a fixed window rather than a rolling period."""
        return self.window is not None


def _positive(name: str) -> Any:
    def check(value: Decimal) -> Decimal:
        if not value.is_finite() or value <= 0:
            raise PydanticCustomError(
                "not_positive", "{name} must be a number greater than 0, got {value}",
                {"name": name, "value": str(value)},
            )
        return value

    return AfterValidator(check)


class TotalRule(_Config):
    """Earned when `metric` reaches `at_least` within one `period` (each period earns it once), or within the
    contest-like `window` (once): "first deal won this month", "5 demos in a day"."""

    kind: Literal["total"]
    metric: Metric
    period: BoardPeriod | None = None
    window: Window | None = None
    at_least: Annotated[Number, _positive("at_least")]

    @model_validator(mode="after")
    def _period_xor_window(self) -> TotalRule:
        if (self.period is None) == (self.window is None):
            raise PydanticCustomError(
                "period_xor_window", "a total rule needs exactly one of period (e.g. \"month\") or window"
            )
        return self


class DealRule(_Config):
    """Earned when one won deal credits the rep at least `at_least` of revenue (their share, in the reporting
    currency), once per `period` the deal closes in: "deal over $50,000"."""

    kind: Literal["deal"]
    period: BoardPeriod = "month"
    at_least: Annotated[Number, _positive("at_least")]


class GrowthRule(_Config):
    """Earned when `metric` in a period is at least `percent` % above the period before (which must be above
    0): "10 % above last month's revenue"; once per period."""

    kind: Literal["growth"]
    metric: Metric
    period: BoardPeriod = "month"
    percent: Annotated[Number, Field(ge=0, le=100_000)]


AchievementRule = Annotated[TotalRule | DealRule | GrowthRule, Field(discriminator="kind")]
"""What earns an achievement (docs/achievements.md)."""

_BADGE_MAX = 8


def _badge(text: str) -> str:
    if not text.strip() or len(text) > _BADGE_MAX:
        raise PydanticCustomError(
            "badge_length", "a badge is 1 to {most} characters (an emoji or a short tag), got '{badge}'",
            {"most": _BADGE_MAX, "badge": text},
        )
    return _no_control_characters(text)


class Achievement(_Config):
    """A badge a rep earns once per period (or once, for a window) when the rule holds (docs/achievements.md)."""

    achievement_id: Id
    name: Label
    description: Label | None = None
    badge: Annotated[str, AfterValidator(_badge)] = "\U0001F3C5"
    rule: AchievementRule
    participants: Participants = Field(default_factory=Participants)
    effective_from: date | None = Field(
        None, description="periods that start before this date earn nothing (no badges for the past when created)"
    )

    @model_validator(mode="after")
    def _reps_only(self) -> Achievement:
        if self.participants.managers:
            raise PydanticCustomError(
                "achievement_managers", "achievements are earned by reps: list teams or reps, not managers"
            )
        return self


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_MON_TO_FRI: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
_MAX_HOLIDAYS = 1000
_MAX_MILESTONES = 20


class DailyRule(_Config):
    """What a day needs to count for a streak: `metric` on that day (business timezone) at least `at_least`."""

    metric: Metric
    at_least: Annotated[Number, _positive("at_least")]


class Streak(_Config):
    """Consecutive working days on which a rep met a daily rule, with milestones notified once (docs/achievements.md,
    Streaks)."""

    streak_id: Id
    name: Label
    badge: Annotated[str, AfterValidator(_badge)] = "\U0001F525"
    rule: DailyRule
    workdays: list[Weekday] = Field(default_factory=lambda: list(_MON_TO_FRI))
    holidays: list[date] = Field(default_factory=list, max_length=_MAX_HOLIDAYS)
    milestones: list[Annotated[int, Field(ge=2, le=10_000)]] = Field(
        default_factory=lambda: [5, 10, 20, 50], max_length=_MAX_MILESTONES
    )
    participants: Participants = Field(default_factory=Participants)

    @field_validator("workdays")
    @classmethod
    def _some_workdays(cls, days: list[str]) -> list[str]:
        if not days:
            raise PydanticCustomError("no_workdays", "workdays must name at least one day, e.g. [\"mon\", \"fri\"]")
        order = list(Weekday.__args__)  # type: ignore[attr-defined]
        return sorted(set(days), key=order.index)

    @field_validator("holidays")
    @classmethod
    def _holidays_sorted(cls, days: list[date]) -> list[date]:
        return sorted(set(days))

    @field_validator("milestones")
    @classmethod
    def _milestones_ascending(cls, milestones: list[int]) -> list[int]:
        return sorted(set(milestones))

    @model_validator(mode="after")
    def _reps_only(self) -> Streak:
        if self.participants.managers:
            raise PydanticCustomError("streak_managers", "streaks are kept for reps: list teams or reps, not managers")
        return self


RecognitionKindName = Literal["tier", "achievement", "streak"]
ALL_RECOGNITIONS: tuple[RecognitionKindName, ...] = ("tier", "achievement", "streak")
EVERY_TEAM = "*"
"""The chat route of reps whose team has none (or who have no team)."""


def _webhook_url(url: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", url) or len(url) > 2048:
        raise PydanticCustomError(
            "webhook_url", "webhook_url must be an http(s) URL of at most 2,048 characters, as the chat app gave it"
        )
    return url


WebhookUrl = Annotated[str, AfterValidator(_webhook_url)]


class SlackRoute(_Config):
    """A Slack incoming webhook (https://api.slack.com/messaging/webhooks) and, for a legacy webhook that may post
    to several channels, the channel."""

    webhook_url: WebhookUrl
    channel: Annotated[str, Field(max_length=80), AfterValidator(_no_control_characters)] | None = None


class TeamsRoute(_Config):
    """A Microsoft Teams incoming webhook (a Workflows "post to a channel when a webhook request is received" URL,
    or an Office 365 connector's) that takes Adaptive Cards."""

    webhook_url: WebhookUrl


class ChatRoute(_Config):
    """Where a team's celebrations go in Slack and Microsoft Teams (docs/notifications.md, "Slack and Teams"):
    `team_id` "*" is the route of reps whose team has none."""

    team_id: Id
    slack: SlackRoute | None = None
    teams: TeamsRoute | None = None
    kinds: list[RecognitionKindName] = Field(
        default_factory=lambda: list(ALL_RECOGNITIONS),
        description="what is posted: tier crossings, achievements, streak milestones",
    )

    @model_validator(mode="after")
    def _somewhere(self) -> ChatRoute:
        if self.slack is None and self.teams is None:
            raise PydanticCustomError("no_chat", "a chat route needs slack or teams (or both)")
        return self


class TeamSpell(_Config):
    """Before `until`, the rep was a member of `team_id` (null: of no team)."""

    team_id: Id | None
    until: AwareDatetime


class ManagerSpell(_Config):
    """Before `until`, the team was managed by `manager_rep_id` (null: by nobody)."""

    manager_rep_id: Id | None
    until: AwareDatetime


def _history(spells: list[Any]) -> list[Any]:
    for earlier, later in zip(spells, spells[1:], strict=False):
        if later.until <= earlier.until:
            raise PydanticCustomError("history_not_ascending", "a history's `until` times must be ascending")
    return spells


_HISTORY_NOTE = (
    "kept by salespulse: each PUT that changes it appends the previous value with the time of the change; "
    "leave it out of a PUT, or send it back unchanged"
)


class Rep(_Config):
    """A sales rep on the roster."""

    rep_id: Id
    name: Label
    team_id: Id | None = None
    email: str | None = Field(default=None, max_length=254)
    timezone: str | None = None
    team_history: Annotated[list[TeamSpell], AfterValidator(_history)] = Field(
        default_factory=list, exclude_if=lambda spells: not spells,
        description="the teams the rep was in before team_id; " + _HISTORY_NOTE,
    )

    @field_validator("email")
    @classmethod
    def _email_shape(cls, email: str | None) -> str | None:
        if email is not None and _EMAIL.fullmatch(email) is None:
            raise PydanticCustomError("invalid_email", "not an email address: '{email}'", {"email": email})
        return email

    @field_validator("timezone")
    @classmethod
    def _iana_timezone(cls, timezone: str | None) -> str | None:
        if timezone is None:
            return None
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as error:
            raise PydanticCustomError(
                "unknown_timezone", "unknown IANA timezone '{timezone}'", {"timezone": timezone}
            ) from error
        return timezone


class Team(_Config):
    """A sales team; a team's KPIs are the sums over its current members."""

    team_id: Id
    name: Label
    manager_rep_id: Id | None = None
    manager_history: Annotated[list[ManagerSpell], AfterValidator(_history)] = Field(
        default_factory=list, exclude_if=lambda spells: not spells,
        description="the managers the team had before manager_rep_id; " + _HISTORY_NOTE,
    )


MAX_FX_RATES = 20_000
"""Rates kept per currency: over fifty years of daily rates."""
_RATE_PLACES = 12


def _currency(code: str) -> str:
    if not is_currency_code(code):
        raise PydanticCustomError(
            "unknown_currency", "'{currency}' is not an ISO 4217 currency code, e.g. EUR", {"currency": code}
        )
    return code


def _rate(value: Decimal) -> Decimal:
    if not value.is_finite() or value <= 0:
        raise PydanticCustomError("rate_not_positive", "a rate must be a number > 0, got {rate}", {"rate": str(value)})
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_RATE_PLACES:
        raise PydanticCustomError(
            "rate_too_precise", "a rate has at most {places} decimal places, got {rate}",
            {"places": _RATE_PLACES, "rate": str(value)},
        )
    return value.normalize() if value == value.to_integral_value() else value


CurrencyCode = Annotated[str, AfterValidator(_currency)]
Rate = Annotated[
    Decimal, Field(allow_inf_nan=False), AfterValidator(_rate), PlainSerializer(str, return_type=str, when_used="json")
]


class FxRate(_Config):
    """One day's rate: on `date` (in the business timezone), one unit of `currency` is worth `rate` units of the
    reporting currency. A JSON number or a string; stored and published as an exact decimal string."""

    currency: CurrencyCode
    date: date
    rate: Rate


class FxRates(_Config):
    """Every daily rate of one currency (CONTRACT §1, Currencies); a deal closed on a date without a rate takes
    the latest earlier one."""

    currency: CurrencyCode
    rates: dict[date, Rate] = Field(max_length=MAX_FX_RATES)
