"""The domain layer sits below the web layer: only the HTTP views (`api.py`), the
command lines (`cli.py`) and `fleet/web/` itself import `fleet.web`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_domain_module_imports_the_web_package() -> None:
    offenders = []
    for path in sorted((ROOT / "fleet").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[1] == "web" or path.name in ("api.py", "cli.py"):
            continue
        if any(name == "fleet.web" or name.startswith("fleet.web.") for name in _imports(path)):
            offenders.append(str(rel))
    assert offenders == []


def test_the_check_sees_an_import_of_the_web_package(tmp_path: Path) -> None:
    module = tmp_path / "models.py"
    module.write_text("from fleet.web.fields import Id\nfrom fleet import web\n")
    assert {"fleet.web.fields", "fleet.web"} <= _imports(module)
