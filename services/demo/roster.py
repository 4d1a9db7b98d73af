"""The demo roster: MavenTech's 35 sales agents and their managers, one team per regional office.

Built from the CRM data set packaged under `services/demo/data` (see SOURCE.md there).
"""

from __future__ import annotations

import csv
import io
from functools import cache
from importlib import resources
from typing import Any

from services.common.naming import slug

__all__ = [
    "EMAIL_DOMAIN",
    "agent_rep_ids",
    "data_rows",
    "demo_reps",
    "demo_teams",
    "email_for",
    "rep_id_for",
]

EMAIL_DOMAIN = "maventech.example"


@cache
def _data_file_text(name: str) -> str:
    return resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")


def data_rows(name: str) -> list[dict[str, str]]:
    """The rows of one packaged CSV file (e.g. `sales_pipeline.csv`) as dicts of strings."""
    return list(csv.DictReader(io.StringIO(_data_file_text(name))))


def rep_id_for(agent_name: str) -> str:
    """The rep id of a sales agent or manager of the data set, e.g. `Moses Frase` -> `moses-frase`."""
    return slug(agent_name)


def email_for(name: str) -> str:
    """first.last@maventech.example; hyphens inside a name part are kept (`mei-mei.johns@...`)."""
    return ".".join(slug(part) for part in name.split()) + "@" + EMAIL_DOMAIN


def _team_id(regional_office: str) -> str:
    return slug(regional_office)


def _rep(name: str, team_id: str) -> dict[str, Any]:
    return {
        "rep_id": rep_id_for(name),
        "name": name,
        "team_id": team_id,
        "email": email_for(name),
        "timezone": None,
    }


def demo_teams() -> list[dict[str, Any]]:
    """One team per regional office (`central`, `east`, `west`), in the order the data set lists them.

    An office has two managers in the data set; a team has one, so the first one listed leads the team
    and the other is a member of it like every agent.
    """
    teams: dict[str, dict[str, Any]] = {}
    for row in data_rows("sales_teams.csv"):
        office = row["regional_office"]
        teams.setdefault(
            office,
            {"team_id": _team_id(office), "name": office, "manager_rep_id": rep_id_for(row["manager"])},
        )
    return list(teams.values())


def demo_reps() -> list[dict[str, Any]]:
    """Every sales agent, then every manager, each on their regional office's team."""
    rows = data_rows("sales_teams.csv")
    agents = [_rep(row["sales_agent"], _team_id(row["regional_office"])) for row in rows]
    managers: dict[str, dict[str, Any]] = {}
    for row in rows:
        managers.setdefault(row["manager"], _rep(row["manager"], _team_id(row["regional_office"])))
    return agents + list(managers.values())


def agent_rep_ids() -> list[str]:
    """Rep ids of the sales agents only: the people who carry a quota (managers do not)."""
    return [rep_id_for(row["sales_agent"]) for row in data_rows("sales_teams.csv")]
