"""Plans and boards on a real stack: live plan edits, progress, standings with ties, scopes, plans, contests."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import httpx
import pytest

from tests.support.clock import TEST_CLOCK
from tests.support.stack import Stack, sqlite_stack, wait_until

pytestmark = pytest.mark.integration

NOW = TEST_CLOCK.now().replace(microsecond=0)
"""The stack's now (its clock is TEST_CLOCK), read once: every event and expectation here is dated by it."""


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def won(event_id: str, rep: str, amount: str, at: datetime = NOW, kind: str = "new") -> dict[str, object]:
    return {
        "event_id": event_id,
        "type": "deal",
        "occurred_at": iso(at),
        "deal_id": f"d-{event_id}",
        "owner_id": rep,
        "stage": "won",
        "amount": amount,
        "closed_at": iso(at),
        "kind": kind,
    }


def call(event_id: str, rep: str, at: datetime) -> dict[str, object]:
    return {"event_id": event_id, "type": "activity", "occurred_at": iso(at), "rep_id": rep, "kind": "call"}


PLAN = {
    "name": "AE revenue",
    "metric": "revenue",
    "period": "month",
    "effective_from": "2020-01-01",
    "participants": {"teams": ["east"], "reps": ["solo"]},
    "quota": 1000,
    "quota_overrides": {"bo": 2000},
    "tiers": [
        {"tier_id": "base", "name": "Base", "threshold": 0.0, "rate": 0.05, "reward": None},
        {"tier_id": "target", "name": "Target", "threshold": 1.0, "rate": 0.10, "reward": "Shout-out"},
        {"tier_id": "accel", "name": "Accelerator", "threshold": 1.5, "rate": 0.20, "reward": "PTO day"},
    ],
}


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Stack:  # type: ignore[misc]

    stack = sqlite_stack(broker, tmp_path_factory, "pb").start()
    with httpx.Client(base_url=stack.api, headers=stack.headers) as api:
        for team in ("east", "west"):
            api.put(f"/v1/teams/{team}", json={"name": team.title()}).raise_for_status()
        for rep, team in (
            ("al", "east"),
            ("bo", "east"),
            ("cy", "east"),
            ("di", "west"),
            ("ed", "west"),
            ("solo", None),
        ):
            api.put(f"/v1/reps/{rep}", json={"name": rep.title(), "team_id": team}).raise_for_status()
        api.put("/v1/plans/ae", json=PLAN).raise_for_status()
    yield stack
    stack.stop()


def post(stack: Stack, events: list[dict[str, object]]) -> None:
    r = httpx.post(f"{stack.ingest}/v1/events", json=events, headers=stack.headers, timeout=30)
    assert r.status_code == 202, r.text


