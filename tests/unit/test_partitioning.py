"""Scoring, the relay and Faust's tables must put a key where Kafka's default partitioner puts it."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as kafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.topics import murmur2, partition_for


@settings(max_examples=2000, deadline=None)
@given(data=st.binary(max_size=80))
def test_murmur2_equals_kafka_s_for_any_bytes(data: bytes) -> None:
    assert murmur2(data) == kafka_murmur2(data)


@settings(max_examples=500, deadline=None)
@given(key=st.text(max_size=40), partitions=st.integers(min_value=1, max_value=64))
def test_a_key_goes_to_the_partition_the_default_partitioner_gives_it(key: str, partitions: int) -> None:
    every = list(range(partitions))
    assert partition_for(key, partitions) == DefaultPartitioner()(key.encode(), every, every)


def test_known_partitions_of_kafka_s_java_client() -> None:
    # Values from the Java client's Utils.murmur2 (kafka-clients UtilsTest), as 32-bit unsigned.
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert murmur2(b"foobar") == -790332482 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") == -985981536 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-longer-string") == -1486304829 & 0xFFFFFFFF
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971 & 0xFFFFFFFF
    assert murmur2(b"abc") == 479470107
