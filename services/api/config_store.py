"""Configuration as data: reps, teams, plans and boards stored in SQL, one JSON document each."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel
from sqlalchemy import delete, select

from schemas.config import Board, Plan, Rep, Team
from services.common import db
from services.common.db import Sessions
from services.common.models import ConfigEntry

Kind = Literal["rep", "team", "plan", "board"]
MODELS: dict[str, type[BaseModel]] = {"rep": Rep, "team": Team, "plan": Plan, "board": Board}
ID_FIELDS: dict[str, str] = {"rep": "rep_id", "team": "team_id", "plan": "plan_id", "board": "board_id"}


class ConfigStore:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def put(self, kind: Kind, entry_id: str, document: BaseModel) -> dict[str, Any]:
        body = document.model_dump(mode="json")
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            row = await session.get(ConfigEntry, (kind, entry_id))
            if row is None:
                session.add(ConfigEntry(kind=kind, entry_id=entry_id, body=orjson.dumps(body).decode(), updated_at=now))
            else:
                row.body = orjson.dumps(body).decode()
                row.updated_at = now
        return body

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
