"""The exit codes of `salespulse import`, shared by the sender (a refused key) and the command."""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_OK", "EXIT_REJECTED", "EXIT_USAGE"]

EXIT_OK: Final = 0
"""Every row was accepted, a duplicate, or skipped by a rule of the mapping."""
EXIT_REJECTED: Final = 1
"""Some rows were rejected (see the rejects file) or could not be sent."""
EXIT_USAGE: Final = 2
"""Bad arguments, an unreadable CSV, an invalid mapping, or a key ingest refuses."""
