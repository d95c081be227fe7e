"""`clearday import` against a real PostgreSQL: a district owns its rows, and hostile
bytes are answered with file and line — never a traceback, never a half-written import."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from fleet import importer
from tests.integration.test_foundation import run_cli

HEADER = "id,name,lat,lon,stream,daily_amount_kg,window_start,window_end"
GOOD_ROWS = [
    "P0001,芜湖路小区,31.82,117.29,其他,420,06:00,10:00",
    "P0002,徽州大道,31.83,117.28,厨余,300,06:00,11:00",
    "P0003,宁国路,31.84,117.27,other,250,07:00,12:00",
]
TABLES = ("district", "depot", "transfer_station", "collection_point", "truck", "road")


def points_csv(rows: list[str] = GOOD_ROWS) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every domain table, in a stable order."""
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() for table in TABLES
        }


def import_bytes(url: str, files: list[tuple[str, bytes]], district: str) -> importer.ImportSummary:
    parsed = importer.parse_files(files, default_district=district)
    with psycopg.connect(url) as conn:
        return importer.load(conn, parsed)


# --- hostile bytes -------------------------------------------------------------------

# Tokens that break a value but not the CSV's shape: wherever one lands inside a value
# of line k, the import must be refused with an error on line k.
IN_VALUE = [
    b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x1b[31m", b"\x7f",
    b"\xe2\x80\xae", b"\xe2\x80\x8b", b"\t",
]  # fmt: skip
# Values that are well-formed text but wrong for their column.
BAD_NUMBERS = ["nan", "inf", "-inf", "1e999", "NaN", "0x10", "1,5", "", "四百", "9" * 400]
BAD_COORDINATES = {  # column -> values: lat, lon
    2: ["91", "-90.0001", "1e3", "nan", "inf", "abc"],
    3: ["181", "-180.0001", "1e3", "-inf", "NaN", "31.8.1"],
}
BAD_TIMES = ["24:00", "7", "25:61", "-1:00", "06:60", "0600", "06-00", "nan", "１２:００"]

# Anything at all, biased to what spreadsheets and attackers produce.
HOSTILE = st.sampled_from(
    [
        *IN_VALUE, b'"', b'""', b",", b"\n", b"\r\n", b"\r", b"\xff\xfe", b"\xfe\xff",
        b"\x00\x00\xfe\xff", b"nan", b"inf", b"1e999", b"-", b"99:99", b"=cmd|' /C calc'!A0",
        b"\xe4\xb8\xad", b"x" * 140_000,
    ]
)  # fmt: skip


def is_file_level(error: importer.RowError) -> bool:
    return error.line == 0 and error.message in ("has no rows",)


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cuts=st.lists(st.tuples(st.integers(0, 400), HOSTILE), min_size=1, max_size=4),
    noise=st.binary(max_size=64),
)
@example(cuts=[(len(HEADER) + 5, b"\x00")], noise=b"")  # the NUL byte of the issue
@example(cuts=[(0, b"\xff\xfe")], noise=b"")  # UTF-16 from Excel
@example(cuts=[(len(HEADER) + 7, "中".encode()), (len(HEADER) + 7, b"-")], noise=b"")  # harmless
def test_hostile_csv_bytes_are_refused_by_line_or_imported_whole(
    database_url: str, cuts: list[tuple[int, bytes]], noise: bytes
) -> None:
    """Whatever the bytes: the import succeeds whole, or is refused with every error
    naming points.csv and a line (the CLI prints them), and nothing is written."""
    data = bytearray(points_csv())
    for at, token in sorted(cuts, reverse=True):
        data[at:at] = token
    data += noise
    before = snapshot(database_url)
    try:
        summary = import_bytes(database_url, [("points.csv", bytes(data))], "fuzz")
    except importer.ImportRejected as rejected:
        event("refused")
        assert rejected.errors, "a refusal lists its errors"
        for error in rejected.errors:
            assert error.file == "points.csv"
            assert error.line >= 1 or is_file_level(error), error
            assert "Traceback" not in error.message and str(error).startswith("points.csv")
        assert snapshot(database_url) == before, "a refused import wrote something"
        return
    event("imported")
    # Accepted: every valid row is stored exactly as parsed, in district fuzz.
    parsed = importer.parse_files([("points.csv", bytes(data))], default_district="fuzz")
    with psycopg.connect(database_url) as conn:
        for row in parsed.rows["points"]:
            stored = conn.execute(
                "SELECT district_id, name FROM collection_point WHERE point_id = %s", (row["id"],)
            ).fetchone()
            assert stored == ("fuzz", row["name"])
    assert sum(summary.inserted.values()) + sum(summary.updated.values()) == len(
        parsed.rows["points"]
    )


