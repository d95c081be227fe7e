"""The settings tables in the docs and deploy/.env.example say what fleet/config.py does:
every name they give exists with the default they give, and every setting is in a table."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.config import variables

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
DAY_S = 86_400
UNSET = {"unset", "–", "-", "—", ""}
# Variables of deploy/compose.yaml itself, not of ClearDay's processes.
COMPOSE_ONLY = {"CLEARDAY_VERSION"}


@dataclass(frozen=True)
class Row:
    where: str
    names: tuple[str, ...]
    defaults: tuple[str, ...] | None  # None: the table has no default column


def _names(cell: str) -> tuple[str, ...]:
    """`CLEARDAY_A_B` / `_C` → CLEARDAY_A_B, CLEARDAY_A_C; a name without the prefix
    (a table under "Settings (`CLEARDAY_…`)") gets it."""
    names: list[str] = []
    for token in re.findall(r"`([A-Z0-9_]+)`", cell):
        if token.startswith("_"):
            tail = token.strip("_").split("_")
            base = names[-1].split("_")
            names.append("_".join(base[: -len(tail)] + tail))
        else:
            names.append(token if token.startswith("CLEARDAY_") else f"CLEARDAY_{token}")
    return tuple(names)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _rows(path: Path) -> list[Row]:
    """The rows of every table whose first column is headed "variable" or "setting"."""
    rows: list[Row] = []
    default_col: int | None = None
    in_table = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("|"):
            in_table = False
            continue
        cells = _cells(line)
        if not in_table:
            in_table = True
            heads = [c.lower() for c in cells]
            is_settings = heads[0] in ("variable", "setting")
            default_col = heads.index("default") if "default" in heads else None
            if not is_settings:
                in_table = None  # type: ignore[assignment]  # another kind of table
            continue
        if in_table is None or set(line) <= set("|-: "):
            continue
        names = _names(cells[0])
        if not names:
            continue
        defaults = None
        if default_col is not None:
            cell = cells[default_col].replace("`", "")
            parts = re.split(r" / |, ", cell)
            defaults = tuple(parts) if len(parts) == len(names) else (cell,) * len(names)
        rows.append(Row(f"{path.relative_to(ROOT)}:{number}", names, defaults))
    return rows


def _same(documented: str, default: object) -> bool:
    text = documented.strip()
    if default is None:
        return text.lower() in UNSET
    if default == "":
        return text.lower() in UNSET | {"empty", '""'}
    days = re.fullmatch(r"(\d+) days?", text)
    if days and isinstance(default, int | float):
        return int(days[1]) * DAY_S == default
    if isinstance(default, bool):
        return text.lower() == str(default).lower()
    if isinstance(default, int | float):
        try:
            return math.isclose(float(text.replace(",", "")), float(default))
        except ValueError:
            return False
    return text == str(default)


DOC_ROWS = [row for path in DOCS for row in _rows(path)]


def test_the_docs_have_settings_tables() -> None:
    """The parser finds the tables (a test of the test: an empty list would pass the rest)."""
    assert len(DOC_ROWS) > 40
    assert any(row.defaults for row in DOC_ROWS)


@pytest.mark.parametrize("row", DOC_ROWS, ids=lambda r: r.where)
def test_every_documented_setting_exists_with_its_documented_default(row: Row) -> None:
    known = variables()
    for i, name in enumerate(row.names):
        assert name in known, f"{row.where}: {name} is not a setting"
        if row.defaults is not None:
            assert _same(row.defaults[i], known[name]), (
                f"{row.where}: {name} documented as {row.defaults[i]!r}, default {known[name]!r}"
            )


def test_every_setting_is_in_a_table_with_its_default() -> None:
    documented = {name for row in DOC_ROWS if row.defaults for name in row.names}
    assert sorted(set(variables()) - documented) == []


def test_env_example_shows_every_setting_with_its_default() -> None:
    known = variables()
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    shown = re.findall(r"^#?(CLEARDAY_[A-Z0-9_]+)=(\S*)", text, flags=re.MULTILINE)
    assert shown, "no settings found in .env.example"
    for name, value in shown:
        if name in COMPOSE_ONLY:
            continue
        assert name in known, f".env.example: {name} is not a setting"
        if value or known[name] not in (None, ""):
            # the secrets and URLs the operator fills in are shown empty
            assert value == "" or _same(value, known[name]), (
                f".env.example: {name}={value}, default {known[name]!r}"
            )
    mentioned = set(re.findall(r"CLEARDAY_[A-Z0-9_]+", text)) - COMPOSE_ONLY
    assert sorted(set(known) - mentioned) == []


def test_the_parser_reads_shorthand_names_and_defaults() -> None:
    assert _names("`CLEARDAY_INGEST_MAX_FUTURE_S` / `_MAX_PAST_S`") == (
        "CLEARDAY_INGEST_MAX_FUTURE_S", "CLEARDAY_INGEST_MAX_PAST_S",
    )  # fmt: skip
    assert _names("`ALERT_CASE_DUE_H_HIGH` / `_NORMAL`")[1] == "CLEARDAY_ALERT_CASE_DUE_H_NORMAL"
    assert _same("7 days", 604_800) and not _same("6 days", 604_800)
    assert _same("unset", None) and not _same("0", None)
    assert _same("0.5", 0.5) and not _same("0.6", 0.5)
