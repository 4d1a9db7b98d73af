"""When `salespulse up` renews the embedded broker (services/cli/renewal.py): the policy on the broker's growth."""

from __future__ import annotations

from aiokafka import TopicPartition

from services.cli.renewal import FORCED_AFTER, RenewalPolicy, growth

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
    assert policy.reason(FORCED_AFTER * 50_000 - 1, events_arrived=True) is None  # a bulk load: after it
    busy = policy.reason(FORCED_AFTER * 50_000, events_arrived=True)
    assert busy is not None and f"{FORCED_AFTER} times SALESPULSE_BROKER_RENEW_RECORDS with no quiet moment" in busy


def test_zero_turns_renewals_off() -> None:
    assert RenewalPolicy(0).reason(10**9, events_arrived=False) is None