@st.composite
def one_bad_value(draw: st.DrawFn) -> tuple[bytes, int]:
    """A good file with one value of one line spoilt; returns (file, that line)."""
    index = draw(st.integers(0, len(GOOD_ROWS) - 1))
    values = GOOD_ROWS[index].split(",")
    column = draw(st.sampled_from([1, 2, 3, 5, 6, 7]))  # name, lat, lon, amount, window
    if column == 1:
        at = draw(st.integers(0, len(values[1])))
        token = draw(st.sampled_from(IN_VALUE)).decode("utf-8", "surrogateescape")
        values[1] = values[1][:at] + token + values[1][at:]
    elif column in (2, 3):
        values[column] = draw(st.sampled_from(BAD_COORDINATES[column]))
    elif column == 5:
        values[column] = draw(st.sampled_from(BAD_NUMBERS))
    else:
        values[column] = draw(st.sampled_from(BAD_TIMES))
    rows = list(GOOD_ROWS)
    rows[index] = ",".join(values)
    text = "\n".join([HEADER, *rows]) + "\n"
    return text.encode("utf-8", "surrogateescape"), index + 2


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=one_bad_value())
def test_a_bad_value_is_named_by_its_file_and_line(
    database_url: str, case: tuple[bytes, int]
) -> None:
    data, line = case
    before = snapshot(database_url)
    with pytest.raises(importer.ImportRejected) as caught:
        import_bytes(database_url, [("points.csv", data)], "north")
    assert [(e.file, e.line) for e in caught.value.errors] == [("points.csv", line)], [
        str(e) for e in caught.value.errors
    ]
    assert snapshot(database_url) == before


# --- the CLI: exit code, file:line, no traceback, nothing written ----------------------

