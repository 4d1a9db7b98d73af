"""Tier crossings read from a snapshot, what each channel says about them, the webhook signature, and which
reps the coaching digest lists."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from schemas.config import Plan
from schemas.messages import PlanProgressEntry, RepProgress
from schemas.preferences import Preferences, parse_channels
from services.notifier.coaching import reps_behind_pace
from services.notifier.messages import (
    celebration_message,
    digest_email,
    generic_payload,
    in_app_message,
    sign,
    slack_payload,
    tier_email,
    verify_signature,
)
from services.notifier.tier_crossings import crossings_in_snapshot, notification_id
from services.scoring.domain.periods import Calendar
from tests.support.events import AE_PLAN

PLAN: dict[str, Any] = {**AE_PLAN, "quota": 100000}
AT = "2026-11-20T10:00:00.123456+00:00"


def snapshot(reached: dict[str, Any], progress: list[dict[str, Any]] | None = None) -> RepProgress:
    """What the notifier reads of a rep-snapshots message (schemas.messages)."""
    return RepProgress.model_validate({"rep_id": "ada", "version": 7, "progress": progress or [], "reached": reached})


PROGRESS = {
    "plan_id": "ae-revenue", "period_key": "2026-11", "metric": "revenue", "value": 130000.0, "quota": 100000.0,
    "attainment": 1.3, "tier": {"tier_id": "accel", "name": "Accelerator", "threshold": 1.25}, "next_tier": None,
    "gap_to_next": None, "payout": 9000.0, "rewards": ["Shout-out at all-hands", "1 extra day of PTO"],
    "pace": 2.0, "forecast_attainment": 2.0,
}


def test_tiers_crossed_at_once_come_lowest_threshold_first() -> None:
    found = crossings_in_snapshot(
        snapshot({"ae-revenue": {"2026-11": {"accel": AT, "target": AT}}}, [PROGRESS]), {"ae-revenue": PLAN}
    )
    assert [c.tier_id for c in found] == ["target", "accel"]
    target = found[0]
    assert (target.tier_name, target.threshold, target.reward) == ("Target", 1.0, "Shout-out at all-hands")
    assert target.crossed_at == datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=UTC)
    assert target.details["plan_name"] == "AE revenue accelerator" and target.details["attainment"] == 1.3


def test_older_crossings_come_before_newer_ones_whatever_the_threshold() -> None:
    found = crossings_in_snapshot(
        snapshot({"ae-revenue": {"2026-10": {"accel": "2026-10-30T09:00:00Z"}, "2026-11": {"target": AT}}}),
        {"ae-revenue": PLAN},
    )
    assert [(c.period_key, c.tier_id) for c in found] == [("2026-10", "accel"), ("2026-11", "target")]


def test_a_tier_at_zero_is_never_a_crossing() -> None:
    found = crossings_in_snapshot(snapshot({"ae-revenue": {"2026-11": {"base": AT, "target": AT}}}),
                                  {"ae-revenue": PLAN})
    assert [c.tier_id for c in found] == ["target"]


def test_a_deleted_plan_still_yields_its_crossings() -> None:
    found = crossings_in_snapshot(snapshot({"gone": {"2026-11": {"gold": AT}}}), {})
    assert [(c.plan_id, c.tier_name, c.threshold) for c in found] == [("gone", "gold", None)]


def test_notification_ids_are_stable_and_distinct() -> None:
    a = notification_id("ada", "ae-revenue", "2026-11", "target")
    assert a == notification_id("ada", "ae-revenue", "2026-11", "target")
    assert a != notification_id("ada", "ae-revenue", "2026-12", "target")
    assert a.startswith("tc_") and len(a) <= 40


def crossing(progress: dict[str, Any] | None = None) -> Any:
    entry = dict(PROGRESS if progress is None else progress)
    found = crossings_in_snapshot(snapshot({"ae-revenue": {"2026-11": {"target": AT}}}, [entry]), {"ae-revenue": PLAN})
    found[0].details["rep_name"] = "Ada Lovelace"
    return found[0]


def test_the_email_has_plain_and_html_parts_with_tier_reward_and_gap() -> None:
    c = crossing({**PROGRESS, "attainment": 1.1, "next_tier": {"tier_id": "accel", "name": "Accelerator",
                                                                  "threshold": 1.25}, "gap_to_next": 15000.0})
    raw = tier_email(c, to="ada@example.com", sender="sp@example.com").as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Message-ID"] == f"<{c.notification_id}@salespulse.notifier>"
    assert parsed.is_multipart()
    plain = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    for text in (plain, html):
        assert "Target" in text and "Shout-out at all-hands" in text
        assert "USD 15,000.00 to go to Accelerator (125%)" in text
    assert "Target" in parsed["Subject"]


def test_slack_payload_has_text_and_blocks() -> None:
    payload = slack_payload(crossing())
    assert "Ada Lovelace reached Target (100%)" in payload["text"]
    assert payload["blocks"][0]["type"] == "section"
    assert "Shout-out at all-hands" in payload["blocks"][0]["text"]["text"]


def test_generic_webhook_signature_covers_the_raw_body() -> None:
    body = orjson.dumps(generic_payload(crossing(), 1_700_000_000))
    signature = sign("s3cret", body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature("s3cret", body, signature)
    assert not verify_signature("other", body, signature)
    assert not verify_signature("s3cret", body + b" ", signature)
    assert orjson.loads(body)["sent_at"] == 1_700_000_000


def test_in_app_and_celebration_messages_follow_the_contract() -> None:
    c = crossing()
    note = in_app_message(c).model_dump(mode="json")
    assert note["type"] == "notification" and note["notification_id"] == c.notification_id
    assert note["tier"] == {"tier_id": "target", "name": "Target", "threshold": 1.0}
    party = celebration_message(c).screen_payload()  # what a board's socket is pushed
    assert set(party) == {"type", "notification_id", "rep_id", "name", "plan_id", "period_key", "tier", "at"}
    assert party["type"] == "celebration" and party["name"] == "Ada Lovelace"


def test_preferences_reject_unknown_and_repeated_channels_and_bad_quiet_hours() -> None:
    assert Preferences.model_validate({"channels": ["email"], "quiet_hours": {"start": "22:00", "end": "07:00"},
                                       "max_per_hour": 3}).quiet() is not None
    for bad in ({"channels": ["sms"]}, {"channels": ["email", "email"]},
                {"quiet_hours": {"start": "22:00", "end": "22:00"}},
                {"quiet_hours": {"start": "25:00", "end": "07:00"}},
                {"max_per_hour": 0}, {"colour": "red"}):
        with pytest.raises(ValueError):
            Preferences.model_validate(bad)
    assert parse_channels(" in_app, email ,") == ["in_app", "email"]
    with pytest.raises(ValueError, match="sms"):
        parse_channels("in_app,sms")


# --- coaching digest -----------------------------------------------------------------------------------------

MONTHLY = Plan.model_validate({**PLAN, "quota": 1000, "participants": {"teams": ["east"], "reps": []}})
CAL = Calendar("UTC", 1)
ROSTER = {r: {"rep_id": r, "name": r.title(), "team_id": "east"} for r in ("ada", "bob", "cy", "mia")}


def progress(attainment: float, period_key: str = "2026-11") -> list[PlanProgressEntry]:
    return [PlanProgressEntry.model_validate({**PROGRESS, "period_key": period_key, "attainment": attainment})]


def behind(now: datetime, progress_by_rep: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
    return reps_behind_pace(
        team_id="east", members=sorted(ROSTER), roster=ROSTER, manager_rep_id="mia", plans=[MONTHLY],
        progress_by_rep=progress_by_rep, calendar=CAL, now=now, pace_below=kw.get("pace_below", 0.8),
        min_elapsed=kw.get("min_elapsed", 0.4),
    )


def test_digest_lists_reps_below_pace_slowest_first_and_not_the_manager() -> None:
    now = datetime(2026, 11, 19, 0, 0, tzinfo=UTC)  # 18 of 30 days gone: elapsed 0.6
    rows = behind(now, {"ada": progress(0.9), "bob": progress(0.2), "mia": progress(0.0),
                        "cy": progress(0.9, "2026-10")})
    assert [(r["rep_id"], r["pace"]) for r in rows] == [("cy", 0.0), ("bob", pytest.approx(0.333333, abs=1e-6))]
    assert rows[1]["elapsed"] == pytest.approx(0.6) and rows[1]["plan_name"] == "AE revenue accelerator"


def test_digest_is_silent_early_in_the_period() -> None:
    now = datetime(2026, 11, 10, 0, 0, tzinfo=UTC)  # 9 of 30 days: 30 % < 40 %
    assert behind(now, {"bob": progress(0.0)}) == []
    assert [r["rep_id"] for r in behind(now, {"bob": progress(0.0)}, min_elapsed=0.25)] == ["ada", "bob", "cy"]


def test_pace_exactly_at_the_level_is_not_behind() -> None:
    now = datetime(2026, 11, 16, 0, 0, tzinfo=UTC)  # elapsed 0.5
    rows = behind(now, {"ada": progress(0.4), "bob": progress(0.399), "cy": progress(1.0)})
    assert [r["rep_id"] for r in rows] == ["bob"]
    assert Decimal(str(rows[0]["pace"])) < Decimal("0.8")


def test_digest_email_lists_each_row() -> None:
    rows = behind(datetime(2026, 11, 19, tzinfo=UTC), {"bob": progress(0.2)})
    msg = digest_email(digest_id="cd_x", team_name="East", manager_name="Mia", to="mia@example.com",
                       sender="sp@example.com", rows=rows)
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    plain = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Bob" in plain and "Cy" in plain and "Ada" in plain and "Mia" not in plain.split("\n", 1)[1]
    assert parsed["Subject"] == "Coaching digest for East: 3 reps behind pace"
