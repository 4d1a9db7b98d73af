"""`salespulse keys create|list|revoke`: keys are printed once and stored only as hashes."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from services.common import db
from services.common.auth import Scope, create_key, list_keys, parse_lifetime, revoke_key
from services.common.settings import get_settings


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"


async def run_keys(args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        try:
            scope = Scope.for_role(
                args.role,
                boards=args.boards.split(",") if args.boards else None,
                rep_id=args.rep_id,
                team_id=args.team_id,
            )
            expires_at = datetime.now(UTC) + parse_lifetime(args.expires) if args.expires else None
        except ValueError as exc:
            print(f"salespulse keys create: {exc}", file=sys.stderr)
            return 2
    settings = get_settings()
    engine = db.create_engine(settings.db_url)
    sessions = db.sessionmaker(engine)
    try:
        if args.keys_command == "create":
            key_id, key = await create_key(sessions, role=args.role, name=args.name, scope=scope, expires_at=expires_at)
            print(f"key_id:  {key_id}\nrole:    {args.role}\nscope:   {scope.describe(args.role)}")
            print(f"expires: {_when(expires_at)}{' UTC' if expires_at else ''}\nkey:     {key}")
            print("(store it now: it is not shown again)")
        elif args.keys_command == "list":
            header = ("KEY ID", "ROLE", "SCOPE", "STATE", "EXPIRES", "LAST USED")
            print("  ".join(f"{h:<{w}}" for h, w in zip(header, (16, 7, 24, 24, 16, 16), strict=True)) + "  NAME")
            for info in await list_keys(sessions):
                state = f"revoked {_when(info.revoked_at)}" if info.revoked_at else info.state
                print(f"{info.key_id:<16}  {info.role:<7}  {info.scope.describe(info.role):<24}  {state:<24}  "
                      f"{_when(info.expires_at):<16}  {_when(info.last_used_at):<16}  {info.name}")
        elif args.keys_command == "revoke":
            if not await revoke_key(sessions, args.key_id):
                print(f"no active key with id {args.key_id}")
                return 1
            print(f"revoked {args.key_id} and its screen sessions; they stop working within seconds")
        return 0
    finally:
        await engine.dispose()