CLI_CASES = {
    "nul": (
        points_csv().replace(b"420", b"4\x0020"),
        "points.csv, line 2: holds a NUL byte (0x00) at byte",
    ),
    "utf16": (
        points_csv().decode().encode("utf-16"),  # with its byte-order mark, as Excel saves it
        "points.csv, line 1: is UTF-16 text, not UTF-8",
    ),
    "gbk": (points_csv().decode().encode("gbk"), "points.csv, line 2: byte 0x"),
    "ragged": (
        points_csv([*GOOD_ROWS[:2], GOOD_ROWS[2] + ",extra"]),
        "points.csv, line 4: has 9 values but the header names 8 columns",
    ),
    "huge": (
        points_csv([GOOD_ROWS[0], "P0009," + "名" * 200_000 + ",31.8,117.2,other,1,06:00,07:00"]),
        "points.csv, line 3: cannot be read as CSV: a value is longer than",
    ),
    "inf": (
        points_csv([GOOD_ROWS[0].replace(",420,", ",inf,")]),
        "points.csv, line 2: daily_amount_kg: 'inf' is not a finite number",
    ),
    "time": (
        points_csv([GOOD_ROWS[0].replace("10:00", "25:00")]),
        "points.csv, line 2: window_end: '25:00' is not a time of day HH:MM",
    ),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_answers_bad_bytes_with_file_and_line(
    database_url: str, tmp_path: Path, case: str
) -> None:
    data, expected = CLI_CASES[case]
    (tmp_path / "points.csv").write_bytes(data)
    before = snapshot(database_url)
    done = run_cli("import", str(tmp_path), env={"CLEARDAY_DATABASE_URL": database_url})
    assert done.returncode == 1, done.stderr
    assert expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "nothing was imported" in done.stderr
    assert snapshot(database_url) == before


# --- a district owns its rows ----------------------------------------------------------


def test_two_districts_with_the_same_ids_do_not_overwrite_each_other(
    database_url: str, tmp_path: Path
) -> None:
    """The usual case: each district numbers its points P0001… in its own spreadsheet."""
    north, south = tmp_path / "north", tmp_path / "south"
    for folder, name in ((north, "北区"), (south, "南区")):
        folder.mkdir()
        rows = [r.replace(",", f",{name}", 1) for r in GOOD_ROWS]
        (folder / "points.csv").write_bytes(points_csv(rows))
    env = {"CLEARDAY_DATABASE_URL": database_url}
    first = run_cli("import", str(north), "--district", "north", env=env)
    assert first.returncode == 0, first.stderr
    kept = snapshot(database_url)
    second = run_cli("import", str(south), "--district", "south", env=env)
    assert second.returncode == 1
    for line, point in ((2, "P0001"), (3, "P0002"), (4, "P0003")):
        assert (
            f"points.csv, line {line}: point id '{point}' is already used outside district "
            f"south; ids are unique across the deployment — prefix them with your district's "
            f"code, e.g. south-{point}"
        ) in second.stderr
    assert (
        "北区" not in second.stderr and "north" not in second.stderr
    )  # nothing about the other row
    assert "Traceback" not in second.stderr
    assert snapshot(database_url) == kept  # north untouched, no district south created
    prefixed = [r.replace("P000", "south-P000") for r in GOOD_ROWS]
    (south / "points.csv").write_bytes(points_csv(prefixed))
    third = run_cli("import", str(south), "--district", "south", env=env)
    assert third.returncode == 0, third.stderr
    after = snapshot(database_url)
    assert [r for r in after["collection_point"] if r[1] == "north"] == [
        r for r in kept["collection_point"] if r[1] == "north"
    ]


def test_every_conflict_is_listed_and_nothing_is_written(database_url: str) -> None:
    """Ids, a depot and a terminal of another district: all refused in one answer."""
    import_bytes(
        database_url,
        [
            ("depots.csv", b"id,name,lat,lon\nS-D1,south depot,31.7,117.3\n"),
            (
                "trucks.csv",
                b"id,plate,truck_type,capacity_kg,streams,depot_id,terminal_id\n"
                b"S-T1,AS1,compactor,8000,other,S-D1,S-GPS\n",
            ),
            ("points.csv", points_csv()),
        ],
        "south",
    )
    before = snapshot(database_url)
    files = [
        ("depots.csv", b"id,name,lat,lon\nN-D1,north depot,31.9,117.3\n"),
        (
            "trucks.csv",
            b"id,plate,truck_type,capacity_kg,streams,depot_id,terminal_id\n"
            b"S-T1,AN1,compactor,8000,other,N-D1,N-GPS\n"  # another district's truck id
            b"N-T2,AN2,compactor,8000,other,S-D1,N-GPS2\n"  # another district's depot
            b"N-T3,AN3,compactor,8000,other,N-D1,S-GPS\n",  # another truck's terminal
        ),
        ("points.csv", points_csv()),
    ]
    with pytest.raises(importer.ImportRejected) as caught:
        import_bytes(database_url, files, "north")
    found = {(e.file, e.line, e.message.split(" ")[0]) for e in caught.value.errors}
    assert found == {
        ("trucks.csv", 2, "truck"),
        ("trucks.csv", 3, "depot_id"),
        ("trucks.csv", 4, "terminal_id"),
        ("points.csv", 2, "point"),
        ("points.csv", 3, "point"),
        ("points.csv", 4, "point"),
    }, [str(e) for e in caught.value.errors]
    assert caught.value.refusal == "conflict"
    assert snapshot(database_url) == before


def test_an_import_racing_another_district_for_an_id_is_refused(database_url: str) -> None:
    """The checks run before the writes; the upsert itself refuses to cross districts, so
    an id another district takes in between is refused, not merged."""
    parsed = importer.parse_files([("points.csv", points_csv())], default_district="south")
    with psycopg.connect(database_url) as setup:
        setup.execute("INSERT INTO district (district_id, name) VALUES ('north', 'north')")
        setup.execute("INSERT INTO district (district_id, name) VALUES ('south', 'south')")
        setup.commit()
    holder = psycopg.connect(database_url)
    holder.execute(
        """INSERT INTO collection_point (point_id, district_id, name, lat, lon, stream,
               daily_amount_kg) VALUES ('P0002', 'north', '北', 31.9, 117.3, 'other', 1)"""
    )  # not committed yet: south's checks cannot see it
    outcome: list[BaseException | importer.ImportSummary] = []

    def south_import() -> None:
        try:
            with psycopg.connect(database_url) as conn:
                outcome.append(importer.load(conn, parsed))
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    racer = threading.Thread(target=south_import)
    racer.start()
    racer.join(2.0)
    assert racer.is_alive(), "the south import should wait on north's uncommitted P0002"
    holder.commit()
    holder.close()
    racer.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], importer.ImportRejected), outcome
    assert [(e.line, e.refusal) for e in outcome[0].errors] == [(3, "conflict")]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT point_id, district_id, name FROM collection_point").fetchall()
    assert rows == [("P0002", "north", "北")]


def test_the_database_keeps_rows_in_their_district(database_url: str) -> None:
    import_bytes(
        database_url,
        [
            ("depots.csv", b"id,name,lat,lon\nS-D1,south depot,31.7,117.3\n"),
            ("points.csv", points_csv()),
        ],
        "south",
    )
    import_bytes(database_url, [("depots.csv", b"id,name,lat,lon\nN-D1,n,31.9,117.3\n")], "north")
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table, key, value in (
            ("collection_point", "point_id", "P0001"),
            ("depot", "depot_id", "S-D1"),
        ):
            with pytest.raises(psycopg.errors.RestrictViolation, match="stays in its district"):
                conn.execute(f"UPDATE {table} SET district_id = 'north' WHERE {key} = %s", (value,))
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                """INSERT INTO truck (truck_id, district_id, plate, truck_type, capacity_kg,
                       streams, depot_id, terminal_id)
                   VALUES ('N-T1', 'north', 'A1', 'small', 1, '{other}', 'S-D1', 'G1')"""
            )
