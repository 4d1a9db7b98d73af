"""The channels a crossing goes out on: in-app and board celebrations (the `notifications` topic, pushed by the
gateway), webhooks (Slack-compatible and signed generic JSON) and e-mail over SMTP.

Each `send` either returns (delivered) or raises DeliveryError saying whether a retry can help. Webhook and
e-mail are at-least-once on the wire: every request carries an idempotency key derived from the
notification id (`Idempotency-Key` header, e-mail `Message-ID`) so a receiver can drop a resend."""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from schemas.messages import Celebration, InAppNotification, encode
from services.common.config_feed import ConfigFollower
from services.common.settings import Settings
from services.common.topics import NOTIFICATIONS, partition_for, topic_name
from services.notifier.messages import (
    celebration_message,
    generic_payload,
    in_app_message,
    sign,
    slack_payload,
    teams_payload,
    tier_email,
)
from services.notifier.store import ClaimedDelivery

__all__ = [
    "BoardChannel",
    "DeliveryError",
    "EmailChannel",
    "InAppChannel",
    "Sender",
    "WebhookChannel",
    "WebhookTarget",
    "split_urls",
]

MarkDone = Callable[[str], Awaitable[None]]
"""Called with a target's id once that target has the message (so a retry skips it)."""


class DeliveryError(Exception):
    """A failed send. `permanent`: retrying cannot help (a 4xx, an unknown address, nothing configured)."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Sender(Protocol):
    async def send(self, delivery: ClaimedDelivery, mark_done: MarkDone) -> None: ...


def split_urls(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


class _TopicChannel:
    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._topic = topic_name(settings, NOTIFICATIONS)
        self._partitions = settings.partitions

    async def _publish(self, rep_id: str, message: InAppNotification | Celebration) -> None:
        stamped = message.model_copy(update={"sent_ms": int(time.time() * 1000)})
        try:
            await self._producer.send_and_wait(
                self._topic, encode(stamped), key=rep_id.encode(),
                partition=partition_for(rep_id, self._partitions),
            )
        except Exception as exc:  # broker away: retry later
            raise DeliveryError(f"could not publish to {self._topic}: {type(exc).__name__}: {exc}") from exc


class InAppChannel(_TopicChannel):
    """`{"type": "notification", ...}` on the notifications topic, key rep_id; the gateway pushes it on the
    rep's socket and drops a repeat of a notification_id it already pushed."""

    async def send(self, delivery: ClaimedDelivery, mark_done: MarkDone) -> None:
        await self._publish(delivery.rep_id, in_app_message(delivery.crossing))


class BoardChannel(_TopicChannel):
    """`{"type": "celebration", ...}` on the notifications topic; the gateway pushes it on every board the rep
    is on. Not subject to the rep's channels, quiet hours or cap."""

    async def send(self, delivery: ClaimedDelivery, mark_done: MarkDone) -> None:
        await self._publish(delivery.rep_id, celebration_message(delivery.crossing))


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """One configured URL: `kind` "slack" (Block Kit body) or "json" (signed generic body)."""

    kind: str
    url: str

    @property
    def target_id(self) -> str:
        # From the URL, not its position, so reordering the setting does not resend to anyone.
        return f"{self.kind}:{hashlib.sha256(self.url.encode()).hexdigest()[:16]}"


class WebhookChannel:
    """POSTs to every configured webhook; a retry goes only to the URLs that did not take it yet."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.targets = [WebhookTarget("slack", u) for u in split_urls(settings.notify_slack_webhook_urls)] + [
            WebhookTarget("json", u) for u in split_urls(settings.notify_webhook_urls)
        ]
        self._secret = settings.notify_webhook_secret
        if any(t.kind == "json" for t in self.targets) and not self._secret:
            raise ValueError(
                "SALESPULSE_NOTIFY_WEBHOOK_URLS is set but SALESPULSE_NOTIFY_WEBHOOK_SECRET is not: generic "
                "webhooks are signed; set a secret and give it to the receiver"
            )
        self._client = client

    @property
    def configured(self) -> bool:
        return bool(self.targets)

    def request(self, target: WebhookTarget, delivery: ClaimedDelivery, now: int) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one POST (public so the documentation's example can be checked)."""
        crossing = delivery.crossing
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": crossing.notification_id,
            "X-Salespulse-Notification-Id": crossing.notification_id,
        }
        if target.kind == "slack":
            return orjson.dumps(slack_payload(crossing)), headers
        body = orjson.dumps(generic_payload(crossing, now))
        headers["X-Salespulse-Timestamp"] = str(now)
        headers["X-Salespulse-Signature"] = sign(self._secret or "", body)
        return body, headers

    async def send(self, delivery: ClaimedDelivery, mark_done: MarkDone) -> None:
        if not self.targets:
            raise DeliveryError("no webhook configured (SALESPULSE_NOTIFY_SLACK_WEBHOOK_URLS / _WEBHOOK_URLS)",
                                permanent=True)
        done = set(delivery.targets_done)
        for target in self.targets:
            if target.target_id in done:
                continue
            body, headers = self.request(target, delivery, int(time.time()))
            await _post(self._client, target, body, headers)
            await mark_done(target.target_id)
            done.add(target.target_id)


