"""Board standings: value descending, shared ranks for ties, zeros only where the board has room."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.scoring.domain.plans import TierRef
from services.scoring.domain.standings import Entry, rank


def entry(rep_id: str, value: int | str) -> Entry:
    return Entry(rep_id=rep_id, value=Decimal(value))


def test_equal_values_share_a_rank_and_the_next_rank_skips() -> None:
    standings = rank([entry("d", 5), entry("a", 9), entry("c", 7), entry("b", 7)], size=10)

    assert [(r.rank, r.rep_id) for r in standings] == [(1, "a"), (2, "b"), (2, "c"), (4, "d")]


def test_ties_are_ordered_by_rep_id() -> None:
    standings = rank([entry("rep-3", 1), entry("rep-1", 1), entry("rep-2", 1)], size=10)

    assert [(r.rank, r.rep_id) for r in standings] == [(1, "rep-1"), (1, "rep-2"), (1, "rep-3")]


def test_equal_decimals_written_differently_tie() -> None:
    standings = rank([entry("b", "1.50"), entry("a", "1.5")], size=10)

    assert [r.rank for r in standings] == [1, 1]


def test_the_board_shows_only_its_size() -> None:
    standings = rank([entry(f"rep-{i:02}", i) for i in range(1, 21)], size=3)

    assert [(r.rank, r.rep_id) for r in standings] == [(1, "rep-20"), (2, "rep-19"), (3, "rep-18")]


def test_a_tie_across_the_size_cut_keeps_rep_id_order() -> None:
    standings = rank([entry("c", 5), entry("b", 5), entry("a", 9)], size=2)

    assert [(r.rank, r.rep_id) for r in standings] == [(1, "a"), (2, "b")]


def test_reps_at_zero_are_listed_after_the_others_when_there_is_room() -> None:
    standings = rank([entry("a", 0), entry("b", 3), entry("c", 0), entry("d", 1)], size=10)

    assert [(r.rank, r.rep_id) for r in standings] == [(1, "b"), (2, "d"), (3, "a"), (3, "c")]


def test_reps_at_zero_are_left_off_a_full_board() -> None:
    standings = rank([entry("a", 0), entry("b", 3), entry("c", 0), entry("d", 1)], size=2)

    assert [r.rep_id for r in standings] == ["b", "d"]


def test_zeros_fill_only_the_room_that_is_left() -> None:
    standings = rank([entry("z", 0), entry("b", 3), entry("a", 0)], size=2)

    assert [(r.rank, r.rep_id) for r in standings] == [(1, "b"), (2, "a")]


def test_an_empty_board_has_no_standings() -> None:
    assert rank([], size=10) == []


@given(
    st.dictionaries(st.text(alphabet="abcdef", min_size=1, max_size=3), st.integers(0, 5), max_size=30),
    st.integers(min_value=1, max_value=100),
)
def test_a_rank_is_one_plus_the_number_of_reps_with_a_higher_value(values: dict[str, int], size: int) -> None:
    standings = rank([entry(rep_id, value) for rep_id, value in values.items()], size=size)

    assert len(standings) == min(size, len(values))
    for ranked in standings:
        assert ranked.rank == 1 + sum(1 for v in values.values() if v > ranked.value)
    assert [(-r.value, r.rep_id) for r in standings] == sorted((-r.value, r.rep_id) for r in standings)


def test_a_standings_entry_has_the_contract_shape() -> None:
    ranked = rank([Entry(rep_id="rep-1", value=Decimal("1234.565"), name="Ada", team_id="east")], size=1)[0]

    assert ranked.to_dict(metric="revenue") == {
        "rank": 1,
        "rep_id": "rep-1",
        "name": "Ada",
        "team_id": "east",
        "value": 1234.57,
    }


def test_a_board_with_a_plan_adds_attainment_and_tier() -> None:
    tier = TierRef(tier_id="target", name="Target", threshold=1.0)
    ranked = rank([Entry(rep_id="rep-1", value=Decimal(3), attainment=Decimal(1) / 3, tier=tier)], size=1)[0]

    shown = ranked.to_dict(metric="deals_won", with_plan=True)

    assert shown["attainment"] == 0.333333
    assert shown["tier"] == {"tier_id": "target", "name": "Target", "threshold": 1.0}


def test_a_rep_unknown_to_the_roster_is_shown_under_the_rep_id() -> None:
    shown = rank([entry("rep-x", 1)], size=1)[0].to_dict(metric="activities")

    assert shown["name"] == "rep-x"
    assert shown["team_id"] is None
