"""What each channel says about a tier crossing (in-app, Slack, signed JSON webhook, e-mail) and about a
coaching digest, and how generic webhooks are signed. Pure functions; no I/O."""

from __future__ import annotations

import hashlib
import hmac
import html
import re
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import Any

from schemas.messages import Celebration, InAppNotification, TierRefModel
from services.common.notification_log import own_part
from services.notifier.tier_crossings import ACHIEVEMENT, STREAK, TIER, TierCrossing
from services.scoring.domain.achievements import WINDOW_KEY

__all__ = [
    "MESSAGE_ID_DOMAIN",
    "celebration_message",
    "digest_email",
    "generic_payload",
    "headline",
    "in_app_message",
    "sign",
    "slack_payload",
    "teams_escape",
    "teams_payload",
    "tier_email",
    "verify_signature",
]

MESSAGE_ID_DOMAIN = "salespulse.notifier"
MONEY_METRICS = frozenset({"revenue", "avg_deal_size"})


def _percent(ratio: float | None) -> str:
    return "?" if ratio is None else f"{ratio * 100:,.0f}%"  # grouped like the screens: 1,250%


def _amount(value: float | None, details: Mapping[str, Any]) -> str:
    if value is None:
        return "?"
    metric = details.get("metric") or ""
    if metric in MONEY_METRICS:
        return f"{details.get('currency') or 'USD'} {value:,.2f}"
    return f"{value:,.6g} {metric.replace('_', ' ')}".strip()


def rep_name(crossing: TierCrossing) -> str:
    return str(crossing.details.get("rep_name") or crossing.rep_id)


def _plan_name(crossing: TierCrossing) -> str:
    return str(crossing.details.get("plan_name") or crossing.plan_id)


def _badge(crossing: TierCrossing) -> str:
    return str(crossing.details.get("badge") or "")


def headline(crossing: TierCrossing) -> str:
    """One line: who reached which tier of which plan, in which period — and, for a late deal or a correction
    into a period that has ended, that it ended (the notification names it so nobody reads it as today's).
    For an achievement: who earned which badge, and in which period."""
    if crossing.kind == ACHIEVEMENT:
        return f"{rep_name(crossing)} earned {_badge(crossing)} {crossing.tier_name}{_period_phrase(crossing)}"
    if crossing.kind == STREAK:
        return f"{rep_name(crossing)} is on a {_streak_words(crossing)} {_badge(crossing)}"
    return (
        f"{rep_name(crossing)} reached {crossing.tier_name} ({_percent(crossing.threshold)}) in "
        f"{_plan_name(crossing)}, {period_words(crossing)}"
    )


def period_words(crossing: TierCrossing) -> str:
    """The crossing's period, and when it ended if it has ("FY2026-Q4, which ended on 2026-12-31")."""
    ended = crossing.details.get("period_ended_on")
    return f"{crossing.period_key}, which ended on {ended}" if ended else crossing.period_key


def _period_phrase(crossing: TierCrossing) -> str:
    """", in 2026-12" — nothing for an achievement over a window (earned once)."""
    return "" if crossing.period_key == WINDOW_KEY else f", in {period_words(crossing)}"


def _streak_words(crossing: TierCrossing) -> str:
    """"10-day streak: 20 calls a day"."""
    return f"{crossing.details.get('days', crossing.tier_id)}-day streak: {crossing.details.get('streak_name')}"


def _own_part(crossing: TierCrossing) -> tuple[str, dict[str, Any]] | None:
    """The part of its own an achievement or a streak milestone carries in messages (None for a tier crossing)."""
    return own_part(crossing.kind, crossing.plan_id, crossing.tier_name, crossing.tier_id, crossing.period_key,
                    crossing.details)


def gap_line(crossing: TierCrossing) -> str:
    """What is left to the next tier, as of when the crossing was seen."""
    details = crossing.details
    nxt = details.get("next_tier")
    if nxt and details.get("gap_to_next") is not None:
        return (
            f"{_amount(details['gap_to_next'], details)} to go to {nxt.get('name', nxt.get('tier_id'))} "
            f"({_percent(nxt.get('threshold'))})"
        )
    if "next_tier" in details and nxt is None:
        return "That is the top tier of the plan."
    return ""


