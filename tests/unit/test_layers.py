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


PACKAGES = ("fleet", "ingest", "routing", "simulator")


def _modules() -> list[Path]:
    return [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]


def test_every_package_has_an_init_that_says_what_it_holds() -> None:
    """A folder without one is a namespace package that names nothing."""
    folders = {p.parent for p in _modules()}
    missing = [
        str(f.relative_to(ROOT))
        for f in sorted(folders)
        if not (f / "__init__.py").exists()
        or ast.get_docstring(ast.parse((f / "__init__.py").read_text(encoding="utf-8"))) is None
    ]
    assert missing == []


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_imports(source: str, own: str) -> list[str]:
    """The private names a module of package `own` takes from another package."""
    tree = ast.parse(source)
    modules = {}  # local name -> module, for `import a.b as m` / `from a import b`
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                modules[a.asname or a.name] = f"{node.module}.{a.name}"
                if _private(a.name) and node.module.rsplit(".", 1)[0] != own:
                    found.append(f"{node.module}.{a.name}")
        elif isinstance(node, ast.Import):
            modules.update({a.asname or a.name: a.name for a in node.names})
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and modules[node.value.id].rsplit(".", 1)[0] != own
        ):
            found.append(f"{modules[node.value.id]}.{node.attr}")
    return found


def test_no_module_takes_another_packages_private_names() -> None:
    offenders = {}
    for path in _modules():
        own = ".".join(path.relative_to(ROOT).parent.parts)
        if names := _private_imports(path.read_text(encoding="utf-8"), own):
            offenders[str(path.relative_to(ROOT))] = names
    assert offenders == {}


def test_the_check_sees_a_private_name_taken() -> None:
    source = "from routing.solver import _normalise\nimport routing.x as rx\nrx._y\n"
    assert _private_imports(source, "fleet.plans") == ["routing.solver._normalise", "routing.x._y"]
    assert _private_imports(source, "routing") == []


# Modules of `fleet` that run statements although they are not a domain's `repo.py`
# (or a module of a `repo/` package), each with why.
SQL_ELSEWHERE = {
    "fleet/catalogue.py": "the generic table repository",
    "fleet/db.py": "the pool and the migrations",
    "fleet/doctor.py": "asks the server its version",
    "fleet/web/app.py": "the health check's SELECT 1",
}


def _runs_statements(source: str) -> bool:
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("execute", "executemany", "copy")
        for node in ast.walk(ast.parse(source))
    )


def test_sql_runs_only_in_repositories() -> None:
    running = {
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "fleet").rglob("*.py"))
        if path.name != "repo.py"
        and path.parent.name != "repo"
        and _runs_statements(path.read_text(encoding="utf-8"))
    }
    assert running == set(SQL_ELSEWHERE)


def test_the_check_sees_a_statement_run() -> None:
    assert _runs_statements("conn.execute('SELECT 1')\n")
    assert _runs_statements("cur.executemany(query, rows)\n")
    assert not _runs_statements("repo.places(conn, table='depot')\n")
