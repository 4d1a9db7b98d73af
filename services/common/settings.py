"""The one settings object: every knob is an environment variable prefixed SALESPULSE_."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.clock import Clock

MIN_ADMIN_KEY_LENGTH = 24
# Fragments of the placeholders people paste from examples; a real key is random and holds none of them.
PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "example", "placeholder", "replace", "your-", "your_",
                     "secret", "password", "salespulse")


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([dhms])")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


CONNECTORS = ("hubspot", "pipedrive", "salesforce")
"""The CRMs salespulse has a connector for (services/connectors/)."""


class Settings(BaseSettings):
    """Runtime configuration shared by every service (see README, "Configuration")."""

    model_config = SettingsConfigDict(env_prefix="SALESPULSE_", extra="ignore")

    timezone: str = Field("UTC", description="IANA time zone that defines days, weeks, months")
    fiscal_year_start_month: int = Field(1, ge=1, le=12)
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="reporting currency")
    strict_roster: bool = False
    # The timestamps ingest accepts (docs/decisions.md): a later or earlier one is a typo or a wrong clock.
    events_not_before: date = Field(date(2000, 1, 1), ge=date(1900, 1, 2), description="earliest timestamp accepted")
    events_max_future_days: float = Field(7.0, ge=0, le=3650, description="how far past now a timestamp may lie")

    # The one clock (services/common/clock.py): unset, the system clock; set, every service reads this instant.
    clock_at: datetime | None = Field(None, description="pin 'now' to this RFC 3339 instant (with offset)")
    clock_ticking: bool = Field(False, description="a pinned clock moves on in real time from its anchor")
    clock_anchor: float | None = Field(None, description="Unix seconds at which a ticking clock read clock_at")

    data_dir: Path = Path(".salespulse")
    kafka_bootstrap: str | None = None
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    """PostgreSQL connections each engine keeps open, and may open beyond that under load (every service
    process has one or two engines: size `max_connections` for all of them)."""
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    """SQLite only: FULL syncs the write-ahead log at every commit, so an event answered 202 survives a power
    cut; NORMAL syncs at checkpoints (a power cut can lose the last commits; the database stays consistent)."""
    kafka_idempotence: Literal["auto", "on", "off"] = "auto"
    """Idempotent producers: "auto" asks the broker once per process (the embedded broker says no)."""
    database_url: str | None = None
    topic_prefix: str = "salespulse."
    partitions: int = Field(4, ge=1, le=256)

    host: str = "127.0.0.1"
    api_port: int = 8000
    ingest_port: int = 8001
    broker_port: int = 9092
    admin_key: str | None = None
    ws_max_connections: int = Field(20_000, ge=1, description="WebSocket screens per gateway process")
    ws_max_per_key: int = Field(
        2_000, ge=1, description="WebSocket screens one API key may hold open on one gateway process"
    )
    ws_ping_interval: float = Field(20.0, gt=0, description="seconds between keepalive pings to each screen")
    ws_ping_timeout: float = Field(20.0, gt=0, description="a screen that does not answer a ping in time is closed")
    ws_send_timeout: float = Field(10.0, gt=0, description="seconds a screen may stay stuck before it is dropped")
    http_header_timeout: float = Field(10.0, gt=0, description="seconds a client has to send its request headers")
    http_body_timeout: float = Field(30.0, gt=0, description="seconds a client has, after its headers, to send a body")
    http_max_concurrency: int | None = Field(
        None,
        ge=1,
        description="connections and requests one process serves at once before answering 503 (default: 1,000, "
        "plus SALESPULSE_WS_MAX_CONNECTIONS on the gateway, whose screens hold a connection each)",
    )
    ws_allowed_origins: str = Field(
        "", description="Origins that may open WebSockets: empty = the gateway's own host name, '*' = any, or a list"
    )
    forwarded_allow_ips: str = Field(
        "", description="proxy addresses whose X-Forwarded-For names the client (rate limits per address)"
    )

    # Rate limits per process (docs/security.md); a rate of 0 turns that limit off. The defaults sit above what
    # one process serves on the reference machine, so the demo and the benchmarks never meet them.
    rate_ingest_requests: float = Field(5000.0, ge=0, description="ingest requests per second per API key")
    rate_ingest_requests_burst: int = Field(10_000, ge=1)
    rate_ingest_events: float = Field(100_000.0, ge=0, description="events per second per API key")
    rate_ingest_events_burst: int = Field(200_000, ge=1)
    rate_api_requests: float = Field(1000.0, ge=0, description="gateway REST requests per second per API key")
    rate_api_requests_burst: int = Field(5000, ge=1)
    rate_auth_failures: float = Field(20.0, ge=0, description="unknown keys per second per client address")
    rate_auth_failures_burst: int = Field(500, ge=1)
    rate_ws_connects: float = Field(1000.0, ge=0, description="WebSocket connection attempts per second per address")
    rate_ws_connects_burst: int = Field(20_000, ge=1)

    # Faust worker tuning; tests shorten the session timeout so a killed worker is replaced quickly.
    scoring_web_port: int = 6066
    broker_session_timeout: float = 30.0
    broker_heartbeat_interval: float = 3.0
    scoring_batch_size: int = Field(2000, ge=1, description="events that start a batch at once (else after _WITHIN)")
    scoring_batch_within: float = Field(
        0.0, ge=0, description="seconds a batch waits for more events after its first (0: it takes what has arrived; "
        "a fetch delivers its records together and a backlog builds while a batch is folded)",
    )
    scoring_batch_max: int = Field(
        20_000, ge=1, description="a backlog is folded in batches of up to this many events (fewer state writes)"
    )
    scoring_checkpoint_interval: float = Field(
        10.0, ge=0, description="seconds between checkpoints of the scoring tables in SQL (0: none)"
    )

    relay_batch_size: int = 5000
    relay_idle_seconds: float = 0.05
    relay_linger_seconds: float = Field(
        0.03, ge=0, description="while commits keep coming, the shortest time from the start of one relay pass to "
        "the next: commits within it go out together, in fewer and larger record batches (each batch a partition "
        "holds costs the embedded broker on every fetch). The first commit after a quiet spell goes out at once "
        "(0: every commit at once)",
    )
    relay: Literal["inline", "external"] = Field(
        "inline",
        description="inline: ingest publishes the ledger to Kafka itself; external: `salespulse relay` does, in its"
        " own process, and ingest wakes it after each commit (SALESPULSE_RELAY_HOST, SALESPULSE_RELAY_PORT)",
    )
    relay_host: str = Field("127.0.0.1", description="where ingest finds the external relay to wake it")
    relay_port: int = Field(8004, description="the external relay's /metrics and /v1/health (TCP) and wake-ups (UDP)")

    # Notifier (docs/notifications.md): channels, delivery retries, quiet hours and the coaching digest.
    notifier_port: int = 8002
    supervisor_port: int = 8003
    """`salespulse up`'s own /metrics (restarts of its children)."""
    broker_renew_records: int = Field(
        5_000, ge=0, description="`salespulse up`, embedded broker only: renew the broker (replay into new topics) "
        "once one partition grew by this many records since the last renewal; its fetches cost more with every "
        "record batch it holds (0: never)",
    )
    broker_renew_check: float = Field(30.0, gt=0, description="seconds between two looks at the broker's size")
    notify_default_channels: str = Field(
        "in_app,webhook,email", description="channels of a rep without preferences (unavailable ones skipped)"
    )
    notify_slack_webhook_urls: str = Field("", description="comma-separated Slack-compatible incoming webhooks")
    notify_webhook_urls: str = Field("", description="comma-separated generic JSON webhooks (HMAC-signed)")
    notify_webhook_secret: str | None = Field(None, description="HMAC-SHA256 key for generic webhooks")
    notify_smtp_host: str | None = None
    notify_smtp_port: int = 25
    notify_smtp_from: str = "salespulse@localhost"
    notify_smtp_username: str | None = None
    notify_smtp_password: str | None = None
    notify_smtp_starttls: bool = False
    notify_send_timeout: float = Field(10.0, gt=0, description="seconds one webhook call or SMTP session may take")
    notify_max_attempts: int = Field(8, ge=1, description="attempts per delivery before it is marked failed")
    notify_retry_base_seconds: float = Field(2.0, gt=0, description="first retry delay; doubles per attempt")
    notify_retry_max_seconds: float = Field(600.0, gt=0, description="longest retry delay")
    notify_lease_seconds: float = Field(60.0, gt=0, description="a claimed delivery is retried after this")
    notify_poll_seconds: float = Field(0.5, gt=0, description="how often due deliveries are looked for")
    notify_digest_schedule: str = Field("weekdays", pattern=r"^(off|daily|weekdays|weekly)$")
    notify_digest_at: str = Field("08:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="local time")
    notify_digest_pace_below: float = Field(0.8, gt=0, description="reps with a pace below this are listed")
    notify_digest_min_elapsed: float = Field(0.4, ge=0, le=1, description="share of the period gone first")
    notify_max_age: timedelta = Field(
        timedelta(days=7), description="a crossing in a period that ended longer ago is recorded, not pushed"
    )

    # CRM connectors (docs/connectors.md). A connector whose credentials are unset is off: its routes answer 404.
    hubspot_client_secret: SecretStr | None = Field(None, description="HubSpot app client secret (v3 signatures)")
    hubspot_token: SecretStr | None = Field(None, description="HubSpot private-app or OAuth access token (CRM API)")
    hubspot_api_url: str = "https://api.hubapi.com"
    hubspot_webhook_url: str | None = Field(
        None, description="the exact target URL configured in HubSpot (signatures are over it); default: as received"
    )
    hubspot_mapping: Path | None = Field(None, description="mapping file (default: the packaged hubspot.yaml)")
    pipedrive_webhook_user: str | None = Field(None, description="HTTP Basic user Pipedrive's webhook sends")
    pipedrive_webhook_password: SecretStr | None = None
    pipedrive_token: SecretStr | None = Field(None, description="Pipedrive API token (backfill, owners, merges)")
    pipedrive_api_url: str | None = Field(None, description="e.g. https://yourcompany.pipedrive.com")
    pipedrive_mapping: Path | None = None
    salesforce_instance_url: str | None = Field(None, description="e.g. https://yourorg.my.salesforce.com")
    salesforce_token: SecretStr | None = Field(None, description="OAuth access token (REST and the Pub/Sub API)")
    salesforce_tenant_id: str | None = Field(None, description="the org id (Pub/Sub API tenantid header)")
    salesforce_pubsub_address: str = Field("api.pubsub.salesforce.com:7443", description="Pub/Sub API host:port")
    salesforce_pubsub_tls: bool = True
    salesforce_mapping: Path | None = None
    connector_batch_size: int = Field(100, ge=1, le=100, description="CRM records fetched per API call")
    connector_retry_max_seconds: float = Field(300.0, gt=0, description="longest wait between tries of a CRM call")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}, e.g. Europe/Berlin") from exc
        return value

    @field_validator("notify_max_age", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        """`7d`, `36h`, `90m` or `600s` besides ISO 8601 (`P7D`) and plain seconds."""
        if isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
            number, unit = float(match.group(1)), match.group(2)
            return timedelta(seconds=number * _UNIT_SECONDS[unit])
        return value

    @field_validator("clock_at")
    @classmethod
    def _clock_has_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValueError(f"{value.isoformat()} has no UTC offset; write e.g. 2027-03-01T00:00:30+01:00")
        return value

    @property
    def connectors_on(self) -> set[str]:
        """The CRM connectors whose credentials are set (each runs in the ingest service with these settings)."""
        on = set()
        if self.hubspot_client_secret and self.hubspot_token:
            on.add("hubspot")
        if self.pipedrive_webhook_user and self.pipedrive_webhook_password:
            on.add("pipedrive")
        if self.salesforce_instance_url and self.salesforce_token and self.salesforce_tenant_id:
            on.add("salesforce")
        return on

    @property
    def clock(self) -> Clock:
        """What time it is for every service of this process (pinned by SALESPULSE_CLOCK_AT)."""
        return Clock(self.clock_at, ticking=self.clock_ticking, anchor=self.clock_anchor)

    @property
    def server_database(self) -> bool:
        """True with a database server (PostgreSQL): the production shape, where weak admin keys are refused."""
        return not self.db_url.startswith("sqlite")

    def admin_key_weakness(self) -> str | None:
        """Why SALESPULSE_ADMIN_KEY must not guard a production deployment, or None when it may."""
        key = self.admin_key
        if not key or not self.server_database:
            return None
        lowered = key.lower()
        if len(key) < MIN_ADMIN_KEY_LENGTH:
            return f"it has {len(key)} characters; use at least {MIN_ADMIN_KEY_LENGTH}"
        if len(set(key)) < 8:
            return "it repeats a few characters; use a random one"
        if any(word in lowered for word in PLACEHOLDER_WORDS):
            return "it is a placeholder from an example; use a random one"
        return None

    @property
    def embedded_broker(self) -> bool:
        """True when salespulse starts its own broker (no external Kafka configured)."""
        return not self.kafka_bootstrap

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.broker_port}"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'salespulse.db'}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@lru_cache
def get_settings() -> Settings:
    return Settings()