def get(stack: Stack, path: str, **params: str) -> dict:  # type: ignore[type-arg]
    r = httpx.get(f"{stack.api}{path}", params=params, headers=stack.headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def progress(stack: Stack, rep: str) -> dict | None:  # type: ignore[type-arg]
    plans = get(stack, f"/v1/reps/{rep}/progress")["plans"]
    return plans[0] if plans else None


def test_participants_by_team_and_by_rep(stack: Stack) -> None:
    assert progress(stack, "al") is not None  # team east
    assert progress(stack, "solo") is not None  # listed by rep
    assert progress(stack, "di") is None  # west is not in the plan


def test_progress_tiers_payout_and_override(stack: Stack) -> None:
    post(stack, [won("p1", "al", "1200.00"), won("p2", "bo", "1200.00")])
    al = wait_until(lambda: (p := progress(stack, "al")) and p["value"] == 1200.0 and p, timeout=20, what="al 1200")
    assert al["quota"] == 1000.0 and al["attainment"] == 1.2
    assert al["tier"]["tier_id"] == "target" and al["next_tier"]["tier_id"] == "accel"
    assert al["gap_to_next"] == 300.0
    assert al["payout"] == 1000 * 0.05 + 200 * 0.10
    assert al["rewards"] == ["Shout-out"]
    bo = wait_until(lambda: (p := progress(stack, "bo")) and p["value"] == 1200.0 and p, timeout=20, what="bo 1200")
    assert bo["quota"] == 2000.0 and bo["tier"]["tier_id"] == "base" and bo["rewards"] == []


def test_a_plan_edited_while_events_flow_takes_effect_without_restarts(stack: Stack) -> None:
    stop = threading.Event()

    def flow() -> None:
        n = 0
        while not stop.is_set():
            post(stack, [call(f"flow-{n}-{i}", "cy", NOW) for i in range(20)])
            n += 1

    thread = threading.Thread(target=flow)
    thread.start()
    try:
        edited = dict(PLAN, quota=5000)
        r = httpx.put(f"{stack.api}/v1/plans/ae", json=edited, headers=stack.headers)
        assert r.status_code == 200
        wait_until(lambda: (p := progress(stack, "cy")) and p["quota"] == 5000.0, timeout=10, what="new quota")
    finally:
        stop.set()
        thread.join()
        httpx.put(f"{stack.api}/v1/plans/ae", json=PLAN, headers=stack.headers).raise_for_status()
    wait_until(lambda: (p := progress(stack, "cy")) and p["quota"] == 1000.0, timeout=10, what="quota restored")


def test_standings_ties_scope_and_plan(stack: Stack) -> None:
    with httpx.Client(base_url=stack.api, headers=stack.headers) as api:
        api.put(
            "/v1/boards/east-ties",
            json={
                "title": "East",
                "metric": "deals_won",
                "period": "month",
                "scope": {"teams": ["east"]},
                "size": 10,
                "plan_id": "ae",
            },
        ).raise_for_status()
    post(stack, [won("t1", "cy", "10.00"), won("t2", "cy", "10.00"), won("t3", "di", "10.00")])
    # al 1 deal (1200), bo 1 deal, cy 2 deals: ranks 1 (cy), 2 (al), 2 (bo)

    def settled() -> dict | None:  # type: ignore[type-arg]
        body = get(stack, "/v1/boards/east-ties/standings")
        values = {e["rep_id"]: e["value"] for e in body["entries"]}
        return body if values.get("cy") == 2.0 and values.get("al") == 1.0 and values.get("bo") == 1.0 else None

    body = wait_until(settled, timeout=20, what="east standings")
    entries = body["entries"]
    assert [(e["rank"], e["rep_id"]) for e in entries] == [(1, "cy"), (2, "al"), (2, "bo")]
    assert "di" not in {e["rep_id"] for e in entries}  # west is out of scope
    al = entries[1]
    assert al["attainment"] == 1.2 and al["tier"]["tier_id"] == "target"
    assert body["period_key"] == NOW.strftime("%Y-%m")


def test_contest_window_that_cuts_through_a_day(stack: Stack) -> None:
    start = NOW.replace(second=0) - timedelta(hours=2)
    end = start + timedelta(hours=1)
    with httpx.Client(base_url=stack.api, headers=stack.headers) as api:
        api.put(
            "/v1/boards/blitz",
            json={
                "title": "Call blitz",
                "metric": "activities",
                "window": {"starts_at": iso(start), "ends_at": iso(end)},
                "size": 5,
            },
        ).raise_for_status()
    post(
        stack,
        [
            call("c-in-1", "di", start),  # first minute: in
            call("c-in-2", "di", end - timedelta(seconds=1)),  # last second: in
            call("c-in-3", "ed", start + timedelta(minutes=30)),  # in
            call("c-before", "ed", start - timedelta(seconds=1)),  # out
            call("c-after", "ed", end),  # out (end is exclusive)
        ],
    )

    def settled() -> dict | None:  # type: ignore[type-arg]
        body = get(stack, "/v1/boards/blitz/standings")
        values = {e["rep_id"]: e["value"] for e in body["entries"]}
        return body if values.get("di") == 2 and values.get("ed") == 1 else None

    body = wait_until(settled, timeout=20, what="contest standings")
    assert [(e["rank"], e["rep_id"], e["value"]) for e in body["entries"][:2]] == [(1, "di", 2), (2, "ed", 1)]


def test_team_kpis_sum_current_members_and_recompute_rates(stack: Stack) -> None:
    post(stack, [won("tk1", "di", "300.00"), {**won("tk2", "ed", "0.00"), "stage": "lost"}])

    def west() -> dict | None:  # type: ignore[type-arg]
        # Read the members around the team: the answer counts once nothing moved in between.
        di = get(stack, "/v1/reps/di/kpis", period="month")["kpis"]
        ed = get(stack, "/v1/reps/ed/kpis", period="month")["kpis"]
        team = get(stack, "/v1/teams/west/kpis", period="month")["kpis"]
        settled = get(stack, "/v1/reps/di/kpis", period="month")["kpis"] == di
        settled = settled and get(stack, "/v1/reps/ed/kpis", period="month")["kpis"] == ed
        if not settled or ed["deals_lost"] < 1 or di["revenue"] < 300:
            return None
        return {"team": team, "di": di, "ed": ed}

    seen = wait_until(west, timeout=20, what="west team KPIs")
    team, di, ed = seen["team"], seen["di"], seen["ed"]
    assert team["revenue"] == di["revenue"] + ed["revenue"]
    assert team["deals_won"] == di["deals_won"] + ed["deals_won"]
    assert team["deals_lost"] == di["deals_lost"] + ed["deals_lost"]
    won_, lost = team["deals_won"], team["deals_lost"]
    assert abs(team["win_rate"] - won_ / (won_ + lost)) < 1e-6  # recomputed from the sums, not averaged
    assert team["activities"] == di["activities"] + ed["activities"]
    # a rep who moves teams counts for the new team from then on
    httpx.put(
        f"{stack.api}/v1/reps/ed", json={"name": "Ed", "team_id": "east"}, headers=stack.headers
    ).raise_for_status()
    wait_until(
        lambda: get(stack, "/v1/teams/west/kpis", period="month")["kpis"]["deals_lost"] == di["deals_lost"],
        timeout=10,
        what="ed no longer counted for west",
    )


def test_overlay_credit_counts_for_each_rep_and_a_team_counts_the_primary_only(stack: Stack) -> None:
    """A deal with a primary owner and two overlays (CONTRACT §1, Overlay credit): each rep's revenue, the
    team's revenue by default and with overlays asked for, plans and boards that choose the roles they count,
    and a correction that drops an overlay."""
    with httpx.Client(base_url=stack.api, headers=stack.headers) as api:
        api.put("/v1/teams/north", json={"name": "North"}).raise_for_status()
        for rep, team in (("nia", "north"), ("sam", "north"), ("pat", "west")):
            api.put(f"/v1/reps/{rep}", json={"name": rep.title(), "team_id": team}).raise_for_status()
        for plan_id, roles in (("se-all", ["primary", "overlay"]), ("se-primary", ["primary"])):
            plan = {**PLAN, "name": plan_id, "participants": {"reps": ["sam"]}, "credit_roles": roles}
            api.put(f"/v1/plans/{plan_id}", json=plan).raise_for_status()
        for board_id, roles in (("north-all", None), ("north-primary", ["primary"])):
            board = {"title": board_id, "metric": "revenue", "period": "month", "scope": {"teams": ["north"]}}
            chosen = {"credit_roles": roles} if roles else {}  # none: the default, every role
            api.put(f"/v1/boards/{board_id}", json=board | chosen).raise_for_status()
    deal = {**won("ov-1", "nia", "1000.05"), "version": 1, "splits": [
        {"rep_id": "nia", "share": 1},
        {"rep_id": "sam", "share": 0.5, "role": "overlay"},
        {"rep_id": "pat", "share": 0.3, "role": "overlay"},
    ]}
    post(stack, [deal])

    def revenue(path: str, **params: str) -> float:
        return float(get(stack, path, **params)["kpis"]["revenue"])

    wait_until(lambda: revenue("/v1/reps/pat/kpis") == 300.02, timeout=20, what="pat's overlay credit")
    assert revenue("/v1/reps/nia/kpis") == 1000.05  # the overlays take nothing from the owner
    assert revenue("/v1/reps/sam/kpis") == 500.02  # 500.025, half to even
    assert get(stack, "/v1/reps/sam/kpis")["kpis"]["deals_won"] == 0.5
    assert revenue("/v1/reps/sam/kpis", roles="primary") == 0.0
    assert revenue("/v1/teams/north/kpis") == 1000.05  # a team counts the primary credit only by default
    assert revenue("/v1/teams/north/kpis", roles="primary,overlay") == 1500.07
    bad = httpx.get(f"{stack.api}/v1/teams/north/kpis", params={"roles": "owner"}, headers=stack.headers)
    assert bad.status_code == 422 and "owner" in bad.json()["detail"]

    plans = {p["plan_id"]: p["value"] for p in get(stack, "/v1/reps/sam/progress")["plans"]}
    assert plans == {"se-all": 500.02, "se-primary": 0.0}
    everyone = {e["rep_id"]: e["value"] for e in get(stack, "/v1/boards/north-all/standings")["entries"]}
    primary = {e["rep_id"]: e["value"] for e in get(stack, "/v1/boards/north-primary/standings")["entries"]}
    assert (everyone["nia"], everyone["sam"]) == (1000.05, 500.02)
    assert (primary["nia"], primary.get("sam", 0.0)) == (1000.05, 0.0)

    post(stack, [{**deal, "event_id": "ov-2", "version": 2, "splits": deal["splits"][:2]}])  # pat's overlay dropped
    wait_until(lambda: revenue("/v1/reps/pat/kpis") == 0.0, timeout=20, what="pat's overlay clawed back")
    assert revenue("/v1/reps/sam/kpis") == 500.02 and revenue("/v1/reps/nia/kpis") == 1000.05


def test_a_managers_plan_counts_the_team_at_the_time_of_each_credit(stack: Stack) -> None:
    """Manager roll-up (docs/plans-and-boards.md): a manager's plan measures the credit of the reps in the team
    they manage at the time of each credit, so a rep who moves takes only future credit along; a correction of
    a deal closed before the move stays with the old manager. Team KPIs stay sums over current members."""
    earlier = NOW - timedelta(hours=2)
    with httpx.Client(base_url=stack.api, headers=stack.headers) as api:
        for team, manager in (("m-east", "meg"), ("m-west", "wes")):
            api.put(f"/v1/reps/{manager}", json={"name": manager.title()}).raise_for_status()
            api.put(f"/v1/teams/{team}", json={"name": team, "manager_rep_id": manager}).raise_for_status()
        for rep in ("ria", "raf"):
            api.put(f"/v1/reps/{rep}", json={"name": rep.title(), "team_id": "m-east"}).raise_for_status()
        plan = {**PLAN, "name": "Managers", "participants": {"managers": ["meg", "wes"]}, "quota_overrides": {}}
        api.put("/v1/plans/managers", json=plan).raise_for_status()
    post(stack, [{**won("mr-1", "ria", "1000.00", earlier), "version": 1}, won("mr-2", "raf", "500.00", earlier)])

    def managed(manager: str) -> float | None:
        plans = {p["plan_id"]: p for p in get(stack, f"/v1/reps/{manager}/progress")["plans"]}
        return plans["managers"]["value"] if "managers" in plans else None

    wait_until(lambda: managed("meg") == 1500.0, timeout=20, what="meg's team roll-up")
    assert managed("wes") == 0.0
    assert get(stack, "/v1/reps/meg/kpis")["kpis"]["revenue"] == 0.0  # the roll-up is not her own revenue
    assert [p["plan_id"] for p in get(stack, "/v1/reps/ria/progress")["plans"]] == []  # not a rep's plan

    with httpx.Client(base_url=stack.api, headers=stack.headers) as api:
        moved = api.put("/v1/reps/ria", json={"name": "Ria", "team_id": "m-west"})
        moved.raise_for_status()
    history = moved.json()["team_history"]
    assert [spell["team_id"] for spell in history] == ["m-east"]
    after = datetime.fromisoformat(history[0]["until"]) + timedelta(seconds=1)
    post(stack, [
        won("mr-3", "ria", "300.00", after),  # after the move: wes's team
        {**won("mr-1", "ria", "1200.00", earlier), "event_id": "mr-1b", "version": 2},  # closed before it: meg's
    ])
    wait_until(lambda: (managed("meg"), managed("wes")) == (1700.0, 300.0), timeout=20,
               what="the move's future credit with wes, the correction with meg")
    # Team KPIs are sums over the current members: ria's month now counts for m-west, all of it.
    assert get(stack, "/v1/teams/m-east/kpis")["kpis"]["revenue"] == 500.0
    assert get(stack, "/v1/teams/m-west/kpis")["kpis"]["revenue"] == 1500.0

    # A rep whose deals were credited before the roster knew them: their first team applies from the start,
    # so putting them on it moves those deals' roll-up to the team's manager.
    post(stack, [won("mr-4", "rho", "50.00", earlier)])

    def rho_revenue() -> float | None:
        r = httpx.get(f"{stack.api}/v1/reps/rho/kpis", headers=stack.headers, timeout=10)
        return r.json()["kpis"]["revenue"] if r.status_code == 200 else None  # 404 until the event is in

    wait_until(lambda: rho_revenue() == 50.0, timeout=20, what="rho's deal")
    with httpx.Client(base_url=stack.api, headers=stack.headers) as api:
        api.put("/v1/reps/rho", json={"name": "Rho", "team_id": "m-east"}).raise_for_status()
    wait_until(lambda: managed("meg") == 1750.0, timeout=20, what="rho's earlier deal rolled up to meg")

    statements = get(stack, "/v1/reps/meg/statements")["statements"]
    found = next(s for s in statements if s["plan_id"] == "managers")
    statement = get(stack, f"/v1/statements/{found['statement_id']}")
    lines = {(line["member_rep_id"], line["deal_id"]): line["credit"] for line in statement["lines"]}
    assert lines == {("ria", "d-mr-1"): "1200.00", ("raf", "d-mr-2"): "500.00", ("rho", "d-mr-4"): "50.00"}
