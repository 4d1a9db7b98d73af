"""A connector's mapping file: which CRM field is the amount, the close date, the owner…, which CRM stages
mean open, won and lost, and how CRM owners become rep ids. YAML, checked as a whole when it is loaded, with
one line per problem naming the key to change (the same report as the CSV import's mappings).

    connector: hubspot
    fields:                       # CRM field (a dotted path reaches into nested objects)
      amount: amount
      currency: deal_currency_code
      closed_at: closedate
      owner: hubspot_owner_id
      stage: dealstage
      kind: dealtype              # optional
      customer: null              # optional
    stages:
      won: [closedwon]
      lost: [closedlost]
      open: "*"                   # every other stage (or a list; then an unlisted stage rejects the record)
    kinds: {newbusiness: new, existingbusiness: expansion, renewal: renewal}
    default_kind: new
    owners:
      table: {"101": ana}         # CRM owner id -> rep id; wins over the rule
      rule: email_local_part      # or: id (the CRM owner id is the rep id), or: table (the table only)
      unmapped: reject            # or a rep id that takes deals of owners the rules do not know
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from schemas.suggestions import did_you_mean
from services.common.mapping_errors import MappingError
from services.common.settings import CONNECTORS

__all__ = [
    "CONNECTORS", "ConnectorMapping", "MappingError", "default_mapping_path", "load_connector_mapping",
]

OWNER_RULES = ("email_local_part", "id", "table")
KINDS = ("new", "renewal", "expansion")
_TOP = ("connector", "description", "fields", "stages", "kinds", "default_kind", "owners")
_FIELDS = ("amount", "currency", "closed_at", "owner", "stage", "kind", "customer")
_REQUIRED_FIELDS = ("amount", "closed_at", "owner", "stage")
_OWNER_KEYS = ("table", "rule", "unmapped")
_REP_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
MAPPINGS = Path(__file__).resolve().parent / "mappings"


def default_mapping_path(connector: str) -> Path:
    """The packaged mapping for the CRM's standard fields (services/connectors/mappings/NAME.yaml)."""
    return MAPPINGS / f"{connector}.yaml"


@dataclass(frozen=True)
class ConnectorMapping:
    origin: str
    connector: str
    fields: dict[str, str | None]
    won: frozenset[str]
    lost: frozenset[str]
    open: frozenset[str] | None
    """None: every stage that is neither won nor lost is open."""
    kinds: dict[str, str] = field(default_factory=dict)
    default_kind: str = "new"
    owner_table: dict[str, str] = field(default_factory=dict)
    owner_rule: Literal["email_local_part", "id", "table"] = "table"
    unmapped_owner: str | None = None
    """None: a record whose owner no rule maps is rejected."""

    def field_path(self, name: str) -> str | None:
        return self.fields.get(name)

    @property
    def crm_fields(self) -> list[str]:
        """The top-level CRM fields the mapping reads (what an API call must ask for)."""
        return sorted({path.split(".")[0] for path in self.fields.values() if path})

    def stage_of(self, crm_stage: str) -> str | None:
        """open, won or lost for a CRM stage; None when the mapping does not know it."""
        if crm_stage in self.won:
            return "won"
        if crm_stage in self.lost:
            return "lost"
        if self.open is None or crm_stage in self.open:
            return "open"
        return None

    def kind_of(self, crm_kind: str | None) -> str | None:
        if crm_kind is None or crm_kind == "":
            return self.default_kind
        if crm_kind in self.kinds:
            return self.kinds[crm_kind]
        return self.default_kind if not self.kinds else None


