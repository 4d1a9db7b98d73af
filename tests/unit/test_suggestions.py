"""did_you_mean: the hint after an unknown name, shared by event validation and the CSV mapping language."""

from __future__ import annotations

from schemas.suggestions import did_you_mean


def test_names_the_closest_known_name() -> None:
    assert did_you_mean("ammount", ["amount", "currency", "stage"]) == " (did you mean amount?)"
    assert did_you_mean("clsed_at", ("closed_at", "occurred_at")) == " (did you mean closed_at?)"


def test_says_nothing_when_no_name_is_close_enough() -> None:
    assert did_you_mean("zzz", ["amount", "stage"]) == ""
    assert did_you_mean("anything", []) == ""


def test_the_cutoff_sets_how_alike_a_name_must_be() -> None:
    known = {"time_of_day": None, "timezone": None}  # any iterable of names, e.g. a dict's keys
    assert did_you_mean("timzone", known, cutoff=0.6) == " (did you mean timezone?)"
    assert did_you_mean("stag", ["stage"], cutoff=0.75) == " (did you mean stage?)"
    assert did_you_mean("sage", ["usage_fee"], cutoff=0.6) == " (did you mean usage_fee?)"
    assert did_you_mean("sage", ["usage_fee"], cutoff=0.75) == ""
