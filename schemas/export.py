"""Write the JSON Schema files of the event contract from the pydantic models, or check they are current.

Usage: ``python -m schemas.export`` to (re)write them, ``python -m schemas.export --check`` to fail on drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

from pydantic import TypeAdapter

from schemas.events import EVENT_ADAPTER, ActivityEvent, DealEvent
from schemas.messages import MESSAGE_MODELS

__all__ = ["SCHEMA_DIR", "main", "rendered_schemas", "stale_files", "write_schemas"]

SCHEMA_DIR: Final = Path(__file__).resolve().parent / "json"
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

_SOURCES: Final[dict[str, tuple[str, TypeAdapter[Any]]]] = {
    "deal-event.schema.json": ("Deal event", TypeAdapter(DealEvent)),
    "activity-event.schema.json": ("Activity event", TypeAdapter(ActivityEvent)),
    "event.schema.json": ("Event", EVENT_ADAPTER),
    **{
        f"{name}.schema.json": (f"{name.replace('-', ' ').capitalize()} message", TypeAdapter(model))
        for name, model in MESSAGE_MODELS.items()
    },
}


def _render(title: str, adapter: TypeAdapter[Any]) -> str:
    schema = {"$schema": JSON_SCHEMA_DIALECT, **adapter.json_schema(mode="validation")}
    schema.setdefault("title", title)
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered_schemas() -> dict[str, str]:
    """File name -> the schema text the models produce now."""
    return {name: _render(title, adapter) for name, (title, adapter) in _SOURCES.items()}


def stale_files(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Schema files that are missing or differ from what the models produce."""
    return [
        directory / name
        for name, text in rendered_schemas().items()
        if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text
    ]


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file that changed; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = stale_files(directory)
    rendered = rendered_schemas()
    for path in written:
        path.write_text(rendered[path.name], encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if any schema file is stale")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help=f"schema directory ({SCHEMA_DIR})")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.dir)
        for path in stale:
            print(f"stale: {path} (run python -m schemas.export)", file=sys.stderr)
        return 1 if stale else 0
    for path in write_schemas(args.dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
