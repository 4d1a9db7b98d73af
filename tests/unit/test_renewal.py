"""When `salespulse up` renews the embedded broker (services/cli/renewal.py): the policy on the broker's growth."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from services.cli import renewal
from services.cli.renewal import FORCED_AFTER, BrokerWatch, RenewalPolicy, growth
from services.common.settings import Settings
from services.common.topics import ACTIVITIES, topic_name

A0, A1, S0 = TopicPartition("events.activities", 0), TopicPartition("events.activities", 1), TopicPartition("s", 0)


def test_growth_is_the_largest_partitions_gain_since_the_baseline() -> None:
    assert growth({A0: 100, A1: 5}, {A0: 150, A1: 400}) == 395
    assert growth({A0: 100}, {A0: 100, S0: 70}) == 70  # a topic created since counts from 0
    assert growth({}, {}) == 0


def test_a_partition_that_went_back_means_a_new_broker_and_no_growth_figure() -> None:
    assert growth({A0: 100, A1: 5}, {A0: 3, A1: 9}) is None


def test_a_due_renewal_waits_for_a_look_with_no_new_event_up_to_a_multiple_of_the_setting() -> None:
    policy = RenewalPolicy(50_000)
    assert policy.reason(49_999, events_arrived=False) is None
    assert policy.reason(50_000, events_arrived=True) is None  # due, but events are flowing
    quiet = policy.reason(50_000, events_arrived=False)
    assert quiet is not None and "grew by 50,000 records" in quiet and "no event arrived" in quiet
    assert policy.reason(FORCED_AFTER * 50_000 - 1, events_arrived=True) is None
    busy = policy.reason(FORCED_AFTER * 50_000, events_arrived=True)  # a floor that never pauses
    assert busy is not None and f"{FORCED_AFTER} times SALESPULSE_BROKER_RENEW_RECORDS with no quiet moment" in busy


def test_a_bulk_load_does_not_count_towards_a_forced_renewal() -> None:
    policy = RenewalPolicy(5_000)
    # 60,000 records in a partition, 9,999 of them at a floor's pace: due, but waiting for a quiet look.
    assert policy.reason(60_000, events_arrived=True, floor_grown=FORCED_AFTER * 5_000 - 1) is None
    assert policy.reason(60_000, events_arrived=True, floor_grown=FORCED_AFTER * 5_000) is not None
    after = policy.reason(60_000, events_arrived=False, floor_grown=0)  # the import is over, a quiet look
    assert after is not None and "no event arrived" in after


def test_the_default_renews_a_never_quiet_floor_within_a_few_thousand_batches() -> None:
    """At the default a floor that never pauses is renewed by 10,000 records a partition: the broker's CPU under a
    light load grows by some 4 % of a core per thousand one-record batches held (`bench.broker --steady`); the
    old default (20,000, forced at ten times) let a never-quiet floor reach 200,000."""
    assert FORCED_AFTER * Settings().broker_renew_records <= 10_000


def test_zero_turns_renewals_off() -> None:
    assert RenewalPolicy(0).reason(10**9, events_arrived=False) is None


class ScriptedWatch(BrokerWatch):
    """A watch whose looks at the broker return the ends given, then stop it."""

    def __init__(self, looks: list[dict[TopicPartition, int]], stop: asyncio.Event) -> None:
        self.reasons: list[str] = []

        async def renew(reason: str) -> None:
            self.reasons.append(reason)

        async def ready() -> None:
            pass

        super().__init__(Settings(broker_renew_records=100, broker_renew_check=0.01), renew, ready)
        self._looks, self._stop = looks, stop

    async def ends(self) -> dict[TopicPartition, int]:
        if len(self._looks) == 1:
            self._stop.set()
        return self._looks.pop(0)


def watch(looks: list[int], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The renewal reasons a watch gives for these successive ends of one events partition."""
    monkeypatch.setattr(renewal, "BULK_RATE", 250 / 0.01)  # 250 records a look: a floor's pace, more: bulk
    events = TopicPartition(topic_name(Settings(), ACTIVITIES), 0)

    async def scenario() -> list[str]:
        stop = asyncio.Event()
        scripted = ScriptedWatch([{events: end} for end in looks], stop)
        await scripted.run(stop)
        return scripted.reasons

    return asyncio.run(scenario())


def test_the_watch_forces_a_renewal_on_floor_growth_not_on_a_bulk_load(monkeypatch: pytest.MonkeyPatch) -> None:
    # 100,000 records in one look (an import), then 150 and 150 more at a floor's pace: forced at 2 x 100 of those.
    assert watch([0, 100_000, 100_150], monkeypatch) == []
    forced = watch([0, 100_000, 100_150, 100_300], monkeypatch)
    assert len(forced) == 1 and "with no quiet moment" in forced[0], forced
    # The same import followed by a quiet look: renewed then, as before.
    quiet = watch([0, 100_000, 100_000], monkeypatch)
    assert len(quiet) == 1 and "no event arrived" in quiet[0], quiet
