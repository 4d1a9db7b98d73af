"""ISO 4217 currency codes (from pycountry's copy of the standard), for events, FX rates and settings."""

from __future__ import annotations

from functools import cache

import pycountry

__all__ = ["is_currency_code"]


@cache
def _codes() -> frozenset[str]:
    return frozenset(currency.alpha_3 for currency in pycountry.currencies)


def is_currency_code(code: str) -> bool:
    """Whether `code` is an ISO 4217 alphabetic code, in capitals (EUR, not eur)."""
    return code in _codes()
