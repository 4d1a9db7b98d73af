"""The error of a mapping file that cannot be used (the CSV import's, a CRM connector's): one line per problem,
each naming the key to change."""

from __future__ import annotations

__all__ = ["MappingError"]


class MappingError(Exception):
    """The mapping file (or the CSV header it is checked against) cannot be used; `problems` says why."""

    def __init__(self, origin: str, problems: list[str]) -> None:
        super().__init__(f"{origin}: " + "; ".join(problems))
        self.origin = origin
        self.problems = problems

    def report(self) -> str:
        """One line per problem, for a terminal."""
        lines = [f"error: the mapping {self.origin} cannot be used:"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)
