"""Where code may reach (issue 16): test helpers live in tests/support/ — no module imports a `test_*` module —
and a service imports another service only through schemas/, services/common/ and the pure scoring core."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "scoring", "notifier", "api", "connectors")
SHARED = ("schemas", "services.common", "services.scoring.domain")


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every absolute import in the file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:  # `from tests.integration import test_x`
                yield node.lineno, f"{node.module}.{alias.name}"


def is_test_module(module: str) -> bool:
    path = ROOT / (module.replace(".", "/") + ".py")
    return module.startswith("tests.") and path.name.startswith("test_") and path.exists()


def test_no_module_imports_a_test_module() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for line, module in imports(path)
        if is_test_module(module)
    ]
    assert not found, "move shared helpers to tests/support/:\n" + "\n".join(found)


def service_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "services" and parts[1] in SERVICES else None


def allowed(module: str) -> bool:
    return any(module == shared or module.startswith(shared + ".") for shared in SHARED)


def test_services_meet_only_through_schemas_common_and_the_scoring_core() -> None:
    found = []
    for service in SERVICES:
        for path in sorted((ROOT / "services" / service).rglob("*.py")):
            for line, module in imports(path):
                other = service_of(module)
                if other is not None and other != service and not allowed(module):
                    found.append(f"services/{service}/{path.relative_to(ROOT / 'services' / service)}:{line} "
                                 f"imports {module}")
    assert not found, ("a service reaches into another; share through schemas/ or services/common/:\n"
                       + "\n".join(found))


def test_the_checks_see_what_they_look_for() -> None:
    """Guard against a check that passes because it reads nothing."""
    relay = ROOT / "services" / "ingest" / "relay.py"
    assert ("services.common.settings" in {module for _, module in imports(relay)})
    assert service_of("services.api.gateway") == "api" and not allowed("services.api.gateway")
    assert allowed("services.scoring.domain.plans") and not allowed("services.scoring.agents")
    assert service_of("services.connectors.routes") == "connectors" and service_of("services.cli.apps") is None
    assert is_test_module("tests.integration.test_gateway") and not is_test_module("tests.support.events")
