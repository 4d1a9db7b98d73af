"""Key files in the data directory (`salespulse up`): private from their first byte, and refused when others
may read them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from services.cli.up import StartupError, admin_key, read_secret, write_secret
from services.common.settings import Settings


def test_a_key_file_is_created_private_and_nothing_else_is_left(tmp_path: Path) -> None:
    old = os.umask(0)  # the most permissive umask: the mode must not come from it
    try:
        write_secret(tmp_path / "data" / "admin.key", "sp_secret")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "data" / "admin.key").stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["admin.key"]
    assert read_secret(tmp_path / "data" / "admin.key") == "sp_secret"


def test_a_key_file_others_can_read_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "admin.key"
    path.write_text("sp_secret\n")
    path.chmod(0o644)
    with pytest.raises(StartupError) as refused:
        read_secret(path)
    assert "mode 0644" in str(refused.value) and f"chmod 600 {path}" in str(refused.value)


def test_the_generated_admin_key_is_kept_and_read_back(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, admin_key=None)
    first = admin_key(settings)
    assert first.startswith("sp_") and admin_key(settings) == first
    assert stat.S_IMODE((tmp_path / "admin.key").stat().st_mode) == 0o600
    assert read_secret(tmp_path / "missing.key") is None
