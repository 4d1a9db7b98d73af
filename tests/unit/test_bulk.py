"""`long_lived`: objects built in its block are out of the collector's reach afterwards, the collector is
as it was, and garbage made before the block is not frozen with them."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from services.common.bulk import COLLECTOR_THRESHOLDS, collect_less_often, long_lived


@pytest.fixture(autouse=True)
def _thaw() -> Iterator[None]:
    gc.unfreeze()  # what other tests froze is not counted here
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_objects_built_in_the_block_are_frozen_and_the_collector_runs_again_after_it() -> None:
    assert gc.isenabled()
    frozen_before = gc.get_freeze_count()
    with long_lived():
        assert not gc.isenabled()
        kept = [[n] for n in range(1000)]  # lists: always tracked by the collector (unlike a dict of atoms)
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen_before + len(kept)
    assert all(gc.is_tracked(item) for item in kept)


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with long_lived():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_garbage_made_before_the_block_is_collected_not_frozen() -> None:
    node = Node()
    gone = weakref.ref(node)
    del node  # unreachable, but alive until a collection
    with long_lived():
        pass
    assert gone() is None


def test_collect_less_often_sets_the_thresholds_and_young_garbage_cycles_are_still_collected() -> None:
    before = gc.get_threshold()
    try:
        collect_less_often()
        assert gc.get_threshold() == COLLECTOR_THRESHOLDS
        node = Node()
        gone = weakref.ref(node)
        del node
        held = [[] for _ in range(COLLECTOR_THRESHOLDS[0] + 1_000)]  # net allocations: a young collection
        assert len(held) > COLLECTOR_THRESHOLDS[0]
        assert gone() is None
    finally:
        gc.set_threshold(*before)
