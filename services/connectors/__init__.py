"""CRM connectors (HubSpot, Pipedrive, Salesforce): CRM records become deal snapshot events that enter the ledger
through ingest's one intake. Part of the ingest service: its webhooks and workers run in the ingest process,
and `salespulse connect` backfills through ingest's HTTP API. docs/connectors.md is the admin's guide."""
