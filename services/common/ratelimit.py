"""Rate limits: GCRA buckets per API key or per client address, kept in the process that enforces them.

A refusal is a 429 problem with `Retry-After`, a detail that names the limit, its setting and what to do, and
one tick of `salespulse_rate_limited_total{limit}`. Limits are per process: with N replicas behind a proxy a
client may get up to N times a limit in total. That is the point of them here — each process protects its own
capacity and keeps one runaway key or address from starving the others — and why docs/security.md says to
divide a cluster-wide budget by the replica count when one is wanted.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from starlette.requests import HTTPConnection

from services.common.auth import Principal, Role
from services.common.buckets import Bucket, Clock
from services.common.problems import Problem
from services.common.settings import Settings

__all__ = [
    "Bucket",
    "Limit",
    "RateLimits",
    "authorize_key",
    "client_address",
]

@dataclass(frozen=True)
class Limit:
    """One configured limit: how much of what, per whom, and which setting changes it."""

    name: str
    """The metric label, e.g. `ingest_requests` (never an id or a key)."""
    setting: str
    """The environment variable of the rate; its burst is the same name with `_BURST`."""
    rate: float
    """Sustained units per second; 0 turns the limit off."""
    burst: int
    """Units that may be spent at once after a quiet spell."""
    unit: str
    per: str
    advice: str
    """What a refused client should do instead, in the words of the 429 detail."""


class RateLimits:
    """The limits one process enforces, by role (`requests`, `events`, `auth_failures`, `ws_connects`)."""

    def __init__(self, limits: dict[str, Limit], registry: CollectorRegistry, *, clock: Clock = time.monotonic) -> None:
        self.limits = {role: limit for role, limit in limits.items() if limit.rate > 0}
        self._buckets = {role: Bucket(limit.rate, limit.burst, clock=clock) for role, limit in self.limits.items()}
        self.exhausted_lookups = asyncio.Semaphore(1)
        """Key lookups for addresses out of auth-failure budget run one at a time per process: a valid key is
        still served, and a flood of made-up keys costs the database one query at a time."""
        self.refused = Counter(
            "salespulse_rate_limited_total",
            "Requests and WebSocket connection attempts refused by a rate limit",
            ["limit"],
            registry=registry,
        )
        for limit in self.limits.values():
            self.refused.labels(limit.name)  # every enabled limit shows up at 0

    @classmethod
    def for_ingest(cls, settings: Settings, registry: CollectorRegistry) -> RateLimits:
        return cls({**_request_limits(settings, api=False), "auth_failures": _auth_failures(settings)}, registry)

    @classmethod
    def for_notifier(cls, settings: Settings, registry: CollectorRegistry) -> RateLimits:
        """The notifier's few routes (digests on demand) under the gateway's per-key request budget."""
        return cls({**_request_limits(settings, api=True), "auth_failures": _auth_failures(settings)}, registry)

    @classmethod
    def for_api(cls, settings: Settings, registry: CollectorRegistry) -> RateLimits:
        limits = {**_request_limits(settings, api=True), "auth_failures": _auth_failures(settings)}
        limits["ws_connects"] = Limit(
            "ws_connects",
            "SALESPULSE_RATE_WS_CONNECTS",
            settings.rate_ws_connects,
            settings.rate_ws_connects_burst,
            "WebSocket connection attempts",
            "client address",
            "reconnect with a growing delay instead of at once",
        )
        return cls(limits, registry)

    def check(self, role: str, identity: str, cost: int = 1) -> None:
        """Spend `cost` from `identity`'s budget for `role`, or raise the 429 (or 413) that says why."""
        limit = self.limits.get(role)
        if limit is None:
            return
        if cost > limit.burst:
            self.refused.labels(limit.name).inc()
            raise Problem(
                413,
                f"This request holds {cost:,} {limit.unit}; a {limit.per} may send at most {limit.burst:,} at once "
                f"({limit.setting}_BURST). Split it into smaller requests.",
            )
        self._refuse_after(limit, self._buckets[role].acquire(identity, cost))

    def refuse_while_exhausted(self, role: str, identity: str) -> None:
        """Raise the 429 while `identity` has nothing left for `role`; spend nothing."""
        limit = self.limits.get(role)
        if limit is not None:
            self._refuse_after(limit, self._buckets[role].wait(identity))

    def exhausted(self, role: str, identity: str) -> bool:
        """Whether `identity` has nothing left for `role` now; spends nothing."""
        return role in self.limits and self._buckets[role].wait(identity) > 0

    def _refuse_after(self, limit: Limit, wait: float) -> None:
        if wait <= 0:
            return
        self.refused.labels(limit.name).inc()
        seconds = max(1, math.ceil(wait))
        raise Problem(
            429,
            f"Rate limit reached: at most {limit.rate:g} {limit.unit} per second per {limit.per} "
            f"(bursts of {limit.burst:,}; {limit.setting}). Retry after {seconds} s, and {limit.advice}.",
            headers={"Retry-After": str(seconds)},
        )


