"""What every connector shares: a CRM record becomes a deal snapshot event (CONTRACT.md §1).

- `deal_id` is `<connector>:<crm id>`, so deals of two CRMs never collide.
- `version` is the CRM's modification time in milliseconds since the epoch and `occurred_at` that instant, so a
  stale, duplicated or reordered delivery loses to the newest one under the contract's ordering rule.
- `event_id` is `<connector>-deal-<crm id>-<version>`: fetching the same revision twice (a retried webhook, a
  second backfill) gives the same event, a duplicate for ingest.
- A deleted deal becomes a snapshot that credits nothing: stage open, amount 0, at the deletion's time.

A record the mapping cannot turn into an event raises `RecordRejected` with a sentence naming the CRM record,
the field and what to change; the connector counts it and keeps it for an admin (GET /v1/connectors).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from schemas.kpis import OVERLAY, PRIMARY
from services.connectors.mapping import ConnectorMapping

__all__ = [
    "CrmDeal",
    "OwnerResolver",
    "RecordRejected",
    "content_id",
    "deal_id_for",
    "deletion_event",
    "epoch_ms",
    "parse_crm_time",
    "snapshot_event",
]

_MS_EPOCH = re.compile(r"^\d{12,14}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RecordRejected(Exception):
    """The mapping cannot turn this CRM record into an event; the message says why and what to change."""


@dataclass(frozen=True)
class CrmDeal:
    """One CRM deal as the connector read it: its fields (as the CRM names them) and when it last changed."""

    connector: str
    crm_id: str
    fields: Mapping[str, Any]
    modified_at: datetime
    splits: list[tuple[str, Decimal]] | None = None
    """(CRM owner id, share) when the CRM says how the credit splits (Salesforce's OpportunitySplit)."""
    overlays: list[tuple[str, Decimal]] | None = None
    """(CRM owner id, share) of overlay credit on top of the split (Salesforce's Overlay split type)."""
    changed_at: datetime | None = None
    """When the change was made in the CRM, for the lag metric (default: modified_at)."""
    problem: str | None = None
    """Why the record cannot become an event although the CRM sent it (e.g. no modification time)."""


def deal_id_for(connector: str, crm_id: str) -> str:
    return f"{connector}:{crm_id}"


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch, exactly (no float on the way)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def parse_crm_time(value: Any, zone: ZoneInfo, *, what: str) -> datetime:
    """A CRM timestamp: epoch milliseconds (number or digits), RFC 3339 (Z or an offset; without one, the
    business timezone), or a date alone (midnight in the business timezone)."""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value) / 1000, UTC)
    if not isinstance(value, str) or not value.strip():
        raise RecordRejected(f"{what} is {value!r}, not a date or time")
    text = value.strip()
    if _MS_EPOCH.match(text):
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), zone)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise RecordRejected(f"{what} is {value!r}, not an RFC 3339 time, a date or epoch milliseconds") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def get_path(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


OwnerResolver = Callable[[str], Awaitable[str | None]]
"""CRM owner id -> that owner's e-mail address (None when the CRM does not say), for the email_local_part rule."""


async def rep_for_owner(mapping: ConnectorMapping, owner: str, emails: OwnerResolver, *, crm_id: str) -> str:
    if owner in mapping.owner_table:
        return mapping.owner_table[owner]
    if mapping.owner_rule == "id" and owner:
        return owner
    if mapping.owner_rule == "email_local_part" and owner:
        email = await emails(owner)
        if email and "@" in email:
            return email.split("@", 1)[0].lower()
    if mapping.unmapped_owner:
        return mapping.unmapped_owner
    how = {"table": "owners.table", "id": "owners.rule: id", "email_local_part": "the owner's e-mail"}[
        mapping.owner_rule
    ]
    raise RecordRejected(
        f"deal {crm_id}: owner {owner or '(none)'!r} is not mapped to a rep by {how}; add it to owners.table in "
        f"{mapping.origin} or set owners.unmapped to a rep id"
    )


def _event_id(connector: str, crm_id: str, suffix: str) -> str:
    event_id = f"{connector}-deal-{crm_id}-{suffix}"
    if len(event_id) <= 128:
        return event_id
    digest = hashlib.sha256(crm_id.encode()).hexdigest()[:32]
    return f"{connector}-deal-{digest}-{suffix}"


async def snapshot_event(
    deal: CrmDeal, mapping: ConnectorMapping, emails: OwnerResolver, zone: ZoneInfo
) -> dict[str, Any]:
    """The deal snapshot event for a CRM record; RecordRejected when the mapping cannot make one."""
    crm_id = deal.crm_id
    if deal.problem:
        raise RecordRejected(deal.problem)
    version = epoch_ms(deal.modified_at)

    def value(name: str) -> Any:
        path = mapping.field_path(name)
        return get_path(deal.fields, path) if path else None

    crm_stage = value("stage")
    stage = mapping.stage_of("" if crm_stage is None else str(crm_stage))
    if stage is None:
        raise RecordRejected(
            f"deal {crm_id}: stage {crm_stage!r} is not listed under stages (won, lost or open) in {mapping.origin}; "
            "add it, or set stages.open: '*' to treat every other stage as open"
        )
    raw_amount = value("amount")
    try:
        amount = Decimal("0") if raw_amount in (None, "") else Decimal(str(raw_amount))
    except InvalidOperation:
        where = mapping.field_path("amount")
        raise RecordRejected(f"deal {crm_id}: amount {raw_amount!r} ({where}) is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise RecordRejected(f"deal {crm_id}: amount {raw_amount!r} must be a number of at least 0")
    owner = value("owner")
    rep = await rep_for_owner(mapping, "" if owner is None else str(owner), emails, crm_id=crm_id)
    kind = mapping.kind_of(None if value("kind") is None else str(value("kind")))
    if kind is None:
        raise RecordRejected(
            f"deal {crm_id}: deal type {value('kind')!r} is not listed under kinds in {mapping.origin}; add it"
        )
    event: dict[str, Any] = {
        "event_id": _event_id(deal.connector, crm_id, str(version)),
        "type": "deal",
        "occurred_at": deal.modified_at.isoformat(),
        "source": deal.connector,
        "deal_id": deal_id_for(deal.connector, crm_id),
        "version": version,
        "owner_id": rep,
        "stage": stage,
        "amount": format(amount.normalize(), "f") if amount == amount.to_integral() else str(amount),
        "kind": kind,
    }
    currency = value("currency")
    if currency not in (None, ""):
        event["currency"] = str(currency).upper()
    customer = value("customer")
    if customer not in (None, ""):
        event["customer_id"] = str(customer)[:128]
    if stage != "open":
        closed = value("closed_at")
        event["closed_at"] = (
            parse_crm_time(closed, zone, what=f"deal {crm_id}: close date ({mapping.field_path('closed_at')})")
            if closed not in (None, "")
            else deal.modified_at  # a closed deal without a close date closed when it last changed
        ).isoformat()
    entries = [(owner_id, share, PRIMARY) for owner_id, share in deal.splits or ()]
    entries += [(owner_id, share, OVERLAY) for owner_id, share in deal.overlays or ()]
    if entries:
        event["splits"] = [
            {"rep_id": await rep_for_owner(mapping, owner_id, emails, crm_id=crm_id), "share": str(share)}
            | ({"role": role} if role == OVERLAY else {})
            for owner_id, share, role in entries
        ]
    return event


def content_id(event: dict[str, Any]) -> str:
    """The event's id told apart by its content: for a second snapshot with the same CRM version."""
    body = json.dumps({k: v for k, v in event.items() if k != "event_id"}, sort_keys=True, default=str)
    suffix = hashlib.sha256(body.encode()).hexdigest()[:12]
    return f"{event['event_id'][: 127 - len(suffix)]}-{suffix}"


def deletion_event(connector: str, crm_id: str, deleted_at: datetime, owner_id: str) -> dict[str, Any]:
    """A snapshot that credits nothing, for a deal deleted (or merged away) in the CRM."""
    version = epoch_ms(deleted_at)
    return {
        "event_id": _event_id(connector, crm_id, f"deleted-{version}"),
        "type": "deal",
        "occurred_at": deleted_at.isoformat(),
        "source": connector,
        "deal_id": deal_id_for(connector, crm_id),
        "version": version,
        "owner_id": owner_id,
        "stage": "open",
        "amount": "0",
    }
