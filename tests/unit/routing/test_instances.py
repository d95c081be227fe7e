"""The Kim et al. (2006) reader on a small file written in their format."""

from __future__ import annotations

from pathlib import Path

import pytest

from routing.instances import MILE_M, read_kim

# The header of 335_stop.txt (tab-separated, comments after the values, CRLF), a
# depot row with an empty column, two landfills and the two stops of the worked
# example in the format's description (stop 0 and stop 1 of 102_stop.txt).
KIM_FILE = "\r\n".join(
    [
        '243\t//\tvehicle\tcapacity\t"(yards),"\treal\tnumber',
        '400\t//\ttotal\tyardage\tallowed\tfor\ta\tvehicle\tper\t"day,"\treal\tnumber',
        "500\t//\ttotal\tnumber\tof\tregular\tstops\tfor\ta\tvehicle\tallowed\tper\tday",
        '3600\t//\tlunch\ttime\tduration\tin\t"second,"\tlunch\ttime\tshould\tstart',
        "40\t//\tspeed:\tMPH",
        "Stop_ID\tX(feet)\tY(feet)\tEarly_St_Time (HHMM)\tLate_St_Time (HHMM)\t"
        'Svice_Time(Sec)\tLoad (Yards)\t"Stop_Type(0: Depot, 1: regular stop, 2: Landfill)"',
        "0\t1215029\t3461398\t\t600\t1500\t0\t9999\t0\t\t\t",
        "1\t1229125\t3460107\t0\t2400\t1800\t9999\t2",
        "2\t1215029\t3461398\t0\t2400\t2700\t9999\t2",
        "3\t1229125\t3460107\t600\t2400\t90\t3\t1",
        "4\t1215529\t3461398\t0\t1130\t180\t6\t1",
        "",
    ]
)


def test_kim_reader_keeps_the_formats_fields_and_distances(tmp_path: Path) -> None:
    """Capacity, daily cap, shift from the depot row, landfills as stations, windows
    in HHMM, and the worked example: 15,387 ft Manhattan = 2.914 mi = 262.3 s at 40 mph."""
    path = tmp_path / "5_stop.txt"
    path.write_bytes(KIM_FILE.encode())
    pb = read_kim(path, bks_csv=tmp_path / "none.csv").problem
    assert len(pb.points) == 2 and len(pb.stations) == 2
    t = pb.trucks[0]
    assert (t.capacity_kg, t.max_day_load_kg, t.break_duration_s) == (243.0, 400.0, 3600.0)
    assert (t.shift_start_s, t.shift_end_s) == (6 * 3600.0, 15 * 3600.0)
    assert sorted(s.tipping_time_s for s in pb.stations) == [1800.0, 2700.0]
    p4 = pb.point("4")
    assert (p4.window_start_s, p4.window_end_s, p4.amount_kg) == (0.0, 11.5 * 3600.0, 6.0)
    depot = f"depot/{pb.depots[0].depot_id}"
    assert pb.matrix.distance(depot, "point/3") / MILE_M == pytest.approx(2.914, abs=5e-4)
    assert pb.matrix.duration(depot, "point/3") == pytest.approx(262.3, abs=0.05)
