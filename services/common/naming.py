"""Names made into ids: `slug` turns any text (a rep's name, an account, an office) into a stable, URL-safe id.

Neutral ground for the services that need the same ids from the same names (the demo roster, the CSV importer).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["slug"]

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """A stable, URL-safe id for a name: `Mei-Mei Johns` -> `mei-mei-johns`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")
