"""`clearday simulate day --city DIR` drives a district given as import files only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.district_files import POINTS, write_district


def test_simulate_day_drives_a_hand_written_district(tmp_path: Path) -> None:
    folder = write_district(tmp_path / "district")
    truth = tmp_path / "truth.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", "simulate", "day",
         "--city", str(folder), "--dry-run", "--truth", str(truth), "--date", "2025-03-03",
         "--random-faults", "0"],
        capture_output=True, text=True, timeout=120, env=os.environ.copy(), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["fixes"] > 100
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    assert records[0]["city"]["import_files"] == str(folder)
    served = {r["point_id"] for r in records if r["type"] == "service"}
    assert served == {p[0] for p in POINTS}


def test_simulate_day_names_the_bad_row(tmp_path: Path) -> None:
    folder = write_district(tmp_path / "district")
    trucks = (folder / "trucks.csv").read_text(encoding="utf-8")
    (folder / "trucks.csv").write_text(trucks.replace("BH-D01", "BH-D99"), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", "from fleet.cli import main; main()", "simulate", "day",
         "--city", str(folder), "--dry-run", "--truth", str(tmp_path / "t.jsonl")],
        capture_output=True, text=True, timeout=120, env=os.environ.copy(), check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "trucks.csv, line 2: depot_id 'BH-D99' is not in the depots" in done.stderr
    assert "trucks.csv, line 3:" in done.stderr
    assert "Traceback" not in done.stderr
