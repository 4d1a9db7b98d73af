"""slug: any name to a stable, URL-safe id, the same for the demo roster and the CSV importer."""

from __future__ import annotations

import pytest

from services.common.naming import slug


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mei-Mei Johns", "mei-mei-johns"),
        ("Moses Frase", "moses-frase"),
        ("Acme Corp.", "acme-corp"),
        ("  Zoë  Éclair & Sons ", "zoe-eclair-sons"),
        ("Central", "central"),
        ("R2-D2 / C-3PO", "r2-d2-c-3po"),
        ("--- !!! ---", ""),
        ("", ""),
    ],
)
def test_slug_keeps_ascii_letters_and_digits_joined_by_single_hyphens(text: str, expected: str) -> None:
    assert slug(text) == expected


def test_a_slug_is_its_own_slug() -> None:
    assert slug(slug("Mei-Mei Johns, Ltd.")) == slug("Mei-Mei Johns, Ltd.")
