"""A generated district goes through `clearday import` like a real one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from simulator.city import City


def _cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLEARDAY_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def _counts(url: str) -> dict[str, int]:
    tables = ("depot", "transfer_station", "collection_point", "truck", "road")
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # type: ignore[index]


def test_generated_city_imports_cleanly_and_reimports_as_updates(
    tmp_path: Path, database_url: str
) -> None:
    out = tmp_path / "district"
    made = _cli(
        "simulate",
        "city",
        "--out",
        str(out),
        "--points",
        "300",
        "--trucks",
        "10",
        "--seed",
        "4",
        database_url=database_url,
    )
    assert made.returncode == 0, made.stderr
    city = City.load(out)
    expected = {
        "depot": len(city.depots),
        "transfer_station": len(city.stations),
        "collection_point": len(city.points),
        "truck": len(city.trucks),
        "road": len(city.roads),
    }
    first = _cli("import", str(out), database_url=database_url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert _counts(database_url) == expected
    again = _cli("import", str(out), database_url=database_url)
    assert again.returncode == 0, again.stderr
    assert _counts(database_url) == expected
    with psycopg.connect(database_url) as conn:
        kinds = {r[0] for r in conn.execute("SELECT DISTINCT stream FROM collection_point")}
    assert {"other", "kitchen"} <= kinds
