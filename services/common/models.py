"""SQLAlchemy 2 models: the ledger (system of record), the roster and configuration, keys and history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    Select,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a ledger.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class LedgerEntry(Base):
    """One accepted event, append-only. `seq` (gapless, assigned by the single ledger writer) orders
    publication; `event_id` is the idempotency key."""

    __tablename__ = "ledger"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    key: Mapped[str] = mapped_column(String(128), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    body_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


RELAY_CURSOR = "kafka"
"""The relay cursor's row: the publishing position into Kafka."""


class RelayCursor(Base):
    """The highest ledger sequence number the relay has published and seen acknowledged."""

    __tablename__ = "relay_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


def cursor_seq(name: str) -> Select[int]:
    """The statement that reads relay_cursor row `name`'s sequence number (no row: None)."""
    return select(RelayCursor.seq).where(RelayCursor.name == name)


async def relay_cursor(session: AsyncSession) -> int:
    """Every ledger event up to this sequence number is in the Kafka topics (0 before the first)."""
    return int((await session.execute(cursor_seq(RELAY_CURSOR))).scalar() or 0)


class RelayProgress(Base):
    """When the relay saw each batch acknowledged: events with seq <= seq_end were published by then."""

    __tablename__ = "relay_progress"

    seq_end: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class SourceDay(Base):
    """Events published per source and business day, kept by the relay as it publishes (a republication after
    a replay is not counted again): the console's "events today" and "last event per source"."""

    __tablename__ = "source_days"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    """The events' `source` (`csv`, `hubspot`, ...), or `api` for events sent without one."""
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    """The business day the events were accepted on (ISO date, SALESPULSE_TIMEZONE)."""
    events: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_event_id: Mapped[str] = mapped_column(String(128), nullable=False)


class ConfigEntry(Base):
    """Roster and configuration as data: reps, teams, plans and boards, one JSON document each."""

    __tablename__ = "config_entries"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ApiKey(Base):
    """An API key, stored as a SHA-256 hash; the key itself is shown once at creation."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    scope_boards: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Comma-separated board ids of a `screen` key."""
    scope_rep_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """The rep of a `rep` key."""
    scope_team_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """The team of a `manager` key."""
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """Noted at most once a minute per process (KeyStore.LAST_USE_EVERY)."""
    parent_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    """A screen session's key (the cookie a screen traded its `?token=` for): the key it was made from, whose
    revocation ends it too."""


class KpiHistory(Base):
    """KPI totals of periods that left the scoring workers' hot state (older periods stay queryable)."""

    __tablename__ = "kpi_history"

    rep_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    period: Mapped[str] = mapped_column(String(8), primary_key=True)
    period_key: Mapped[str] = mapped_column(String(16), primary_key=True)
    totals: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class KpiHistoryMark(Base):
    """The highest eviction sequence of a rep already added to kpi_history (exactly-once adds)."""

    __tablename__ = "kpi_history_marks"

    rep_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ScoringCheckpoint(Base):
    """One key of a scoring table as of the last checkpoint: the value in its changelog encoding."""

    __tablename__ = "scoring_checkpoint"
    __table_args__ = (Index("ix_scoring_checkpoint_partition", "table_name", "partition"),)

    table_name: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, nullable=False)
    value: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class ScoringCheckpointMark(Base):
    """What the checkpoint reflects: every ledger event up to `seq` is folded into it (so a replay into an empty
    broker starts after `seq`), and per table the changelog offsets it covers (`offsets`, JSON; null once the
    broker they refer to is gone, when a restore reads the whole changelog of the new one)."""

    __tablename__ = "scoring_checkpoint_mark"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    partitions: Mapped[int] = mapped_column(Integer, nullable=False)
    offsets: Mapped[str | None] = mapped_column(Text, nullable=True)
    taken_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ScoringPresence(Base):
    """Which source partitions a live scoring worker serves (assigned, its tables recovered, flow running),
    refreshed every second; the gateway's readiness needs every partition served by a fresh row."""

    __tablename__ = "scoring_presence"

    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    partitions: Mapped[str] = mapped_column(Text, nullable=False)
    """JSON object: "topic:partition" → the offset the worker has folded the partition up to."""
    seen_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    """Machine time of the last refresh (epoch milliseconds)."""


# --- notifier: tier crossings, their deliveries, rep preferences, coaching digests ------------------------------


