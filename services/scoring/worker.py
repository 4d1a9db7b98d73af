"""Entry point of a scoring worker process: `salespulse scoring`."""

from __future__ import annotations

import sys

from faust.worker import Worker

from services.common.settings import get_settings
from services.scoring.app import create_app


def run(loglevel: str = "warning") -> None:
    settings = get_settings()
    app = create_app(settings)
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # no terminal spinner: output goes to `salespulse up`'s prefixed log
    sys.exit(worker.execute_from_commandline())