def _request_limits(settings: Settings, *, api: bool) -> dict[str, Limit]:
    if api:
        return {
            "requests": Limit(
                "api_requests",
                "SALESPULSE_RATE_API_REQUESTS",
                settings.rate_api_requests,
                settings.rate_api_requests_burst,
                "requests",
                "API key",
                "use the WebSocket channels for live figures instead of polling",
            )
        }
    return {
        "requests": Limit(
            "ingest_requests",
            "SALESPULSE_RATE_INGEST_REQUESTS",
            settings.rate_ingest_requests,
            settings.rate_ingest_requests_burst,
            "requests",
            "API key",
            "send events in batches (a JSON array or NDJSON of up to 10,000) rather than one per request",
        ),
        "events": Limit(
            "ingest_events",
            "SALESPULSE_RATE_INGEST_EVENTS",
            settings.rate_ingest_events,
            settings.rate_ingest_events_burst,
            "events",
            "API key",
            "spread the feed out over time; nothing of this request was accepted",
        ),
    }


def _auth_failures(settings: Settings) -> Limit:
    return Limit(
        "auth_failures",
        "SALESPULSE_RATE_AUTH_FAILURES",
        settings.rate_auth_failures,
        settings.rate_auth_failures_burst,
        "requests with an unknown or revoked key",
        "client address",
        "check the API key this client sends",
    )


def client_address(conn: HTTPConnection) -> str:
    """The peer's address (the proxy's, unless SALESPULSE_FORWARDED_ALLOW_IPS trusts its X-Forwarded-For)."""
    return conn.client.host if conn.client else "unknown"


async def authorize_key(conn: HTTPConnection, token: str | None, roles: Iterable[Role]) -> Principal:
    """Check the key, counting unknown keys per client address. An address that keeps guessing is out of
    budget for a moment: its requests are then looked up one at a time per process (a flood of made-up keys
    costs the database one query at a time, and the rest are refused with 429 at once), and one that brings a
    valid key is still served — a TV behind the same address as a guesser keeps its board."""
    allowed = tuple(roles)
    keys = conn.app.state.keys
    limits: RateLimits | None = getattr(conn.app.state, "rate_limits", None)
    if limits is None or not token:
        principal: Principal = await keys.authorize(token, allowed)
        return principal
    address = client_address(conn)
    if limits.exhausted("auth_failures", address):
        if limits.exhausted_lookups.locked():
            limits.refuse_while_exhausted("auth_failures", address)
        async with limits.exhausted_lookups:
            found = await keys.lookup(token)
        if found is None:
            limits.refuse_while_exhausted("auth_failures", address)
    try:
        principal = await keys.authorize(token, allowed)
    except Problem as exc:
        if exc.status == 401:
            limits.check("auth_failures", address)
        raise
    return principal
