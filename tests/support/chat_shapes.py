"""What Slack and Microsoft Teams accept from an incoming webhook, written from their documented shapes, for the
local receivers the tests stand in for them with (nothing here is read back from salespulse's own code).

- Slack: https://api.slack.com/messaging/webhooks and the Block Kit reference (https://api.slack.com/reference/
  block-kit/blocks): a JSON object with `text` (the notification fallback) and up to 50 `blocks`; a `section`'s
  text object is `mrkdwn` or `plain_text` of 1–3,000 characters; a `context` has 1–10 elements; a `header` is
  `plain_text` of at most 150; `channel` optional. In mrkdwn, `&`, `<` and `>` are control characters: a literal
  one must be written `&amp;`, `&lt;`, `&gt;` (https://api.slack.com/reference/surfaces/formatting#escaping).
- Microsoft Teams: an incoming webhook takes `{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "content": <AdaptiveCard>}]}`; the card has `type` AdaptiveCard, a
  `version` Teams renders (1.0–1.5), and a `body` of elements — `TextBlock` (`text` required), `FactSet` (`facts`:
  `title` and `value` strings), `Container`/`ColumnSet`/`Image`; the whole message at most 28 KB
  (https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["slack_errors", "teams_errors"]

_SLACK_BLOCKS = {"section", "context", "header", "divider", "image", "actions", "rich_text"}
_ENTITY = re.compile(r"&(amp|lt|gt);")
_TEAMS_VERSIONS = {"1.0", "1.1", "1.2", "1.3", "1.4", "1.5"}
_TEAMS_ELEMENTS = {"TextBlock", "FactSet", "Container", "ColumnSet", "Image", "RichTextBlock"}
TEAMS_MAX_BYTES = 28 * 1024
_ADAPTIVE = "application/vnd.microsoft.card.adaptive"


def _text_object(where: str, obj: Any, most: int, kinds: tuple[str, ...] = ("mrkdwn", "plain_text")) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        return [f"{where}: a text object of type {' or '.join(kinds)}"]
    text = obj.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= most:
        return [f"{where}.text: 1 to {most} characters"]
    if obj["type"] == "mrkdwn":
        bare = _ENTITY.sub("", text)
        if "<" in bare or ">" in bare or "&" in bare:
            return [f"{where}.text: an unescaped &, < or > (Slack reads it as markup): {text!r}"]
    return []


def slack_errors(body: bytes) -> list[str]:
    """Why Slack would refuse (or mis-render) this incoming-webhook body; [] when it is fine."""
    try:
        payload = json.loads(body)
    except ValueError:
        return ["not JSON"]
    if not isinstance(payload, dict):
        return ["not a JSON object"]
    errors = []
    if not isinstance(payload.get("text"), str) or not payload["text"] or len(payload["text"]) > 40_000:
        errors.append("text: the fallback text, 1 to 40,000 characters")
    elif "<" in _ENTITY.sub("", payload["text"]) or ">" in _ENTITY.sub("", payload["text"]):
        errors.append(f"text: an unescaped < or >: {payload['text']!r}")
    if "channel" in payload and not isinstance(payload["channel"], str):
        errors.append("channel: a string")
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return [*errors, "blocks: a list of at most 50"]
    for n, block in enumerate(blocks):
        where = f"blocks[{n}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in _SLACK_BLOCKS:
            errors.append(f"{where}.type: one of {sorted(_SLACK_BLOCKS)}")
        elif kind == "section":
            errors += _text_object(f"{where}.text", block.get("text"), 3000)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                errors.append(f"{where}.elements: 1 to 10")
            else:
                for m, element in enumerate(elements):
                    errors += _text_object(f"{where}.elements[{m}]", element, 3000)
        elif kind == "header":
            errors += _text_object(f"{where}.text", block.get("text"), 150, ("plain_text",))
    return errors


def _teams_element(where: str, element: Any) -> list[str]:
    if not isinstance(element, dict) or element.get("type") not in _TEAMS_ELEMENTS:
        return [f"{where}.type: one of {sorted(_TEAMS_ELEMENTS)}"]
    if element["type"] == "TextBlock" and not isinstance(element.get("text"), str):
        return [f"{where}.text: a TextBlock needs its text"]
    if element["type"] == "FactSet":
        facts = element.get("facts")
        if not isinstance(facts, list) or not facts:
            return [f"{where}.facts: a non-empty list"]
        return [f"{where}.facts[{m}]: title and value strings" for m, fact in enumerate(facts)
                if not (isinstance(fact, dict) and isinstance(fact.get("title"), str)
                        and isinstance(fact.get("value"), str))]
    if element["type"] == "Container":
        items = element.get("items", [])
        return [e for m, item in enumerate(items) for e in _teams_element(f"{where}.items[{m}]", item)]
    return []


def teams_errors(body: bytes) -> list[str]:
    """Why a Teams incoming webhook would refuse this body; [] when it is fine."""
    if len(body) > TEAMS_MAX_BYTES:
        return [f"the message is {len(body)} bytes, over Teams' 28 KB"]
    try:
        payload = json.loads(body)
    except ValueError:
        return ["not JSON"]
    if not isinstance(payload, dict) or payload.get("type") != "message":
        return ['type: "message"']
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return ["attachments: a non-empty list"]
    errors = []
    for n, attachment in enumerate(attachments):
        where = f"attachments[{n}]"
        if not isinstance(attachment, dict) or attachment.get("contentType") != _ADAPTIVE:
            errors.append(f"{where}.contentType: application/vnd.microsoft.card.adaptive")
            continue
        card = attachment.get("content")
        if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
            errors.append(f"{where}.content.type: AdaptiveCard")
            continue
        if card.get("version") not in _TEAMS_VERSIONS:
            errors.append(f"{where}.content.version: one of {sorted(_TEAMS_VERSIONS)}")
        body_elements = card.get("body")
        if not isinstance(body_elements, list) or not body_elements:
            errors.append(f"{where}.content.body: a non-empty list")
            continue
        for m, element in enumerate(body_elements):
            errors += _teams_element(f"{where}.content.body[{m}]", element)
    return errors
