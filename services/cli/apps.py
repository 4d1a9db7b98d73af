"""The service apps as `salespulse` serves them: ingest with the CRM connectors it hosts. The CLI is where the
parts meet; the services themselves meet only through schemas/, services/common/ and the pure scoring core."""

from __future__ import annotations

from fastapi import FastAPI

from services.connectors.routes import ConnectorsExtension
from services.ingest.app import create_app

__all__ = ["ingest_app"]


def ingest_app() -> FastAPI:
    """Ingest with its CRM connectors (each on when its settings are set: docs/connectors.md)."""
    return create_app(extensions=[ConnectorsExtension()])
