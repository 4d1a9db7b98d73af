"""Configuration as data on the compacted `config` topic: the gateway publishes every change; every
process that needs the roster, plans or boards follows the whole topic and keeps it in memory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from schemas.messages import ConfigChange, decode, encode
from services.common.dead_letters import DeadLetters
from services.common.follower import BACKGROUND_WAIT_MS, TopicFollower
from services.common.settings import Settings
from services.common.topics import CONFIG, partition_for, topic_name

log = logging.getLogger("salespulse.config")

M = TypeVar("M", bound=BaseModel)
_MODELS_KEPT = 10_000
"""Parsed documents kept (a cache by version); forgotten all at once beyond this many."""

KINDS = ("rep", "team", "plan", "board", "fx", "achievement", "streak", "chat")


def config_key(kind: str, entry_id: str) -> str:
    return f"{kind}:{entry_id}"


def config_message(kind: str, entry_id: str, body: dict[str, Any] | None, updated_ms: int) -> bytes:
    """A `config` message (schemas.messages.ConfigChange); `body` None means deleted."""
    return encode(ConfigChange(kind=kind, id=entry_id, body=body, updated_ms=updated_ms))


async def publish_config(
    producer: AIOKafkaProducer, settings: Settings, kind: str, entry_id: str, body: dict[str, Any] | None,
    updated_ms: int,
) -> None:
    key = config_key(kind, entry_id)
    await producer.send_and_wait(
        topic_name(settings, CONFIG),
        config_message(kind, entry_id, body, updated_ms),
        key=key.encode(),
        partition=partition_for(key, settings.partitions),
    )


@dataclass
class ConfigState:
    """The newest document of every configuration entry, by kind and id."""

    entries: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k: {} for k in KINDS})
    versions: dict[str, int] = field(default_factory=dict)
    _models: dict[tuple[str, str, int], Any] = field(default_factory=dict, repr=False, compare=False)

    def model(self, kind: str, entry_id: str, model: type[M]) -> M | None:
        """The entry as `model`, parsed once per version; None when there is none. A document that is not one
        raises ValueError (pydantic's ValidationError)."""
        doc = self.entries.get(kind, {}).get(entry_id)
        if doc is None:
            return None
        key = (kind, entry_id, self.versions.get(config_key(kind, entry_id), 0))
        parsed = self._models.get(key)
        if parsed is None:
            if len(self._models) >= _MODELS_KEPT:
                self._models.clear()
            parsed = self._models[key] = model.model_validate(doc)
        return parsed

    def models(self, kind: str, model: type[M]) -> list[M]:
        """Every entry of `kind` as `model`, by id; one that does not parse (validated by the gateway, so only a
        stale shape) is logged and left out rather than stopping its reader."""
        out = []
        for entry_id in sorted(self.entries.get(kind, {})):
            try:
                parsed = self.model(kind, entry_id, model)
            except ValueError as exc:
                log.error("ignoring %s %s: %s", kind, entry_id, exc)
                continue
            if parsed is not None:
                out.append(parsed)
        return out

    def apply(self, message: dict[str, Any]) -> bool:
        """Apply one change; False when it is older than what is known."""
        kind, entry_id, body, updated = message["kind"], message["id"], message["body"], message["updated_ms"]
        key = config_key(kind, entry_id)
        known = self.versions.get(key, -1)
        if known > updated:
            return False
        if known == updated and self.entries.get(kind, {}).get(entry_id) == body:
            return False  # the same change again: applied locally by the writer, then read back from the topic
        self.versions[key] = updated
        bucket = self.entries.setdefault(kind, {})
        if body is None:
            bucket.pop(entry_id, None)
        else:
            bucket[entry_id] = body
        return True

    def reps(self) -> dict[str, dict[str, Any]]:
        return self.entries["rep"]

    def teams(self) -> dict[str, dict[str, Any]]:
        return self.entries["team"]

    def plans(self) -> dict[str, dict[str, Any]]:
        return self.entries["plan"]

    def boards(self) -> dict[str, dict[str, Any]]:
        return self.entries["board"]

    def fx(self) -> dict[str, dict[str, Any]]:
        """The FX rates, one document per currency (schemas.config.FxRates)."""
        return self.entries["fx"]

    def achievements(self) -> dict[str, dict[str, Any]]:
        """The achievements (schemas.config.Achievement), by achievement_id."""
        return self.entries["achievement"]

    def streaks(self) -> dict[str, dict[str, Any]]:
        """The streaks (schemas.config.Streak), by streak_id."""
        return self.entries["streak"]

    def chat_route(self, team_id: str | None) -> dict[str, Any] | None:
        """The chat route of a team (schemas.config.ChatRoute), else the route of every team ("*"), else None."""
        routes = self.entries["chat"]
        return routes.get(team_id or "") or routes.get("*")

    def team_of(self, rep_id: str) -> str | None:
        rep = self.entries["rep"].get(rep_id)
        return rep.get("team_id") if rep else None

    def members(self, team_id: str) -> list[str]:
        return sorted(r for r, doc in self.entries["rep"].items() if doc.get("team_id") == team_id)


Listener = Callable[[dict[str, Any]], None]


class ConfigFollower:
    """Keeps a ConfigState current from the whole config topic."""

    def __init__(self, settings: Settings, dead_letters: DeadLetters | None = None) -> None:
        self.state = ConfigState()
        self.listeners: list[Listener] = []
        self._follower = TopicFollower(
            settings, topic_name(settings, CONFIG), self._apply, name="config feed", dead_letters=dead_letters,
            fetch_wait_ms=BACKGROUND_WAIT_MS,
        )
        self.caught_up = self._follower.caught_up

    def _apply(self, raw: bytes) -> None:
        change = decode(ConfigChange, raw)
        self.apply({"kind": change.kind, "id": change.id, "body": change.body, "updated_ms": change.updated_ms})

    def apply(self, change: dict[str, Any]) -> None:
        """Apply a change now. The gateway that wrote it calls this too, so that its own next request sees
        the change (read your writes) without waiting for it to come back from the topic."""
        if self.state.apply(change):
            for listener in self.listeners:
                listener(change)

    async def sync(self, written_before_ms: int, timeout: float = 5.0) -> bool:
        """Wait until every change written before `written_before_ms` (wall clock) is applied (see
        TopicFollower.sync); False after `timeout`."""
        return await self._follower.sync(written_before_ms, timeout)

    def start(self) -> None:
        self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()
