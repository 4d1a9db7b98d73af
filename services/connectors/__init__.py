"""CRM connectors (HubSpot, Pipedrive, Salesforce): CRM records become deal snapshot events that enter the ledger
through ingest's one intake. Ingest hosts them (services/common/intake.py, `IngestExtension`; the CLI wires them
in, services/cli/apps.py): their webhooks and workers run in the ingest process, and they write events only
through the intake they are handed. `salespulse connect` (services/cli/backfill.py) backfills through ingest's
HTTP API. docs/connectors.md is the admin's guide."""
