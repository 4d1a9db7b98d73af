"""`salespulse connect CRM --backfill [--since DATE]`: read every deal changed since DATE from the CRM's API, map
it, and send it to ingest's `POST /v1/events` (the same door as everything else), with a progress line.

The position is kept in `$SALESPULSE_DATA_DIR/connectors/CRM-backfill.json` after each batch ingest accepted,
so an interrupted backfill resumes where it stopped (`--restart` starts over). Event ids are stable — the CRM
id and its modification time — so running it twice, or over deals the webhooks already brought, gives
duplicates, never double counts.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import httpx

from services.common.backoff import Backoff
from services.common.settings import Settings
from services.connectors.base import Connector, CrmApiError, Page
from services.connectors.core import RecordRejected, epoch_ms, snapshot_event
from services.connectors.hubspot import HubSpotConnector
from services.connectors.pipedrive import PipedriveConnector
from services.ingest.importer.command import ImportProgress, api_key
from services.ingest.importer.mapper import ImportRow
from services.ingest.importer.sender import FatalImportError, IngestSender, IngestUnreachable, Tally

__all__ = ["BackfillError", "BackfillOptions", "run_backfill"]

CRM_GIVE_UP_S = 600.0
HUBSPOT_SEARCH_LIMIT = 10_000
"""HubSpot's search pages stop at 10,000 results: past that, search again from the last modification time."""


class BackfillError(Exception):
    """Something the user must change (credentials, a setting); the message says what."""


@dataclass(frozen=True)
class BackfillOptions:
    connector: str
    since: date | None = None
    ingest_url: str | None = None
    key: str | None = None
    restart: bool = False
    batch: int = 500


def api_connector(name: str, settings: Settings) -> Connector:
    """The connector for reading the CRM's API (webhook settings are not needed here)."""
    if name == "hubspot":
        if not settings.hubspot_token:
            raise BackfillError("set SALESPULSE_HUBSPOT_TOKEN (a private app's access token with crm.objects.deals.read"
                                " and crm.objects.owners.read)")
        return HubSpotConnector(HubSpotConnector.load_mapping(settings.hubspot_mapping), settings.zone, None,
                                api_url=settings.hubspot_api_url, token=settings.hubspot_token.get_secret_value())
    if name == "pipedrive":
        if not settings.pipedrive_token or not settings.pipedrive_api_url:
            raise BackfillError("set SALESPULSE_PIPEDRIVE_TOKEN and SALESPULSE_PIPEDRIVE_API_URL "
                                "(https://yourcompany.pipedrive.com)")
        return PipedriveConnector(PipedriveConnector.load_mapping(settings.pipedrive_mapping), settings.zone, None,
                                  api_url=settings.pipedrive_api_url, token=settings.pipedrive_token.get_secret_value())
    if name == "salesforce":
        from services.connectors.salesforce import SalesforceConnector

        connector: Connector = SalesforceConnector.from_settings(settings, None)
        return connector
    raise BackfillError(f"no connector {name!r}")


async def pages(connector: Connector, since: datetime, cursor: dict[str, Any]) -> AsyncIterator[Page]:
    """The CRM's deals changed since `since`, oldest first, a page at a time, from `cursor` on."""
    if isinstance(connector, HubSpotConnector):
        since_ms = int(cursor.get("since_ms", epoch_ms(since)))
        after = cursor.get("after")
        while True:
            deals, after, total = await connector.search(since_ms, after)
            if after and int(after) >= HUBSPOT_SEARCH_LIMIT - 100 and deals:
                since_ms, after = epoch_ms(deals[-1].modified_at), None
            yield Page(deals, {"since_ms": since_ms, "after": after}, total)
            if not after:
                return
    elif isinstance(connector, PipedriveConnector):
        page_cursor = cursor.get("cursor")
        while True:
            deals, page_cursor = await connector.page(since, page_cursor)
            yield Page(deals, {"cursor": page_cursor}, None)
            if not page_cursor:
                return
    else:
        async for page in connector.backfill_pages(since, cursor):  # type: ignore[attr-defined]
            yield page


