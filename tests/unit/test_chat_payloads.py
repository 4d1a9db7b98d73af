"""Slack Block Kit and Microsoft Teams Adaptive Card bodies: every kind of news (tier crossing, achievement,
streak milestone) in the shape each app documents (tests/support/chat_shapes.py), whatever the names hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
import pytest

from services.notifier.messages import slack_payload, teams_escape, teams_payload
from services.notifier.tier_crossings import ACHIEVEMENT, STREAK, TIER, TierCrossing
from tests.support.chat_shapes import slack_errors, teams_errors

HOSTILE = [
    "Ada Lovelace",
    "<!channel> & <@U123>",
    "[click](https://evil.example) **bold** _it_ `code` ~x~",
    "- a list\\n1. item",
    "# heading > quote",
    "&amp; &lt; already escaped",
    "名前 🚀 " + "x" * 180,
]


def news(kind: str, name: str) -> TierCrossing:
    details = {"rep_name": name, "badge": "\U0001F947", "description": name, "streak_name": name, "days": 5,
               "plan_name": name, "metric": "revenue", "currency": "USD", "gap_to_next": 250.0,
               "next_tier": {"tier_id": "accel", "name": name, "threshold": 1.25}}
    return TierCrossing(rep_id=name, plan_id="p", period_key="2026-03" if kind != STREAK else "2026-03-16",
                        tier_id="5" if kind == STREAK else "target" if kind == TIER else "", tier_name=name,
                        threshold=1.0 if kind == TIER else None, reward=name if kind == TIER else None,
                        crossed_at=datetime(2026, 3, 20, 12, tzinfo=UTC), details=details, kind=kind)


@pytest.mark.parametrize("kind", [TIER, ACHIEVEMENT, STREAK])
@pytest.mark.parametrize("name", HOSTILE)
def test_every_kind_of_news_is_in_each_apps_shape_whatever_the_names(kind: str, name: str) -> None:
    assert slack_errors(orjson.dumps(slack_payload(news(kind, name)))) == []
    assert teams_errors(orjson.dumps(teams_payload(news(kind, name)))) == []


def test_the_receivers_shapes_refuse_what_the_apps_refuse() -> None:
    assert slack_errors(b'{"text": "Ada <!channel>"}')  # an unescaped control character
    too_long = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
    assert slack_errors(json.dumps({"text": "t", "blocks": [too_long]}).encode())
    assert teams_errors(b'{"type": "message", "attachments": []}')
    card = {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                "content": {"type": "AdaptiveCard", "version": "2.0", "body": []}}]}
    assert teams_errors(json.dumps(card).encode()) == ["attachments[0].content.version: one of "
                                                       "['1.0', '1.1', '1.2', '1.3', '1.4', '1.5']",
                                                       "attachments[0].content.body: a non-empty list"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("[x](https://evil.example)", "\\[x\\]\\(https://evil.example\\)"),
        ("**all** _of_ `it`", "\\*\\*all\\*\\* \\_of\\_ \\`it\\`"),
        ("<at>Bob</at> & co", "&lt;at&gt;Bob&lt;/at&gt; &amp; co"),
        ("- not a list", "\\- not a list"),
        ("1. not a list", "1\\. not a list"),
        ("# not a heading", "\\# not a heading"),
        ("O'Neil, East", "O'Neil, East"),
    ],
)
def test_teams_text_shows_markup_as_written(text: str, shown: str) -> None:
    assert teams_escape(text) == shown


def test_a_teams_card_carries_the_facts_of_its_kind() -> None:
    card = teams_payload(news(TIER, "Ada"))["attachments"][0]["content"]
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    # Values are Markdown: parentheses come escaped and show as written.
    assert facts["Plan"] == "Ada" and facts["Tier"] == "Ada \\(100%\\)" and facts["Reward"] == "Ada"
    assert facts["Next"] == "USD 250.00 to go to Ada \\(125%\\)"
    streak = teams_payload(news(STREAK, "20 calls"))["attachments"][0]["content"]["body"]
    assert streak[0]["text"] == "\U0001F389 20 calls is on a 5-day streak: 20 calls \U0001F947"
    assert {f["title"]: f["value"] for f in streak[1]["facts"]} == {"Streak": "20 calls", "Days": "5",
                                                                    "Since": "2026-03-16"}
