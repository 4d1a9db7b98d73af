"""Faust codecs for table values: table state lives as Python objects in memory, JSON on the changelog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import orjson
from faust.serializers import codecs

from services.scoring.domain.deals import DealSnapshot
from services.scoring.domain.fx import ONE, Rate, decode_rate, encode_rate
from services.scoring.domain.kpis import KpiTotals
from services.scoring.domain.minute_days import MinuteDay
from services.scoring.domain.rep_state import RepState


@dataclass(slots=True)
class DealState:
    """A deal's last applied snapshot and the ledger sequence of the last event seen for it.

    `seq` is the dedup marker: it lives in the same table value as the snapshot it guards, so a
    changelog restore can never separate them. `event_json` is the canonical event JSON the snapshot was
    read from: stored as it came, it needs no encoding on the hot path. `managers` is whom the snapshot's
    credit rolled up to, by rep (services/scoring/domain/rollup.py): the next snapshot takes back exactly that.
    `rate` is the rate its credit was converted at (services/scoring/domain/fx.py: `ONE`, a rate, or `HELD`).
    `pending` and `pending_rate` are whom and at what rate it is being moved to by reconcile number `rollup_n`
    after a roster or FX change (services/scoring/agents.py, `reconcile_rollup`), until the move's credits are
    sent."""

    seq: int
    snapshot: DealSnapshot
    event_json: bytes | None = None
    managers: dict[str, str] | None = None
    pending: dict[str, str] | None = None
    rollup_n: int = 0
    rate: Rate = ONE
    pending_rate: Rate = ONE


def encode_deal_state(state: DealState) -> bytes:
    """The changelog form of a deal's table value: `{"seq", "event"}` (or `{"seq", "snapshot"}` without
    the event's JSON), with the roll-up's `managers`, `pending` and `rollup_n` when there are any, and the
    `rate` (`pending_rate`) when it is not one (null: held)."""
    extra = b""
    if state.rate != ONE:
        extra += b',"rate":' + orjson.dumps(encode_rate(state.rate))
    if state.pending is not None and state.pending_rate != ONE:
        extra += b',"pending_rate":' + orjson.dumps(encode_rate(state.pending_rate))
    if state.managers:
        extra += b',"managers":' + orjson.dumps(state.managers)
    if state.pending is not None:
        extra += b',"pending":' + orjson.dumps(state.pending)
    if state.rollup_n:
        extra += b',"rollup_n":%d' % state.rollup_n
    if state.event_json is not None:
        return b'{"seq":%d,"event":%s%s}' % (state.seq, state.event_json, extra)
    return b'{"seq":%d,"snapshot":%s%s}' % (state.seq, orjson.dumps(state.snapshot.to_dict()), extra)


def decode_deal_state(raw: bytes) -> DealState:
    data = orjson.loads(raw)
    rollup = (
        data.get("managers"), data.get("pending"), data.get("rollup_n", 0),
        decode_rate(data["rate"]) if "rate" in data else ONE,
        decode_rate(data["pending_rate"]) if "pending_rate" in data else ONE,
    )
    if "event" in data:
        event = data["event"]
        return DealState(data["seq"], DealSnapshot.from_event(event), orjson.dumps(event), *rollup)
    return DealState(data["seq"], DealSnapshot.from_dict(data["snapshot"]), None, *rollup)


def event_json(envelope: bytes) -> bytes | None:
    """The event inside a relay envelope `{"seq":N,"accepted_ms":M,"event":{...}}`, as it is, without a
    decode and an encode; None if the envelope is not in that form."""
    start = envelope.find(b'"event":')  # the header before it holds only digits
    if start < 0 or not envelope.endswith(b"}"):
        return None
    return envelope[start + 8 : -1]


class DealStateCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return encode_deal_state(obj)

    def _loads(self, s: bytes) -> Any:
        return decode_deal_state(s)


class RepStateCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return orjson.dumps(obj.to_dict())

    def _loads(self, s: bytes) -> Any:
        return RepState.from_dict(orjson.loads(s))


class MinuteDayCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return cast(bytes, obj.encode())

    def _loads(self, s: bytes) -> Any:
        return MinuteDay.from_dict(orjson.loads(s))


codecs.register("sp_deal_state", DealStateCodec())
codecs.register("sp_rep_state", RepStateCodec())
codecs.register("sp_minute_day", MinuteDayCodec())


_Fingerprint = tuple[Any, ...]
_MINUTE_FORMS_LIMIT = 4096


def _fingerprint(totals: KpiTotals) -> _Fingerprint:
    # Every change the rep agent makes moves one of these: credits move the sums, an activity moves the count.
    return (
        totals.revenue,
        totals.deals_won,
        totals.deals_lost,
        totals.renewals_won,
        totals.renewals_lost,
        totals.activities,
        len(totals.activities_by_kind),
        None if totals.overlay is None else _fingerprint(totals.overlay),
        None if totals.team is None else _fingerprint(totals.team),
        None if totals.currencies is None else tuple((c, _fingerprint(s)) for c, s in totals.currencies.items()),
    )


class RepStateEncoder:
    """`orjson.dumps(state.to_dict())`, re-encoding only the periods whose totals changed since the last call.

    A rep's state holds ~130 periods and a batch touches a handful, yet the whole state goes to the changelog
    and the snapshot after every batch; encoding each period's totals (Decimals to strings) was most of the
    rep agent's time. Periods are cached per rep by (kind, key) with the totals object and its fingerprint,
    so a replaced or changed totals object is always re-encoded. At most `max_reps` reps are cached.
    """

    def __init__(self, max_reps: int = 20_000) -> None:
        self._max_reps = max_reps
        self._periods: dict[str, dict[tuple[str, str], tuple[KpiTotals, _Fingerprint, bytes]]] = {}
        self._minute_forms: dict[int, tuple[KpiTotals, orjson.Fragment]] = {}
        """Encoded minute-entry totals by object: the entries of one activity kind share theirs (RepState), so a
        batch's outboxes encode a handful of them. Kept with the object, so an id is never taken for another's."""

    def _minute_form(self, totals: KpiTotals) -> orjson.Fragment:
        forms = self._minute_forms
        known = forms.get(id(totals))
        if known is None or known[0] is not totals:
            if len(forms) >= _MINUTE_FORMS_LIMIT:
                forms.clear()
            known = forms[id(totals)] = (totals, orjson.Fragment(orjson.dumps(totals.to_dict())))
        return known[1]

    def encode(self, state: RepState) -> bytes:
        cached = self._periods.get(state.rep_id)
        if cached is None:
            if len(self._periods) >= self._max_reps:
                self._periods.clear()
            cached = {}
        fresh: dict[tuple[str, str], tuple[KpiTotals, _Fingerprint, bytes]] = {}
        periods: dict[str, dict[str, orjson.Fragment]] = {}
        for kind, bucket in state.periods.items():
            if not bucket:
                continue
            encoded: dict[str, orjson.Fragment] = {}
            for key, totals in bucket.items():
                fingerprint = _fingerprint(totals)
                entry = cached.get((kind, key))
                if entry is None or entry[0] is not totals or entry[1] != fingerprint:
                    entry = (totals, fingerprint, orjson.dumps(totals.to_dict()))
                fresh[(kind, key)] = entry
                encoded[key] = orjson.Fragment(entry[2])
            periods[kind] = encoded
        self._periods[state.rep_id] = fresh
        # Everything but the periods comes from to_dict() itself, so whatever else the state stores is
        # stored here too: the periods are set aside for that call and put back at once.
        # The minute outbox (an entry per event since the last write) likewise, with its totals from `_minute_form`.
        saved, outbox = state.periods, state.minute_outbox
        state.periods, state.minute_outbox = {}, []
        try:
            data = state.to_dict()
        finally:
            state.periods, state.minute_outbox = saved, outbox
        if periods:
            data["periods"] = periods
        if outbox:
            form = self._minute_form
            data["minute_outbox"] = [[e.source, e.seq, e.minute, form(e.totals)] for e in outbox]
        return orjson.dumps(data)
