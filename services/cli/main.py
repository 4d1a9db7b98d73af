"""The `salespulse` command: run the stack or one service, manage keys, migrate, replay, import."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from services.common.auth import ROLES
from services.common.bulk import collect_less_often
from services.common.redaction import install_on_root
from services.common.settings import get_settings


def refuse_weak_admin_key() -> None:
    """Stop before serving when a production-shaped deployment (a database server) has a guessable admin key."""
    weakness = get_settings().admin_key_weakness()
    if weakness:
        print(
            f"salespulse: refusing to start: SALESPULSE_ADMIN_KEY is not safe with a database server ({weakness}). "
            "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            file=sys.stderr,
        )
        sys.exit(2)


def _serve(app_factory: str, port: int, *, screens: bool = False) -> None:
    import uvicorn

    from services.api.hub import MAX_SCREEN_MESSAGE
    from services.common.http_protocol import header_deadline_protocol
    from services.common.redaction import uvicorn_log_config

    refuse_weak_admin_key()
    settings = get_settings()
    collect_less_often()  # request handling makes and drops many small objects too (services/common/bulk.py)
    uvicorn.run(
        app_factory,
        factory=True,
        host=settings.host,
        port=port,
        log_config=uvicorn_log_config(),  # keys in `?token=` are masked in the access log
        log_level=os.environ.get("SALESPULSE_LOG_LEVEL", "warning").lower(),
        ws="websockets-sansio",
        ws_ping_interval=settings.ws_ping_interval,  # keepalive: a screen that stops reading is closed
        ws_ping_timeout=settings.ws_ping_timeout,
        ws_per_message_deflate=False,  # a deflate context costs ~50 KiB per screen; standings are small
        ws_max_size=MAX_SCREEN_MESSAGE,  # screens only listen: a bigger message is closed with 1009
        http=header_deadline_protocol(settings.http_header_timeout, settings.http_body_timeout),  # slow-loris
        loop="uvloop" if _has_uvloop() else "asyncio",
        # Only a listed proxy may name the client (rate limits per address); anyone else could forge it.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        # Bounded work: beyond this many connections and requests at once, new requests get a 503 at once.
        limit_concurrency=settings.http_max_concurrency or 1_000 + (settings.ws_max_connections if screens else 0),
    )


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401  (only whether it is installed)
    except ImportError:
        return False
    return True


def cmd_ingest(_: argparse.Namespace) -> None:
    from services.connectors.mapping import MappingError
    from services.connectors.routes import build_connectors

    try:  # a connector's mapping is checked before serving: a broken one stops ingest with what to change
        build_connectors(get_settings(), None)
    except MappingError as exc:
        print(exc.report(), file=sys.stderr)
        sys.exit(2)
    _serve("services.cli.apps:ingest_app", get_settings().ingest_port)


def cmd_relay(_: argparse.Namespace) -> None:
    _serve("services.ingest.relay_app:create_app", get_settings().relay_port)


def cmd_api(_: argparse.Namespace) -> None:
    _serve("services.api.app:create_app", get_settings().api_port, screens=True)


def cmd_notifier(_: argparse.Namespace) -> None:
    _serve("services.notifier.app:create_app", get_settings().notifier_port)


def cmd_scoring(_: argparse.Namespace) -> None:
    from services.scoring.worker import run

    run(os.environ.get("SALESPULSE_LOG_LEVEL", "warning").lower())


def cmd_migrate(_: argparse.Namespace) -> None:
    from services.common.db import migrate

    migrate(get_settings().db_url)
    print("database is at the newest schema")


def cmd_topics(_: argparse.Namespace) -> None:
    from services.common.broker import ensure_topics

    asyncio.run(ensure_topics(get_settings()))
    print("topics exist")


def cmd_replay(args: argparse.Namespace) -> None:
    from services.common.broker import ensure_topics
    from services.ingest.relay import replay

    need_schema()

    async def main() -> int:
        settings = get_settings()
        await ensure_topics(settings)
        from_seq = args.from_seq
        if from_seq is None:
            from services.common.checkpoints import replay_start_for_empty_broker

            from_seq = await replay_start_for_empty_broker(settings) + 1
            if from_seq > 1:
                print(f"the scoring checkpoint holds the ledger up to seq {from_seq - 1}: replaying from {from_seq}")
        return await replay(settings, from_seq)

    total = asyncio.run(main())
    print(f"replay done: {total:,} events republished")


def cmd_up(args: argparse.Namespace) -> None:
    refuse_weak_admin_key()
    from services.cli.up import up

    sys.exit(up(demo=args.demo, rate=args.rate))


def cmd_keys(args: argparse.Namespace) -> None:
    from services.cli.keys import run_keys

    need_schema()
    sys.exit(asyncio.run(run_keys(args)))


class CliError(Exception):
    """A one-line answer for the user: what is wrong and what to do."""


def need_schema() -> None:
    """For commands that use the database: a local SQLite file is migrated (it is this machine's own); a
    database server is left alone, and the user is told, in one line, what to run."""
    from sqlalchemy.engine import make_url

    from services.common import db

    settings = get_settings()
    url = make_url(settings.db_url)
    where = url.render_as_string(hide_password=True).split("@")[-1] if url.host else (url.database or "memory")
    try:
        behind = asyncio.run(db.schema_behind(settings.db_url))
    except Exception as exc:  # noqa: BLE001  (unreachable, refused, unknown database: say so in one line)
        why = (str(exc).splitlines() or [""])[0][:160]
        raise CliError(f"cannot reach the database at {where} ({type(exc).__name__}: {why}); "
                       "check SALESPULSE_DATABASE_URL and that the database is up") from None
    if not behind:
        return
    if url.get_backend_name() == "sqlite":
        db.migrate(settings.db_url)
        return
    raise CliError(f"the database at {where} has no salespulse tables or an older schema; "
                   "run `salespulse migrate` first")


def cmd_import(args: argparse.Namespace) -> None:
    from pathlib import Path

    from services.ingest.importer import ImportOptions, run_import

    settings = get_settings()
    options = ImportOptions(
        file=Path(args.file),
        type=args.type,
        mapping=Path(args.mapping),
        ingest_url=args.ingest_url,
        key=args.key,
        rejects=Path(args.rejects) if args.rejects else None,
        batch=args.batch,
        dry_run=args.dry_run,
    )
    sys.exit(
        run_import(options, ingest_port=settings.ingest_port, data_dir=settings.data_dir)
    )


def cmd_connect(args: argparse.Namespace) -> None:
    from datetime import date

    from services.cli.backfill import BackfillOptions, run_backfill
    from services.connectors.mapping import MappingError

    if not args.backfill:
        print(
            f"{args.crm} deals reach salespulse live through ingest once its settings are set "
            "(docs/connectors.md); add --backfill to read the deals already in the CRM.",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        since = date.fromisoformat(args.since) if args.since else None
    except ValueError:
        print(f"error: --since {args.since!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
        sys.exit(2)
    options = BackfillOptions(args.crm, since, args.ingest_url, args.key, args.restart, args.batch)
    try:
        sys.exit(run_backfill(get_settings(), options))
    except MappingError as exc:
        print(exc.report(), file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salespulse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the whole stack on this machine (embedded broker and SQLite by default)")
    up.add_argument("--demo", action="store_true", help="load a demo roster, plans and boards and stream a sales floor")
    up.add_argument("--rate", type=float, default=20.0, help="demo: live events per second (default 20)")
    up.set_defaults(func=cmd_up)
    sub.add_parser("ingest", help="run the ingest service").set_defaults(func=cmd_ingest)
    sub.add_parser(
        "relay", help="run the relay (ledger → Kafka) in its own process, for ingest with SALESPULSE_RELAY=external"
    ).set_defaults(func=cmd_relay)
    sub.add_parser("api", help="run the API gateway").set_defaults(func=cmd_api)
    sub.add_parser("scoring", help="run a scoring worker").set_defaults(func=cmd_scoring)
    sub.add_parser("notifier", help="run the notifier (tier crossings, deliveries, digests)").set_defaults(
        func=cmd_notifier
    )
    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(func=cmd_migrate)
    sub.add_parser("topics", help="create the Kafka topics").set_defaults(func=cmd_topics)
    replay = sub.add_parser("replay", help="republish the ledger into the Kafka topics")
    replay.add_argument(
        "--from-seq", type=int, default=None,
        help="first ledger sequence number to republish (default: the first after the scoring checkpoint, "
             "for a broker that came back empty)",
    )
    replay.set_defaults(func=cmd_replay)
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--role", required=True, choices=list(ROLES))
    create.add_argument("--name", required=True)
    create.add_argument("--boards", help="screen keys: the board ids it may show, comma-separated (floor,west)")
    create.add_argument("--rep-id", help="rep keys: the one rep whose own data it may read")
    create.add_argument("--team-id", help="manager keys: the one team it may read")
    create.add_argument("--expires", help="a lifetime after which the key stops working: 90m, 12h, 30d, 2w")
    keys_sub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    keys.set_defaults(func=cmd_keys)
    imp = sub.add_parser("import", help="import deal or activity events from a CSV file with a YAML mapping")
    imp.add_argument("file", help="the CSV file (UTF-8, header line first)")
    imp.add_argument("--type", required=True, choices=["deal", "activity"], help="the kind of events to make")
    imp.add_argument("--mapping", required=True, help="YAML mapping of CSV columns to event fields (docs/import.md)")
    imp.add_argument("--ingest-url", help="ingest base URL (default http://127.0.0.1:$SALESPULSE_INGEST_PORT)")
    imp.add_argument("--key", help="API key (default $SALESPULSE_API_KEY, $SALESPULSE_ADMIN_KEY, the data dir's)")
    imp.add_argument("--rejects", help="CSV file for rejected rows (default FILE.rejects.csv)")
    imp.add_argument("--batch", type=int, default=1000, help="events per request, at most 10,000 (default 1000)")
    imp.add_argument("--dry-run", action="store_true", help="map and validate only; write rejects, send nothing")
    imp.set_defaults(func=cmd_import)
    connect = sub.add_parser("connect", help="backfill deals from a CRM (HubSpot, Pipedrive, Salesforce)")
    connect.add_argument("crm", choices=["hubspot", "pipedrive", "salesforce"])
    connect.add_argument("--backfill", action="store_true", help="read every deal changed since --since")
    connect.add_argument("--since", help="first day (YYYY-MM-DD, business timezone; default: everything)")
    connect.add_argument("--ingest-url", help="ingest base URL (default http://127.0.0.1:$SALESPULSE_INGEST_PORT)")
    connect.add_argument("--key", help="API key (default $SALESPULSE_API_KEY, $SALESPULSE_ADMIN_KEY, the data dir's)")
    connect.add_argument("--restart", action="store_true", help="start over instead of resuming a stopped backfill")
    connect.add_argument("--batch", type=int, default=500, help="events per request (default 500)")
    connect.set_defaults(func=cmd_connect)
    return parser


OUR_LOGGERS = ("salespulse", "services")


def configure_logging() -> None:
    """Our own loggers at SALESPULSE_LOG_LEVEL (default INFO); everything else — the libraries: alembic,
    httpx, aiokafka, faust, SQLAlchemy — at WARNING unless SALESPULSE_LIBRARY_LOG_LEVEL asks for more. To
    stderr, so a command's own output stays clean."""
    ours = os.environ.get("SALESPULSE_LOG_LEVEL", "INFO").upper()
    libraries = os.environ.get("SALESPULSE_LIBRARY_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=libraries, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(ours)


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    install_on_root()
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CliError as exc:
        print(f"salespulse: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
