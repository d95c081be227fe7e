"""A generated district goes through `clearday import` like a real one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from simulator.city import generate
from simulator.district import load_city
from simulator.plans import greedy_plan


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
    city = load_city(out)
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


def test_simulate_day_drives_the_published_plan_from_the_database(
    tmp_path: Path, database_url: str
) -> None:
    out = tmp_path / "district"
    city = generate(n_points=50, n_trucks=3, seed=2)
    city.write(out)
    assert _cli("import", str(out), database_url=database_url).returncode == 0
    plan = greedy_plan(city, max_points_per_truck=3)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO plan (district_id, service_date, status, document)"
            " VALUES ('default', '2025-03-03', 'published', %s)",
            (Jsonb(plan.to_dict()),),
        )
    truth = tmp_path / "truth.jsonl"
    proc = _cli("simulate", "day", "--city", str(out), "--from-db", "--district", "default",
                "--date", "2025-03-03", "--dry-run", "--truth", str(truth),
                database_url=database_url)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    served = [
        rec["point_id"]
        for rec in map(json.loads, truth.read_text().splitlines())
        if rec["type"] == "service"
    ]
    planned = [s.ref_id or "" for r in plan.routes for s in r.stops if s.kind == "point"]
    assert sorted(served) == sorted(planned)
    missing = _cli("simulate", "day", "--city", str(out), "--from-db", "--date", "2025-03-04",
                   "--dry-run", database_url=database_url)  # fmt: skip
    assert missing.returncode == 2 and "no plan for district 'default'" in missing.stderr
