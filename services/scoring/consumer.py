"""Faust's aiokafka consumer with a leaner hand-over of each fetched message.

Faust's drain loop (faust 0.15.3, `Consumer._drain_messages`) hands every message to the conductor through
`wait_first(callback(message), suspend_flow.wait())`, which wraps both in tasks and waits on them — two tasks
and a wait per message, about a fifth of the scoring worker's time. The wait exists for rebalances: when flow
is suspended, a callback blocked on flow control is abandoned, so a message fetched before the rebalance is
never delivered after it (it is fetched again, in order, from the committed offset). While both the
consumer's and the app's flow are active, the conductor's callback runs to its end without yielding (flow
control, the producer-buffer check, the identity decode of `intake` and the queue put do not wait), so it
cannot be overtaken by a rebalance and is awaited directly; otherwise Faust's wait is used. The rest of the
loop is Faust's, unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service

__all__ = ["LeanConsumer", "use_lean_consumer"]


class LeanConsumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    def _new_consumer_thread(self) -> Any:
        return _PromptConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover  (exercised by every run)
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        suspended = self.suspend_flow.is_set
        app_flow_active = self.app.flow_control.is_active

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if suspended() or not app_flow_active():
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            else:
                                await callback(message)
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


FETCH_MAX_WAIT_MS = 20
"""Faust hard-codes fetch_max_wait_ms=1500; the embedded broker answers an empty fetch only after that wait,
even when data arrives meanwhile, which put up to 1.5 s between a credit and the rep agent."""


class _PromptConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):  # type: ignore[misc]
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # noqa: SLF001  (read when the fetcher starts)
        return consumer


def use_lean_consumer(app: Any) -> None:
    """Make `app` build its consumer from `LeanConsumer` (before the worker starts it)."""
    transport = app.transport
    if not issubclass(transport.Consumer, faust_aiokafka.Consumer):
        return  # another driver: keep Faust's own
    transport.Consumer = LeanConsumer
