"""Configuration as data: reps, teams, plans, boards, FX rates, achievements, streaks and chat routes stored in SQL,
one JSON document each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel
from sqlalchemy import delete, select

from schemas.config import FxRate, FxRates
from schemas.messages import CONFIG_DOCUMENTS
from services.common import db
from services.common.db import Sessions
from services.common.models import ConfigEntry
from services.common.problems import Problem

Kind = Literal["rep", "team", "plan", "board", "fx", "achievement", "streak", "chat"]
MODELS: dict[str, type[BaseModel]] = CONFIG_DOCUMENTS
ID_FIELDS: dict[str, str] = {
    "rep": "rep_id", "team": "team_id", "plan": "plan_id", "board": "board_id", "fx": "currency",
    "achievement": "achievement_id", "streak": "streak_id", "chat": "team_id",
}


HISTORIES: dict[str, tuple[str, str]] = {
    "rep": ("team_id", "team_history"),
    "team": ("manager_rep_id", "manager_history"),
}
"""The fields whose past values salespulse keeps (a rep's team, a team's manager), and where it keeps them."""


def with_history(kind: str, body: dict[str, Any], previous: dict[str, Any] | None, at: datetime) -> dict[str, Any]:
    """`body` with the history its kind keeps: the stored one, plus the previous value until `at` when this PUT
    changes it — except the first value a field is given, which applies from the start (a team set up, then
    its manager: the roster's natural order). A history sent in the body must be the stored one (a GET sent
    back as it is)."""
    spec = HISTORIES.get(kind)
    if spec is None:
        return body
    field, history_field = spec
    kept: list[dict[str, Any]] = (previous or {}).get(history_field, [])
    sent = body.get(history_field)
    if sent is not None and sent != kept:
        raise Problem(
            422,
            f"{history_field} is kept by salespulse from the changes of {field}; leave it out of the PUT, or send "
            f"back the {len(kept)} entries it holds unchanged.",
            errors=[{"index": None, "field": history_field, "message": "differs from the stored history"}],
        )
    history = list(kept)
    # A value that held for no time (two changes at one instant, as under a pinned clock) leaves no entry.
    if (
        previous is not None
        and previous.get(field) != body.get(field)
        and (history or previous.get(field) is not None)
        and (not history or datetime.fromisoformat(history[-1]["until"]) < at)
    ):
        history.append({field: previous.get(field), "until": at.isoformat().replace("+00:00", "Z")})
    return MODELS[kind].model_validate({**body, history_field: history}).model_dump(mode="json")


class ConfigStore:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def put(self, kind: Kind, entry_id: str, document: BaseModel, at: datetime) -> dict[str, Any]:
        """Store `document`; `at` (the business clock's now) dates a change a history keeps."""
        return (await self.put_many(kind, {entry_id: document}, at))[entry_id]

    async def put_many(self, kind: Kind, documents: dict[str, BaseModel], at: datetime) -> dict[str, dict[str, Any]]:
        """Store every document in one transaction (all or none), each as `put` would; the stored bodies by id."""
        stored: dict[str, dict[str, Any]] = {}
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            for entry_id, document in documents.items():
                row = await session.get(ConfigEntry, (kind, entry_id), with_for_update=True)
                body = with_history(kind, document.model_dump(mode="json"),
                                    None if row is None else orjson.loads(row.body), at)
                text = orjson.dumps(body).decode()
                if row is None:
                    session.add(ConfigEntry(kind=kind, entry_id=entry_id, body=text, updated_at=now))
                else:
                    row.body, row.updated_at = text, now
                stored[entry_id] = body
        return stored

    async def merge_rates(self, rates: Sequence[FxRate]) -> dict[str, dict[str, Any]]:
        """Add `rates` to the stored FX documents (a date already there takes the new rate: a correction), in one
        transaction; returns the documents that changed, by currency."""
        by_currency: dict[str, dict[str, str]] = {}
        for rate in rates:
            by_currency.setdefault(rate.currency, {})[rate.date.isoformat()] = str(rate.rate)
        changed: dict[str, dict[str, Any]] = {}
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            for currency in sorted(by_currency):
                row = await session.get(ConfigEntry, ("fx", currency), with_for_update=True)
                known = {} if row is None else orjson.loads(row.body)["rates"]
                merged = {**known, **by_currency[currency]}
                if merged == known:
                    continue
                document = FxRates.model_validate({"currency": currency, "rates": merged}).model_dump(mode="json")
                document["rates"] = dict(sorted(document["rates"].items()))
                body = orjson.dumps(document).decode()
                if row is None:
                    session.add(ConfigEntry(kind="fx", entry_id=currency, body=body, updated_at=now))
                else:
                    row.body, row.updated_at = body, now
                changed[currency] = document
        return changed

    async def get(self, kind: Kind, entry_id: str) -> dict[str, Any] | None:
        async with self._sessions() as session:
            row = await session.get(ConfigEntry, (kind, entry_id))
        return orjson.loads(row.body) if row else None

    async def list(self, kind: Kind) -> list[dict[str, Any]]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(ConfigEntry.body).where(ConfigEntry.kind == kind).order_by(ConfigEntry.entry_id)
            )
        return [orjson.loads(body) for body in rows.scalars()]

    async def delete(self, kind: Kind, entry_id: str) -> bool:
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(ConfigEntry).where(ConfigEntry.kind == kind, ConfigEntry.entry_id == entry_id)
            )
        return bool(db.rows_matched(result))
