"""Did-you-mean hints for a name that is not known (an event field, a mapping key, a CSV column), for error messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean"]


def did_you_mean(name: str, known: Iterable[str], *, cutoff: float = 0.6) -> str:
    """` (did you mean X?)` for the known name closest to `name`, or "" when none is at least `cutoff` alike
    (difflib's ratio, 0 to 1: higher asks for a closer likeness)."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=cutoff)
    return f" (did you mean {close[0]}?)" if close else ""
