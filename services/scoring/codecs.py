"""Faust codecs for table values: table state lives as Python objects in memory, JSON on the changelog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from faust.serializers import codecs

from services.scoring.domain.deals import DealSnapshot
from services.scoring.domain.rep_state import RepState


@dataclass
class DealState:
    """A deal's last applied snapshot and the ledger sequence of the last event seen for it.

    `seq` is the dedup marker: it lives in the same table value as the snapshot it guards, so a
    changelog restore can never separate them."""

    seq: int
    snapshot: DealSnapshot


class DealStateCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps({"seq": obj.seq, "snapshot": obj.snapshot.to_dict()})

    def _loads(self, s: bytes) -> Any:
        data = orjson.loads(s)
        return DealState(seq=data["seq"], snapshot=DealSnapshot.from_dict(data["snapshot"]))


class RepStateCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj.to_dict())

    def _loads(self, s: bytes) -> Any:
        return RepState.from_dict(orjson.loads(s))


codecs.register("sp_deal_state", DealStateCodec())
codecs.register("sp_rep_state", RepStateCodec())
