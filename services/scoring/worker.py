"""Entry point of a scoring worker process: `salespulse scoring`."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, cast

from faust.worker import Worker

from services.common.bulk import collect_less_often
from services.common.settings import get_settings
from services.scoring.app import create_app


def _use_uvloop() -> None:
    """uvloop where it is installed (uvicorn[standard] brings it): Faust hands every message through several
    futures and tasks, and uvloop makes those cheaper (about a fifth more events/s measured here)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class ScoringWorker(Worker):
    async def on_start(self) -> None:
        """Before the app starts (its consumer joins the group, then restores the tables): begin reading the
        checkpoint ahead (services/scoring/checkpoint.py), so the join and the reading overlap."""
        cast(Any, self.app).checkpointer.start_prefetch()
        await super().on_start()


def run(loglevel: str = "warning") -> None:
    collect_less_often()
    _use_uvloop()
    settings = get_settings()
    # Faust makes its datadir (data_dir/scoring) without parents: a data dir that does not exist yet, such as
    # the image's /home/salespulse/data, would stop the worker at start-up.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = ScoringWorker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # no terminal spinner: output goes to `salespulse up`'s prefixed log
    sys.exit(worker.execute_from_commandline())
