"""PDF for people to print and file: the one writer every printed export uses (the
reports and a case's record, fleet/reports/documents.py). The only module that imports
reportlab.

Text is set in `STSong-Light`, one of the Adobe-GB1 fonts every PDF reader knows by
name: nothing is embedded or downloaded, and the reader draws it with the machine's own
Song face (宋体). The text is Unicode (UniGB-UCS2-H), so it can be searched and copied.
Characters the encoding cannot carry (outside the Basic Multilingual Plane, e.g. emoji)
become `?`; control characters are dropped, a line break stays a line break.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import CondPageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle
from reportlab.platypus.flowables import Flowable

FONT = "STSong-Light"
# Latin text in one of the 14 standard fonts, which every reader has and which spaces it
# as Latin (the Song face gives it CJK metrics).
LATIN_FONT = "Helvetica"
PAGE = landscape(A4)
MARGIN = 12 * mm
CELL_PT = 8
# A column is never narrower than this many half-width characters, nor wider than
# the longest one counts for.
MIN_COLUMN_CHARS = 4
MAX_COLUMN_CHARS = 40
COLUMN_PAD_CHARS = 2  # the cell's padding
HEADING_ROOM = 25 * mm  # a heading, a table's header row and its first rows
# Table rows one document may hold: some 150 pages, about 15 s of one core to set.
MAX_ROWS = 5000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BEYOND_BMP = re.compile(r"[^\u0000-\uffff]")
_LATIN_RUN = re.compile(r"([\x20-\x7e]+)")


@dataclass(frozen=True, slots=True)
class Section:
    """A heading over a table; `empty` is printed instead of a table without rows."""

    heading: str
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    empty: str = "—"


@dataclass(frozen=True, slots=True)
class Document:
    title: str
    lines: Sequence[str] = ()  # under the title: the period, the district, when made
    sections: Sequence[Section] = ()
    page_label: str = "{page}"  # the footer's page number, e.g. "第 {page} 页"


def rows_in(document: Document) -> int:
    return sum(len(section.rows) for section in document.sections)


def printable(text: str) -> str:
    """`text` as the font and the encoding can set it."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _BEYOND_BMP.sub("?", _CONTROL.sub("", text))


def _markup(text: str) -> str:
    """Paragraph markup that sets `text` literally (Paragraphs read a little XML), its
    Latin runs in the Latin font. Every character markup could use is ASCII, so it
    lies in a Latin run, which is escaped."""
    parts = _LATIN_RUN.split(printable(text))  # odd items: the Latin runs
    return "".join(
        f'<font name="{LATIN_FONT}">{escape(part)}</font>' if i % 2 else part
        for i, part in enumerate(parts)
        if part
    ).replace("\n", "<br/>")


def _width_chars(text: str) -> int:
    """How many half-width characters `text` takes in its widest line (CJK count two)."""
    lines = text.split("\n") or [""]
    return max(sum(2 if ord(c) > 0x2E7F else 1 for c in line) for line in lines)


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("cell", fontName=FONT, fontSize=CELL_PT, leading=CELL_PT + 2)
    return {
        "title": ParagraphStyle("title", parent=base, fontSize=16, leading=20, spaceAfter=4),
        "line": ParagraphStyle("line", parent=base, fontSize=9, leading=12),
        "heading": ParagraphStyle(
            "heading", parent=base, fontSize=11, leading=14, spaceBefore=12, spaceAfter=4
        ),
        "cell": base,
    }


def _column_widths(section: Section, width: float) -> list[float]:
    weights = []
    for i, header in enumerate(section.headers):
        cells = [header, *(row[i] for row in section.rows)]
        longest = max(_width_chars(printable(c)) for c in cells)
        weights.append(min(max(longest, MIN_COLUMN_CHARS), MAX_COLUMN_CHARS) + COLUMN_PAD_CHARS)
    total = sum(weights)
    return [width * w / total for w in weights]


def _table(section: Section, styles: dict[str, ParagraphStyle], width: float) -> Flowable:
    cell = styles["cell"]
    data = [[Paragraph(_markup(h), cell) for h in section.headers]]
    data += [[Paragraph(_markup(c), cell) for c in row] for row in section.rows]
    # A row taller than a page (a long note) splits across pages instead of failing.
    table = Table(data, colWidths=_column_widths(section, width), repeatRows=1, splitInRow=1)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#9aa4ae")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e4e8ec")),
                ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f6f7f9")]),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return table


def _footer(document: Document) -> Any:
    def draw(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 8)
        canvas.drawString(MARGIN, MARGIN / 2, printable(document.title))
        page = document.page_label.format(page=doc.page)
        canvas.drawRightString(PAGE[0] - MARGIN, MARGIN / 2, printable(page))
        canvas.restoreState()

    return draw


def to_pdf(document: Document) -> bytes:
    """The document on A4 landscape pages, each table's header row repeated on every
    page it runs onto, the title and the page number in the footer."""
    pdfmetrics.registerFont(UnicodeCIDFont(FONT))  # a name, not a file: nothing is read
    styles = _styles()
    out = io.BytesIO()
    page = SimpleDocTemplate(
        out,
        pagesize=PAGE,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=printable(document.title),
        author="ClearDay",
        creator="ClearDay",
    )
    story: list[Flowable] = [Paragraph(_markup(document.title), styles["title"])]
    story += [Paragraph(_markup(line), styles["line"]) for line in document.lines]
    for section in document.sections:
        # A heading starts a new page rather than end one without its table's first rows.
        story.append(CondPageBreak(HEADING_ROOM))
        story.append(Paragraph(_markup(section.heading), styles["heading"]))
        if section.rows:
            story.append(_table(section, styles, page.width))
        else:
            story.append(Paragraph(_markup(section.empty), styles["line"]))
    footer = _footer(document)
    page.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()
