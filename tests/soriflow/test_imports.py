"""The import graph: the shared runtime (`soriflow/`) never imports a service, and no service
imports another one. They reach each other through `soriflow.registry` (by name, lazily), so a
slim image carries only its own service and the runtime stays the base of every one.

Checked statically on every `import` statement (also those inside functions and under
TYPE_CHECKING), so a lazy import cannot slip through where a runtime check would not run it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from soriflow.registry import SERVICES

ROOT = Path(__file__).resolve().parents[2]
#: The package each folder is imported as (setup.py's SOURCE_ROOTS).
SERVICE_FOLDERS = {
    "soriflow.stt": ROOT / "services/stt",
    "soriflow.scoring": ROOT / "services/scoring",
    "soriflow.summarizer": ROOT / "services/summarizer",
    "soriflow.tts": ROOT / "services/tts",
    "soriflow.gateway": ROOT / "gateway",
}


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def module_package(path: Path, root: Path, package: str) -> str:
    relative = path.relative_to(root).with_suffix("")
    parts = [package, *relative.parts]
    return ".".join(parts[:-1])  # the package a module (or an __init__) resolves `.` against


def violations(root: Path, package: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        if "v1" in path.relative_to(root).parts[:1]:
            continue  # generated protobuf code
        for line, module in imported_modules(path, module_package(path, root, package)):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                out.append(f"{path.relative_to(root)}:{line} imports {module}")
    return out


def test_the_services_are_the_registrys() -> None:
    """Every folder is a registered service, and every registered service lives in one of the
    folders (the live edge is a package of the gateway's folder, served from the gateway image)."""
    packages = {entry.package for entry in SERVICES.values()}
    assert set(SERVICE_FOLDERS) <= packages
    for package in packages:
        assert any(package == f or package.startswith(f + ".") for f in SERVICE_FOLDERS), package


def test_the_runtime_imports_no_service() -> None:
    found = violations(ROOT / "soriflow", "soriflow", tuple(SERVICE_FOLDERS))
    assert not found, "the runtime must reach services through soriflow.registry:\n" + "\n".join(found)


@pytest.mark.parametrize("package", sorted(SERVICE_FOLDERS))
def test_no_service_imports_another(package: str) -> None:
    others = tuple(p for p in SERVICE_FOLDERS if p != package)
    found = violations(SERVICE_FOLDERS[package], package, others)
    assert not found, "services reach each other over gRPC or registry hooks:\n" + "\n".join(found)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.py").write_text(
        "def f():\n    from soriflow.scoring.report import print_score\n"
        "from ..stt import cli\nimport soriflow.gateway.api as api\n"
    )
    found = violations(tmp_path, "soriflow", ("soriflow.scoring", "soriflow.stt", "soriflow.gateway"))
    assert len(found) == 5, found  # scoring.report (+ .print_score), stt (+ .cli), gateway.api


def test_hooks_resolve() -> None:
    from soriflow.registry import hook

    assert callable(hook("scoring", "print_result"))
    assert callable(hook("scoring", "plot_result"))
    assert hook("scoring", "no-such-hook") is None
    assert hook("no-such-service", "print_result") is None
