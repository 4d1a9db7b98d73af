"""When `salespulse up` renews the embedded broker (services/cli/renewal.py): the policy on the broker's growth."""

from __future__ import annotations

from aiokafka import TopicPartition

from services.cli.renewal import BULK_RATE, FORCED_AFTER, RenewalPolicy, growth

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
    busy = policy.reason(FORCED_AFTER * 50_000, events_arrived=True, arrival_rate=25.0)  # a floor that never pauses
    assert busy is not None and f"{FORCED_AFTER} times SALESPULSE_BROKER_RENEW_RECORDS with no quiet moment" in busy


def test_a_bulk_load_is_renewed_after_it_not_during_it() -> None:
    policy = RenewalPolicy(5_000)
    assert policy.reason(10 * FORCED_AFTER * 5_000, events_arrived=True, arrival_rate=BULK_RATE + 1) is None
    assert policy.reason(10 * FORCED_AFTER * 5_000, events_arrived=True, arrival_rate=BULK_RATE) is not None
    after = policy.reason(10 * FORCED_AFTER * 5_000, events_arrived=False)  # the import is over
    assert after is not None and "no event arrived" in after


def test_the_default_renews_a_never_quiet_floor_within_a_few_thousand_batches() -> None:
    """At the default a floor that never pauses is renewed by 10,000 records a partition: the broker's CPU under a
    light load grows by some 4 % of a core per thousand one-record batches held (`bench.broker --steady`); the
    old default (20,000, forced at ten times) let a never-quiet floor reach 200,000."""
    from services.common.settings import Settings

    assert FORCED_AFTER * Settings().broker_renew_records <= 10_000


def test_zero_turns_renewals_off() -> None:
    assert RenewalPolicy(0).reason(10**9, events_arrived=False) is None