class NotificationPreference(Base):
    """How a rep wants to hear about tier crossings: channels, quiet hours (rep's local time), hourly cap."""

    __tablename__ = "notification_preferences"

    rep_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    channels: Mapped[str] = mapped_column(Text, nullable=False)
    quiet_start: Mapped[str | None] = mapped_column(String(5), nullable=True)
    quiet_end: Mapped[str | None] = mapped_column(String(5), nullable=True)
    max_per_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class TierCrossingRow(Base):
    """One tier crossing, recorded once: the unique (rep, kind, plan, period, tier) key is what makes a crossing
    notify exactly once across restarts, replays, rebalances and duplicate snapshots. `seq` orders a rep's
    deliveries (ascending threshold when several tiers are crossed at once). `kind` "achievement" rows are
    achievements earned (plan_id the achievement_id, tier_id ""), "streak" rows streak milestones, recorded
    and delivered the same way (services/notifier/tier_crossings.py)."""

    __tablename__ = "tier_crossings"
    __table_args__ = (
        UniqueConstraint("rep_id", "kind", "plan_id", "period_key", "tier_id", name="uq_tier_crossings_key"),
        Index("ix_tier_crossings_rep_seq", "rep_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    rep_id: Mapped[str] = mapped_column(String(128), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="tier", server_default="tier")
    plan_id: Mapped[str] = mapped_column(String(128), nullable=False)
    period_key: Mapped[str] = mapped_column(String(32), nullable=False)
    tier_id: Mapped[str] = mapped_column(String(128), nullable=False)
    tier_name: Mapped[str] = mapped_column(String(200), nullable=False)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    reward: Mapped[str | None] = mapped_column(Text, nullable=True)
    crossed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    details: Mapped[str] = mapped_column(Text, nullable=False)


class NotificationDelivery(Base):
    """One channel's delivery of one crossing: status pending | deferred | sent | failed, with attempts,
    the last error, when it is due next, and a lease so one notifier process sends it at a time."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("notification_id", "channel", name="uq_notification_deliveries_channel"),
        Index("ix_notification_deliveries_due", "status", "due_at"),
        Index("ix_notification_deliveries_order", "rep_id", "channel", "seq"),
    )

    delivery_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(String(40), nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    rep_id: Mapped[str] = mapped_column(String(128), nullable=False)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    targets_done: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CoachingDigest(Base):
    """One coaching digest e-mail to a team's manager for one schedule slot (unique: sent once per slot)."""

    __tablename__ = "coaching_digests"
    __table_args__ = (
        UniqueConstraint("team_id", "slot", name="uq_coaching_digests_slot"),
        Index("ix_coaching_digests_due", "status", "due_at"),
    )

    digest_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(128), nullable=False)
    slot: Mapped[str] = mapped_column(String(64), nullable=False)
    manager_rep_id: Mapped[str] = mapped_column(String(128), nullable=False)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# --- CRM connectors: deliveries waiting to become events, and each connector's cursors -------------------------


class ConnectorInboxRow(Base):
    """A CRM change a connector accepted (a webhook, a change event) and has not yet turned into ledger events.
    Written before the CRM is answered, deleted once the events are in the ledger; a record the mapping cannot
    turn into an event stays here as `rejected` with the reason, for an admin."""

    __tablename__ = "connector_inbox"
    __table_args__ = (Index("ix_connector_inbox_due", "connector", "status", "not_before"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    connector: Mapped[str] = mapped_column(String(32), nullable=False)
    object_id: Mapped[str] = mapped_column(String(128), nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    """fetch (read the whole record from the CRM), record (the payload is the whole record), delete."""
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    """When the change happened in the CRM (the lag metric's start; a deletion's time)."""
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """Not tried again before then (an API error's back-off); also a claim by one ingest process."""
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ConnectorState(Base):
    """A connector's named positions: the Salesforce replay id, a backfill's cursor."""

    __tablename__ = "connector_state"

    connector: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


# --- period close and commission statements (docs/statements.md) ----------------------------------------------


class PeriodClose(Base):
    """A plan's period closed by an admin: its statements are frozen as of ledger sequence `as_of_seq`."""

    __tablename__ = "period_closes"

    plan_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    period_key: Mapped[str] = mapped_column(String(16), primary_key=True)
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    as_of_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    forced: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    closed_by: Mapped[str] = mapped_column(String(32), nullable=False)
    plan_rules: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The plan as it was at the close (JSON): restatements of the period follow these rules."""


class StatementRow(Base):
    """One rep's frozen statement of a closed period (the JSON document GET /v1/statements/{id} answers)."""

    __tablename__ = "statements"
    __table_args__ = (Index("ix_statements_rep", "rep_id", "plan_id"),)

    statement_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    plan_id: Mapped[str] = mapped_column(String(128), nullable=False)
    period_key: Mapped[str] = mapped_column(String(16), nullable=False)
    rep_id: Mapped[str] = mapped_column(String(128), nullable=False)
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)


# --- currencies (CONTRACT §1, Currencies) ------------------------------------------------------------------


class HeldDeal(Base):
    """A won deal in a currency with no rate on or before its close date: its credit is held until a rate
    arrives. Kept by the scoring worker that owns the deal (a row while held, none once counted)."""

    __tablename__ = "fx_held_deals"
    __table_args__ = (Index("ix_fx_held_deals_currency", "currency", "closed_on"),)

    deal_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    amount: Mapped[str] = mapped_column(String(40), nullable=False)
    closed_on: Mapped[str] = mapped_column(String(10), nullable=False)
    """The close date in the business timezone: the date a rate must cover."""
    rep_ids: Mapped[str] = mapped_column(Text, nullable=False)
    """JSON list of the reps the credit goes to once counted."""
    event_id: Mapped[str] = mapped_column(String(128), nullable=False)
    held_since: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