async def _retrying(make: Any, err: IO[str]) -> Any:
    """Await `make()`, trying again after CRM errors that may pass (429, 5xx, no answer) for CRM_GIVE_UP_S."""
    backoff = Backoff(first=1.0, most=60.0, jitter=0.5)
    began = time.monotonic()
    while True:
        try:
            return await make()
        except CrmApiError as exc:
            if exc.permanent or time.monotonic() - began > CRM_GIVE_UP_S:
                raise
            wait = backoff.next(at_least=exc.retry_after)
            err.write(f"{exc}; trying again in {wait:.1f} s\n")
            await asyncio.sleep(wait)


def run_backfill(settings: Settings, options: BackfillOptions, out: IO[str] | None = None,
                 err: IO[str] | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        return asyncio.run(_backfill(settings, options, out, err))
    except (BackfillError, FatalImportError, IngestUnreachable) as exc:
        err.write(f"error: {exc}\n")
        return 2
    except CrmApiError as exc:
        err.write(f"error: {exc}\n")
        return 1


async def _backfill(settings: Settings, options: BackfillOptions, out: IO[str], err: IO[str]) -> int:
    data_dir = settings.data_dir
    key = api_key(options.key, data_dir)
    if key is None:
        raise BackfillError("no API key: pass --key, or set SALESPULSE_API_KEY or SALESPULSE_ADMIN_KEY")
    url = options.ingest_url or f"http://127.0.0.1:{settings.ingest_port}"
    connector = api_connector(options.connector, settings)
    since = datetime.combine(options.since or date(2000, 1, 1), datetime.min.time(), settings.zone).astimezone(UTC)
    state_path = data_dir / "connectors" / f"{options.connector}-backfill.json"
    state = _load_state(state_path)
    if options.restart or state.get("since") != since.isoformat() or state.get("done"):
        state = {"since": since.isoformat(), "cursor": {}, "read": 0, "done": False}
    elif state.get("read"):
        err.write(f"resuming the {options.connector} backfill after {state['read']:,} records ({state_path})\n")
    tally = Tally()
    rejected: list[str] = []
    progress = ImportProgress(None, err, label=f"{options.connector} backfill", unit="records")

    def reject(row: ImportRow) -> None:
        rejected.append(f"deal {row.values[0]}: " + "; ".join(row.reasons))

    try:
        with httpx.Client(timeout=60.0) as client:
            sender = IngestSender(client, url, key, tally=tally, reject=reject, note=progress.note)
            cursor: dict[str, Any] = dict(state["cursor"])
            iterator = pages(connector, since, cursor).__aiter__()
            while True:
                try:
                    page = await _retrying(iterator.__anext__, err)
                except StopAsyncIteration:
                    break
                if page.total is not None:
                    progress.total = page.total
                rows = []
                for number, deal in enumerate(page.deals):
                    row = ImportRow(line=number, values=[deal.crm_id])
                    try:
                        row.event = await _retrying(
                            lambda deal=deal: snapshot_event(deal, connector.mapping, connector.owner_email,
                                                             connector.zone), err)
                    except RecordRejected as exc:
                        row.reasons.append(str(exc))
                        tally.rejected += 1
                        reject(row)
                        continue
                    rows.append(row)
                tally.read += len(page.deals)
                for start in range(0, len(rows), options.batch):
                    await asyncio.to_thread(sender.send, rows[start:start + options.batch])
                state.update(cursor=page.cursor, read=int(state["read"]) + len(page.deals))
                _save_state(state_path, state)
                progress.advance(len(page.deals))
            state["done"] = True
            _save_state(state_path, state)
    finally:
        await connector.close()
    progress.finish()
    for line in rejected[:50]:
        err.write(f"rejected {line}\n")
    elapsed = max(time.monotonic() - progress.began, 1e-9)
    out.write(
        f"read       {tally.read:,}\naccepted   {tally.accepted:,}\nduplicates {tally.duplicates:,}\n"
        f"rejected   {tally.rejected:,}\nin {elapsed:.1f} s ({tally.read / elapsed:,.0f} records/s)\n"
    )
    return 1 if tally.rejected else 0


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _save_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state), encoding="utf-8")
    os.replace(temporary, path)
