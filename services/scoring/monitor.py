"""Faust's built-in monitor without its per-message bookkeeping.

Faust calls four monitor hooks for every message (in, stream in, stream out, out), recording latencies the
worker never reads: its own metrics are in `services.scoring.metrics`. Those hooks do nothing here; the rest
of the monitor (committed and end offsets, rebalances, sends) is kept."""

from __future__ import annotations

from typing import Any

from faust.sensors.monitor import Monitor

__all__ = ["LeanMonitor"]


class LeanMonitor(Monitor):  # type: ignore[misc]
    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> dict[str, Any] | None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None
