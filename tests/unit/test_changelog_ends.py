"""A restore asks again for the changelogs' exact ends while no fetch answers, and stops the worker rather than
read a changelog up to an end that may fall short (`_PromptConsumerThread._changelog_ends`)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from services.common.kafka import EndsUnknown
from services.scoring import faust_internals
from services.scoring.faust_internals import _PromptConsumerThread

TPS = [TopicPartition("rep-state-changelog", 0), TopicPartition("rep-state-changelog", 1)]


def thread(request_timeout: float) -> Any:
    """The worker's consumer thread, with only what `_changelog_ends` reads of the Faust app around it."""
    made: Any = object.__new__(_PromptConsumerThread)
    made.app = SimpleNamespace(conf=SimpleNamespace(broker_request_timeout=request_timeout))
    made.log = logging.getLogger("test.consumer-thread")
    return made


def scripted(monkeypatch: pytest.MonkeyPatch, unanswered: int) -> list[list[TopicPartition]]:
    """`log_ends` that finds no answer `unanswered` times, then the ends; returns the list of its calls."""
    calls: list[list[TopicPartition]] = []

    async def log_ends(probe: Any, tps: list[TopicPartition], timeout: float = 5.0) -> dict[TopicPartition, int]:
        calls.append(list(tps))
        if len(calls) <= unanswered:
            raise EndsUnknown("no fetch answered within 5 s for rep-state-changelog[1]")
        return {tp: 9 for tp in tps}

    monkeypatch.setattr(faust_internals, "log_ends", log_ends)
    return calls


def test_ends_no_fetch_answered_are_asked_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = scripted(monkeypatch, unanswered=2)
    with caplog.at_level(logging.WARNING, logger="test.consumer-thread"):
        ends = asyncio.run(thread(90.0)._changelog_ends(object(), TPS))
    assert ends == {tp: 9 for tp in TPS}
    assert calls == [TPS, TPS, TPS]
    assert [r.getMessage() for r in caplog.records] == [
        "changelog ends for the restore: no fetch answered within 5 s for rep-state-changelog[1]"
    ] * 2


def test_past_faust_s_own_wait_the_error_stops_the_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = scripted(monkeypatch, unanswered=1)
    with pytest.raises(EndsUnknown, match=r"rep-state-changelog\[1\]"):
        asyncio.run(thread(0.0)._changelog_ends(object(), TPS))  # no time left after the first ask
    assert calls == [TPS]
