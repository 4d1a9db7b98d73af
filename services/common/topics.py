"""The one place that knows topic names, keys and partitioning."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.partitioner import DefaultPartitioner

from services.common.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    """A topic salespulse creates at start-up."""

    name: str
    compacted: bool = False


DEALS = "events.deals"
ACTIVITIES = "events.activities"
CREDITS = "credits"
REP_SNAPSHOTS = "rep-snapshots"
CONFIG = "config"
NOTIFICATIONS = "notifications"
DEAD_LETTER = "dead-letter"

ALL_TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(DEALS),
    TopicSpec(ACTIVITIES),
    TopicSpec(CREDITS),
    TopicSpec(REP_SNAPSHOTS, compacted=True),
    TopicSpec(CONFIG, compacted=True),
    TopicSpec(NOTIFICATIONS),
    TopicSpec(DEAD_LETTER),
)


def topic_name(settings: Settings, short: str) -> str:
    return f"{settings.topic_prefix}{short}"


_partitioner = DefaultPartitioner()


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives a key; Faust tables agree with it."""
    raw = key.encode()
    return int(_partitioner(raw, list(range(partitions)), list(range(partitions))))
