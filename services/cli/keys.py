"""`salespulse keys create|list|revoke`: keys are printed once and stored only as hashes."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from sqlalchemy import select, update

from services.common import db
from services.common.auth import create_key
from services.common.models import ApiKey
from services.common.settings import get_settings


async def run_keys(args: argparse.Namespace) -> int:
    settings = get_settings()
    engine = db.create_engine(settings.db_url)
    sessions = db.sessionmaker(engine)
    try:
        if args.keys_command == "create":
            key_id, key = await create_key(sessions, role=args.role, name=args.name)
            print(f"key_id: {key_id}\nrole:   {args.role}\nkey:    {key}\n(store it now: it is not shown again)")
        elif args.keys_command == "list":
            async with sessions() as session:
                rows = (await session.execute(select(ApiKey).order_by(ApiKey.created_at))).scalars().all()
            for row in rows:
                state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
                print(f"{row.key_id}  {row.role:<7} {state:<24} {row.name}")
        elif args.keys_command == "revoke":
            async with sessions() as session, session.begin():
                result = await session.execute(
                    update(ApiKey)
                    .where(ApiKey.key_id == args.key_id, ApiKey.revoked_at.is_(None))
                    .values(revoked_at=datetime.now(UTC))
                )
            if not db.rows_matched(result):
                print(f"no active key with id {args.key_id}")
                return 1
            print(f"revoked {args.key_id}; it stops working within seconds")
        return 0
    finally:
        await engine.dispose()
