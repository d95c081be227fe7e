"""How tidy the house is: one JSON line of counts a maintainer can compare over time.

- ``vocabulary``: for each domain word list (waste streams, truck types, road
  classes), the places in the packages' code that spell out every member (a
  ``Literal``, a tuple/set/list or a dict's keys); ``default_speeds``, the dicts that
  map road classes to the default speeds; ``haversine``, the functions named
  ``*haversine*`` (``@overload`` signatures are not counted again); ``earth_radius``, the literals of an Earth radius in metres.
- ``long_functions``: functions (and methods) longer than 80 lines.
- ``function_imports``: ``import`` statements inside a function body.
- ``duplicates``: the pairs the ``duplicates`` command lists for the whole tree
  (``null`` when the command is not installed).

Run from the repository root: ``python bench/house.py [--where]``; ``--where``
prints the places before the figures.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ("fleet", "ingest", "routing", "simulator")
LONG_FUNCTION_LINES = 80
WORD_LISTS = {
    "waste_streams": frozenset({"other", "kitchen", "recyclable", "hazardous", "mixed"}),
    "truck_types": frozenset({"compactor", "kitchen", "small"}),
    "road_classes": frozenset({"arterial", "secondary", "local", "lane"}),
}
DEFAULT_SPEEDS_KMH = {"arterial": 50.0, "secondary": 40.0, "local": 30.0, "lane": 15.0}
EARTH_RADIUS_RANGE_M = (6.3e6, 6.4e6)


def _sources(root: Path) -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)


def _strings(nodes: list[ast.expr | None]) -> set[str]:
    return {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _members(node: ast.AST) -> set[str] | None:
    """The strings a literal word list spells out, or None if the node is not one."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return _strings(list(node.elts))
    if isinstance(node, ast.Dict):
        return _strings(list(node.keys))
    if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "Literal":
        inner = node.slice
        return _strings(list(inner.elts) if isinstance(inner, ast.Tuple) else [inner])
    return None


def _is_speed_table(node: ast.AST) -> bool:
    if not isinstance(node, ast.Dict):
        return False
    pairs = {
        k.value: v.value
        for k, v in zip(node.keys, node.values, strict=True)
        if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
    }
    shared = [k for k in pairs if k in DEFAULT_SPEEDS_KMH]
    return len(shared) >= 3 and all(pairs[k] == DEFAULT_SPEEDS_KMH[k] for k in shared)


def _is_overload(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A typing.overload signature: the same function as the definition after it."""
    return any(
        getattr(d, "id", getattr(d, "attr", None)) == "overload" for d in func.decorator_list
    )


def _function_imports(func: ast.AST) -> Iterator[ast.AST]:
    for node in ast.walk(func):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def measure(root: Path) -> tuple[dict[str, object], dict[str, list[str]]]:
    where: dict[str, list[str]] = {
        k: []
        for k in (
            *WORD_LISTS,
            "default_speeds",
            "haversine",
            "earth_radius",
            "long_functions",
            "function_imports",
        )
    }
    for rel, tree in _sources(root):
        seen_imports: set[int] = set()
        for node in ast.walk(tree):
            place = f"{rel}:{getattr(node, 'lineno', 0)}"
            members = _members(node)
            if members is not None:
                for name, words in WORD_LISTS.items():
                    # A Literal's tuple is the same place as the Literal.
                    if words <= members and place not in where[name]:
                        where[name].append(place)
            if _is_speed_table(node):
                where["default_speeds"].append(place)
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, int | float)
                and not isinstance(node.value, bool)
                and EARTH_RADIUS_RANGE_M[0] <= node.value <= EARTH_RADIUS_RANGE_M[1]
            ):
                where["earth_radius"].append(place)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if "haversine" in node.name and not _is_overload(node):
                    where["haversine"].append(place)
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > LONG_FUNCTION_LINES:
                    where["long_functions"].append(f"{place} {node.name} ({lines})")
                for imp in _function_imports(node):
                    if id(imp) not in seen_imports:
                        seen_imports.add(id(imp))
                        where["function_imports"].append(f"{rel}:{imp.lineno}")
    figures: dict[str, object] = {
        "vocabulary": {
            k: len(where[k]) for k in (*WORD_LISTS, "default_speeds", "haversine", "earth_radius")
        },
        "long_functions": len(where["long_functions"]),
        "function_imports": len(where["function_imports"]),
        "duplicates": _duplicate_pairs(root),
    }
    return figures, where


def _duplicate_pairs(root: Path) -> int | None:
    command = shutil.which("duplicates")
    if command is None:
        return None
    out = subprocess.run(
        [command, "--repo", str(root), "--seconds", "120"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    if out.startswith("no duplicates"):
        return 0
    found = re.match(r"(\d+) pairs", out)
    return int(found.group(1)) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--where", action="store_true", help="list the places first")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    figures, where = measure(args.root)
    if args.where:
        for name, places in where.items():
            for place in places:
                print(f"{name}\t{place}")
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