def _common(crossing: TierCrossing) -> dict[str, Any]:
    details = crossing.details
    part = _own_part(crossing)
    if part is not None:
        return {
            "kind": crossing.kind,
            "notification_id": crossing.notification_id,
            "rep_id": crossing.rep_id,
            "name": rep_name(crossing),
            "period_key": crossing.period_key,
            part[0]: part[1],
            "crossed_at": crossing.crossed_at.isoformat(),
        }
    return {
        "notification_id": crossing.notification_id,
        "rep_id": crossing.rep_id,
        "name": rep_name(crossing),
        "plan_id": crossing.plan_id,
        "plan_name": _plan_name(crossing),
        "period_key": crossing.period_key,
        "tier": crossing.tier(),
        "reward": crossing.reward,
        "crossed_at": crossing.crossed_at.isoformat(),
        "attainment": details.get("attainment"),
        "next_tier": details.get("next_tier"),
        "gap_to_next": details.get("gap_to_next"),
    }


def in_app_message(crossing: TierCrossing) -> InAppNotification:
    """The `notifications` topic message the gateway pushes on `rep:{rep_id}` as `{"type": "notification"}`."""
    return InAppNotification.model_validate({"type": "notification", **_common(crossing), "text": headline(crossing)})


def celebration_message(crossing: TierCrossing) -> Celebration:
    """The `notifications` topic message the gateway pushes on every board the rep is on (CONTRACT §6)."""
    part = _own_part(crossing)
    if part is not None:
        return Celebration.model_validate({
            "type": "celebration", "kind": crossing.kind, "notification_id": crossing.notification_id,
            "rep_id": crossing.rep_id, "name": rep_name(crossing), "period_key": crossing.period_key,
            part[0]: part[1], "at": crossing.crossed_at,
        })
    return Celebration(
        type="celebration",
        notification_id=crossing.notification_id,
        rep_id=crossing.rep_id,
        name=rep_name(crossing),
        plan_id=crossing.plan_id,
        period_key=crossing.period_key,
        tier=TierRefModel.model_validate(crossing.tier()),
        at=crossing.crossed_at,
    )


def slack_escape(text: str) -> str:
    """Slack's escaping of `&`, `<` and `>`: a rep id or name such as `<!channel>` is shown as written instead
    of pinging the whole channel (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(crossing: TierCrossing) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook body: `text` (fallback) and Block Kit `blocks`. Every name, id and
    reward in it is user-supplied and escaped."""
    esc = slack_escape
    text = f":tada: {esc(headline(crossing))}."
    if crossing.kind == ACHIEVEMENT:
        lines = [f"{esc(_badge(crossing))} *{esc(rep_name(crossing))}* earned *{esc(crossing.tier_name)}*"
                 f"{esc(_period_phrase(crossing))}."]
        if crossing.details.get("description"):
            lines.append(esc(str(crossing.details["description"])))
        return _slack_blocks(text, lines, crossing)
    if crossing.kind == STREAK:
        lines = [f"{esc(_badge(crossing))} *{esc(rep_name(crossing))}* is on a *{esc(_streak_words(crossing))}*."]
        return _slack_blocks(text, lines, crossing)
    lines = [f":tada: *{esc(rep_name(crossing))}* reached *{esc(crossing.tier_name)}* "
             f"({_percent(crossing.threshold)}) in _{esc(_plan_name(crossing))}_, {esc(period_words(crossing))}."]
    if crossing.reward:
        lines.append(f":gift: Reward: {esc(crossing.reward)}")
    gap = gap_line(crossing)
    if gap:
        lines.append(esc(gap))
    return _slack_blocks(text, lines, crossing)


def _slack_blocks(text: str, lines: list[str], crossing: TierCrossing) -> dict[str, Any]:
    context = f"salespulse · {slack_escape(crossing.notification_id)}"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


_TEAMS_MARKUP = re.compile(r"([\\`*_\[\]()~])")
_TEAMS_BLOCK_START = re.compile(r"^(\s*)([-+#>])")
_TEAMS_ORDERED_START = re.compile(r"^(\s*\d+)([.)])")