def load_connector_mapping(path: str | Path, *, connector: str | None = None) -> ConnectorMapping:
    """Read and check a mapping file; MappingError lists every problem, OSError if it cannot be read."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MappingError(path.name, [f"not valid YAML: {exc}"]) from exc
    return parse_connector_mapping(document, origin=path.name, connector=connector)


def parse_connector_mapping(
    document: Any, *, origin: str = "mapping", connector: str | None = None
) -> ConnectorMapping:
    problems: list[str] = []
    if not isinstance(document, dict):
        raise MappingError(origin, ["the mapping must be a YAML mapping with connector:, fields: and stages:"])
    _unknown_keys(document, _TOP, "", problems)

    name = document.get("connector")
    if name not in CONNECTORS:
        problems.append(f"connector: one of {', '.join(CONNECTORS)}, not {name!r}{did_you_mean(str(name), CONNECTORS)}")
    elif connector is not None and name != connector:
        problems.append(f"connector: this mapping is for {name}, but it was given to the {connector} connector")

    fields_doc = document.get("fields")
    fields: dict[str, str | None] = {}
    if not isinstance(fields_doc, dict):
        problems.append("fields: required, a mapping of event field -> CRM field, e.g. amount: amount")
    else:
        _unknown_keys(fields_doc, _FIELDS, "fields.", problems)
        for key in _FIELDS:
            value = fields_doc.get(key)
            if value is None:
                if key in _REQUIRED_FIELDS:
                    what = key.replace("_", " ")
                    problems.append(f"fields.{key}: required, the CRM field that holds the deal's {what}")
                fields[key] = None
            elif not isinstance(value, str) or not value.strip():
                problems.append(f"fields.{key}: a CRM field name (text), not {value!r}")
            else:
                fields[key] = value.strip()

    won, lost, open_ = _stages(document.get("stages"), problems)
    kinds, default_kind = _kinds(document.get("kinds"), document.get("default_kind", "new"), problems)
    table, rule, unmapped = _owners(document.get("owners"), problems)
    if problems:
        raise MappingError(origin, problems)
    return ConnectorMapping(
        origin=origin,
        connector=str(name),
        fields=fields,
        won=won,
        lost=lost,
        open=open_,
        kinds=kinds,
        default_kind=default_kind,
        owner_table=table,
        owner_rule=rule,
        unmapped_owner=unmapped,
    )


def _unknown_keys(document: dict[Any, Any], known: tuple[str, ...], prefix: str, problems: list[str]) -> None:
    for key in document:
        if key not in known:
            problems.append(f"{prefix}{key}: unknown key{did_you_mean(str(key), known)}; known: {', '.join(known)}")


def _names(value: Any, where: str, problems: list[str]) -> frozenset[str] | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return frozenset([str(value)])
    if isinstance(value, list) and value and all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        return frozenset(str(v) for v in value)
    problems.append(f"{where}: a CRM stage name or a list of them, not {value!r}")
    return None


def _stages(
    document: Any, problems: list[str]
) -> tuple[frozenset[str], frozenset[str], frozenset[str] | None]:
    if not isinstance(document, dict):
        problems.append("stages: required, with won: and lost: (and open:, or every other stage is open)")
        return frozenset(), frozenset(), None
    _unknown_keys(document, ("won", "lost", "open"), "stages.", problems)
    won = _names(document.get("won"), "stages.won", problems) or frozenset()
    lost = _names(document.get("lost"), "stages.lost", problems) or frozenset()
    raw_open = document.get("open", "*")
    open_ = None if raw_open == "*" else _names(raw_open, "stages.open", problems)
    for a, b, x, y in (("won", "lost", won, lost), ("won", "open", won, open_), ("lost", "open", lost, open_)):
        both = sorted(x & (y or frozenset()))
        if both:
            problems.append(f"stages: {', '.join(both)} is listed under both {a} and {b}")
    return won, lost, open_


def _kinds(document: Any, default_kind: Any, problems: list[str]) -> tuple[dict[str, str], str]:
    kinds: dict[str, str] = {}
    if document is not None:
        if not isinstance(document, dict):
            problems.append("kinds: a mapping of CRM deal type -> new, renewal or expansion")
        else:
            for crm, ours in document.items():
                if ours not in KINDS:
                    hint = did_you_mean(str(ours), KINDS)
                    problems.append(f"kinds.{crm}: one of {', '.join(KINDS)}, not {ours!r}{hint}")
                else:
                    kinds[str(crm)] = ours
    if default_kind not in KINDS:
        problems.append(f"default_kind: one of {', '.join(KINDS)}, not {default_kind!r}")
        default_kind = "new"
    return kinds, str(default_kind)


def _owners(document: Any, problems: list[str]) -> tuple[dict[str, str], Any, str | None]:
    if document is None:
        document = {"rule": "id"}
    if not isinstance(document, dict):
        problems.append("owners: a mapping with rule: (email_local_part, id or table), table: and unmapped:")
        return {}, "table", None
    _unknown_keys(document, _OWNER_KEYS, "owners.", problems)
    table: dict[str, str] = {}
    raw_table = document.get("table") or {}
    if not isinstance(raw_table, dict):
        problems.append("owners.table: a mapping of CRM owner id -> rep id")
    else:
        for crm, rep in raw_table.items():
            if not isinstance(rep, str | int) or isinstance(rep, bool) or not _REP_ID.match(str(rep)):
                problems.append(f"owners.table.{crm}: a rep id (1-128 characters, no control characters), not {rep!r}")
            else:
                table[str(crm)] = str(rep)
    rule = document.get("rule", "table" if table else "id")
    if rule not in OWNER_RULES:
        hint = did_you_mean(str(rule), OWNER_RULES)
        problems.append(f"owners.rule: one of {', '.join(OWNER_RULES)}, not {rule!r}{hint}")
        rule = "table"
    unmapped = document.get("unmapped", "reject")
    if unmapped == "reject":
        unmapped = None
    elif not isinstance(unmapped, str) or not _REP_ID.match(unmapped):
        problems.append(f"owners.unmapped: reject, or the rep id that takes deals of unknown owners, not {unmapped!r}")
        unmapped = None
    return table, rule, unmapped