async def _post(client: httpx.AsyncClient, target: WebhookTarget, body: bytes, headers: dict[str, str]) -> None:
    """POST one webhook; DeliveryError (retried, or permanent for a 4xx that will not change) unless it took it."""
    try:
        response = await client.post(target.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{target.kind} webhook {_host(target.url)}: {type(exc).__name__}: {exc}") from exc
    if not response.is_success:
        raise _http_error(target, response)


class ChatChannel:
    """A team's Slack or Microsoft Teams channel (`kind` "slack" or "teams"): posts the crossing, achievement or
    streak milestone to the webhook of the rep's team's chat route (schemas.config.ChatRoute), as the
    configuration has it when sent (docs/notifications.md, "Slack and Teams")."""

    def __init__(self, kind: str, client: httpx.AsyncClient, config: ConfigFollower) -> None:
        self.kind = kind
        self._client = client
        self._config = config

    async def send(self, delivery: ClaimedDelivery, mark_done: MarkDone) -> None:
        state = self._config.state
        team = state.team_of(delivery.rep_id)
        route = (state.chat_route(team) or {}).get(self.kind)
        if not route:
            raise DeliveryError(f"no {self.kind} chat route for team {team or '(none)'} or '*' any more",
                                permanent=True)
        crossing = delivery.crossing
        if self.kind == "slack":
            payload = slack_payload(crossing)
            if route.get("channel"):
                payload["channel"] = route["channel"]
        else:
            payload = teams_payload(crossing)
        headers = {"Content-Type": "application/json", "Idempotency-Key": crossing.notification_id}
        await _post(self._client, WebhookTarget(self.kind, route["webhook_url"]), orjson.dumps(payload), headers)


def _host(url: str) -> str:
    # Webhook URLs carry their secret in the path (Slack): log and store only the host.
    return httpx.URL(url).host or "?"


def _http_error(target: WebhookTarget, response: httpx.Response) -> DeliveryError:
    status = response.status_code
    message = f"{target.kind} webhook {_host(target.url)} answered HTTP {status}"
    if status in (408, 425, 429) or status >= 500:
        retry_after = None
        raw = response.headers.get("Retry-After")
        if raw and raw.strip().isdigit():
            retry_after = float(raw.strip())
        return DeliveryError(message, retry_after=retry_after)
    return DeliveryError(message + " (not retried: fix the webhook configuration)", permanent=True)


class EmailChannel:
    """Multipart e-mail over SMTP (stdlib smtplib in a thread: one short session per message)."""

    def __init__(self, settings: Settings, email_of: Callable[[str], str | None]) -> None:
        self._settings = settings
        self._email_of = email_of

    @property
    def configured(self) -> bool:
        return bool(self._settings.notify_smtp_host)

    async def send(self, delivery: ClaimedDelivery, mark_done: MarkDone) -> None:
        to = self._email_of(delivery.rep_id) or delivery.crossing.details.get("email")
        if not to:
            raise DeliveryError(f"rep {delivery.rep_id} has no e-mail address on the roster", permanent=True)
        await self.send_message(tier_email(delivery.crossing, to=to, sender=self._settings.notify_smtp_from))

    async def send_message(self, message: EmailMessage) -> None:
        if not self.configured:
            raise DeliveryError("no SMTP server configured (SALESPULSE_NOTIFY_SMTP_HOST)", permanent=True)
        try:
            await asyncio.to_thread(self._send_sync, message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(f"SMTP refused the recipient: {exc.recipients}",
                                permanent=all(c >= 500 for c in codes)) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", permanent=exc.smtp_code >= 500) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {type(exc).__name__}: {exc}") from exc

    def _send_sync(self, message: EmailMessage) -> None:
        s = self._settings
        with smtplib.SMTP(s.notify_smtp_host or "", s.notify_smtp_port, timeout=s.notify_send_timeout) as smtp:
            if s.notify_smtp_starttls:
                smtp.starttls()
            if s.notify_smtp_username:
                smtp.login(s.notify_smtp_username, s.notify_smtp_password or "")
            smtp.send_message(message)