def teams_escape(text: str) -> str:
    """User-supplied text for an Adaptive Card's TextBlock or fact (Markdown, no HTML): `&`, `<` and `>` as
    entities (no HTML or `<at>` mention forms), a backslash before the characters that start emphasis, links or
    code, and before a list or heading marker at the start — so a name like `[x](https://…)` or `**all**` shows
    as written (https://learn.microsoft.com/microsoftteams/platform/task-modules-and-cards/cards/cards-format)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _TEAMS_MARKUP.sub(r"\\\1", text)
    text = _TEAMS_BLOCK_START.sub(r"\1\\\2", text)
    return _TEAMS_ORDERED_START.sub(r"\1\\\2", text)


def _facts(crossing: TierCrossing) -> list[tuple[str, str]]:
    """What a card lists under its headline, by kind."""
    details = crossing.details
    if crossing.kind == ACHIEVEMENT:
        facts = [("Badge", f"{_badge(crossing)} {crossing.tier_name}")]
        if crossing.period_key != WINDOW_KEY:
            facts.append(("Period", period_words(crossing)))
        if details.get("description"):
            facts.append(("About", str(details["description"])))
        return facts
    if crossing.kind == STREAK:
        return [("Streak", str(details.get("streak_name") or crossing.plan_id)),
                ("Days", str(details.get("days") or crossing.tier_id)), ("Since", crossing.period_key)]
    facts = [("Plan", _plan_name(crossing)), ("Tier", f"{crossing.tier_name} ({_percent(crossing.threshold)})"),
             ("Period", period_words(crossing))]
    if crossing.reward:
        facts.append(("Reward", crossing.reward))
    gap = gap_line(crossing)
    if gap:
        facts.append(("Next", gap))
    return facts


def teams_payload(crossing: TierCrossing) -> dict[str, Any]:
    """A Microsoft Teams incoming-webhook body: a message with one Adaptive Card (schema 1.4) — the headline, the
    facts, and the notification id. Every user-supplied text in it is escaped (`teams_escape`)."""
    esc = teams_escape
    body = [
        {"type": "TextBlock", "text": f"\U0001F389 {esc(headline(crossing))}", "size": "Large", "weight": "Bolder",
         "wrap": True},
        {"type": "FactSet", "facts": [{"title": title, "value": esc(value)} for title, value in _facts(crossing)]},
        {"type": "TextBlock", "text": f"salespulse · {crossing.notification_id}", "size": "Small", "isSubtle": True,
         "wrap": True},
    ]
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "body": body, "msteams": {"width": "Full"}}
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def generic_payload(crossing: TierCrossing, sent_at: int) -> dict[str, Any]:
    """The generic JSON webhook body; `sent_at` (Unix seconds) equals the X-Salespulse-Timestamp header and
    is inside the signed body, so a receiver can reject stale replays."""
    kind = {ACHIEVEMENT: "achievement", STREAK: "streak_milestone"}.get(crossing.kind, "tier_crossing")
    return {"type": kind, "sent_at": sent_at, **_common(crossing)}


def sign(secret: str, body: bytes) -> str:
    """The X-Salespulse-Signature value: `sha256=` + hex HMAC-SHA256 of the raw body under `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is the signature of `body` (constant-time compare): what a receiver does."""
    return bool(header) and hmac.compare_digest(sign(secret, body), header or "")


def message_id(local_part: str) -> str:
    return f"<{local_part}@{MESSAGE_ID_DOMAIN}>"


def _crossing_email(crossing: TierCrossing, subject: str, to: str, sender: str) -> EmailMessage:
    """An e-mail's headers; the Message-ID is derived from the notification id (a resend is recognisable)."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = to
    msg["Message-ID"] = message_id(crossing.notification_id)
    msg["X-Salespulse-Notification-Id"] = crossing.notification_id
    return msg


def tier_email(crossing: TierCrossing, *, to: str, sender: str) -> EmailMessage:
    """A multipart (plain text + HTML) e-mail with the tier, the reward and the gap to the next tier.
    The Message-ID is derived from the notification id, so a resend after a crash is recognisable."""
    if crossing.kind != TIER:
        return _recognition_email(crossing, to=to, sender=sender)
    name = rep_name(crossing)
    reward = crossing.reward or "—"
    gap = gap_line(crossing)
    attainment = crossing.details.get("attainment")
    msg = _crossing_email(
        crossing, f"You reached {crossing.tier_name} in {_plan_name(crossing)} ({period_words(crossing)})", to, sender
    )
    plain = [
        f"Congratulations, {name}!",
        "",
        f"You reached the {crossing.tier_name} tier ({_percent(crossing.threshold)} of quota) in "
        f"{_plan_name(crossing)} for {period_words(crossing)}.",
        "",
        f"Tier:       {crossing.tier_name} ({_percent(crossing.threshold)})",
        f"Reward:     {reward}",
    ]
    if attainment is not None:
        plain.append(f"Attainment: {_percent(attainment)}")
    if gap:
        plain.append(f"Next:       {gap}")
    plain += ["", f"Reached at {crossing.crossed_at.isoformat()}."]
    msg.set_content("\n".join(plain) + "\n")
    e = html.escape
    rows = [("Tier", f"{crossing.tier_name} ({_percent(crossing.threshold)})"), ("Reward", reward)]
    if attainment is not None:
        rows.append(("Attainment", _percent(attainment)))
    if gap:
        rows.append(("Next", gap))
    table = "".join(f"<tr><th align=\"left\">{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    msg.add_alternative(
        "<html><body>"
        f"<h2>Congratulations, {e(name)}!</h2>"
        f"<p>You reached the <strong>{e(crossing.tier_name)}</strong> tier in {e(_plan_name(crossing))} "
        f"for {e(period_words(crossing))}.</p>"
        f"<table>{table}</table>"
        "</body></html>",
        subtype="html",
    )
    return msg


def _recognition_email(crossing: TierCrossing, *, to: str, sender: str) -> EmailMessage:
    """An achievement earned ("You earned 🥇 First deal, in 2026-12") or a streak milestone ("You are on a 10-day
    streak: 20 calls a day 🔥")."""
    name, badge = rep_name(crossing), _badge(crossing)
    description = crossing.details.get("description")
    if crossing.kind == STREAK:
        line = f"You are on a {_streak_words(crossing)} {badge}"
    else:
        line = f"You earned {badge} {crossing.tier_name}{_period_phrase(crossing)}"
    msg = _crossing_email(crossing, line, to, sender)
    plain = [f"Congratulations, {name}!", "", f"{line}."]
    if description:
        plain += ["", str(description)]
    plain += ["", f"Earned at {crossing.crossed_at.isoformat()}."]
    msg.set_content("\n".join(plain) + "\n")
    e = html.escape
    about = f"<p>{e(str(description))}</p>" if description else ""
    msg.add_alternative(
        f"<html><body><h2>Congratulations, {e(name)}!</h2><p>{e(line)}.</p>{about}</body></html>",
        subtype="html",
    )
    return msg


def digest_email(
    *, digest_id: str, team_name: str, manager_name: str, to: str, sender: str, rows: Sequence[Mapping[str, Any]],
    streaks: Sequence[Mapping[str, Any]] = (),
) -> EmailMessage:
    """The coaching digest: the team's reps whose pace in a plan is below the configured level, and the streaks
    about to break (today not met yet)."""
    msg = EmailMessage()
    count = len({row["rep_id"] for row in rows})
    parts = [f"{count} rep{'s' if count != 1 else ''} behind pace"] if rows else []
    if streaks:
        parts.append(f"{len(streaks)} streak{'s' if len(streaks) != 1 else ''} about to break")
    msg["Subject"] = f"Coaching digest for {team_name}: {', '.join(parts)}"
    msg["From"] = sender
    msg["To"] = to
    msg["Message-ID"] = message_id(digest_id)
    msg["X-Salespulse-Digest-Id"] = digest_id
    plain = [f"Hello {manager_name},", ""]
    if rows:
        plain += [f"These reps of {team_name} are behind pace:", ""]
    for row in rows:
        plain.append(
            f"- {row['name']}: {row['plan_name']} {row['period_key']} — attainment {_percent(row['attainment'])}, "
            f"pace {row['pace']:.2f} with {_percent(row['elapsed'])} of the period gone"
        )
    if streaks:
        plain += ["", "Streaks about to break (not met yet today):", ""]
        plain += [
            f"- {s['name']} — a {s['days']}-day streak of {s['streak_name']}, since {s['since']}" for s in streaks
        ]
    msg.set_content("\n".join(plain) + "\n")
    e = html.escape
    body = "".join(
        f"<tr><td>{e(str(row['name']))}</td><td>{e(str(row['plan_name']))}</td><td>{e(str(row['period_key']))}</td>"
        f"<td>{_percent(row['attainment'])}</td><td>{row['pace']:.2f}</td><td>{_percent(row['elapsed'])}</td></tr>"
        for row in rows
    )
    behind = (
        f"<p>These reps of {e(team_name)} are behind pace:</p>"
        "<table><tr><th>Rep</th><th>Plan</th><th>Period</th><th>Attainment</th><th>Pace</th><th>Period gone</th></tr>"
        f"{body}</table>"
    ) if rows else ""
    at_risk = "".join(
        f"<li>{e(str(s['name']))} — a {s['days']}-day streak of {e(str(s['streak_name']))}, since {s['since']}</li>"
        for s in streaks
    )
    risky = f"<p>Streaks about to break (not met yet today):</p><ul>{at_risk}</ul>" if streaks else ""
    msg.add_alternative(
        f"<html><body><p>Hello {e(manager_name)},</p>{behind}{risky}</body></html>",
        subtype="html",
    )
    return msg
