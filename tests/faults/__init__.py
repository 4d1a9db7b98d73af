"""The fault suite (issue #11): the whole stack as real processes under load, one fault per run, compared with
an undisturbed run. `python -m tests.faults --write docs/RELIABILITY.md` runs it and writes the table."""
