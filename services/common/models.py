"""SQLAlchemy 2 models: the ledger (system of record), the roster and configuration, keys and history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    String,
    Text,
)
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


class RelayCursor(Base):
    """The highest ledger sequence number the relay has published and seen acknowledged."""

    __tablename__ = "relay_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class RelayProgress(Base):
    """When the relay saw each batch acknowledged: events with seq <= seq_end were published by then."""

    __tablename__ = "relay_progress"

    seq_end: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


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
