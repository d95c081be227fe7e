"""The PDF writer (fleet/pdf.py), read back with pypdf: long tables run onto more pages
with their header row, a cell taller than a page splits, data prints literally."""

from __future__ import annotations

import io

import pypdf

from fleet import pdf


def pages(body: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(body), strict=True).pages]


def test_a_long_table_repeats_its_header_and_numbers_every_page() -> None:
    rows = [[f"P{i:03d}", f"{i} 小区桶站"] for i in range(150)]
    document = pdf.Document(
        "漏收明细", ["作业日期：2026-03-02"], [pdf.Section("明细", ["收集点编号", "收集点名称"], rows)],
        page_label="第 {page} 页",
    )  # fmt: skip
    texts = pages(pdf.to_pdf(document))
    assert len(texts) >= 3
    for number, text in enumerate(texts, start=1):
        assert "收集点编号" in text and f"第 {number} 页" in text, number
    every = "\n".join(texts)
    assert all(f"P{i:03d}" in every for i in range(150))


def test_a_cell_taller_than_a_page_splits_across_pages() -> None:
    note = "".join(f"第{i}句已补收。" for i in range(600))
    document = pdf.Document("案件记录 #1", sections=[pdf.Section("办理过程", ["说明"], [[note]])])
    text = "".join(pages(pdf.to_pdf(document))).replace("\n", "")
    assert "第0句已补收" in text and "第599句已补收" in text


def test_data_prints_literally_and_what_cannot_be_set_is_replaced() -> None:
    name = '<b>桶站</b> & <font name="x">"站"</font>\x00\x07 😀'
    document = pdf.Document(name, sections=[pdf.Section("S", ["名称"], [[name]])])
    text = "\n".join(pages(pdf.to_pdf(document)))
    assert text.count('<b>桶站</b> & <font name="x">"站"</font> ?') == 3  # footer, title, cell
    assert pdf.printable("a\r\nb\x1bc\U0001f600") == "a\nbc?"


def test_a_section_without_rows_says_so() -> None:
    document = pdf.Document(
        "周小结", sections=[pdf.Section("告警统计", ["区域"], [], empty="暂无")]
    )
    assert "暂无" in pages(pdf.to_pdf(document))[0]


def test_a_heading_never_ends_a_page_without_its_table() -> None:
    """Whatever the length of the table before it, the second heading is on the page of
    its table's first row."""
    for length in range(20, 40):  # the second heading falls at every height of page 1
        first = pdf.Section("第一部分", ["编号"], [[f"R{i:02d}"] for i in range(length)])
        second = pdf.Section("第二部分", ["编号"], [["S01"], ["S02"]])
        texts = pages(pdf.to_pdf(pdf.Document("标题", sections=[first, second])))
        [page] = [t for t in texts if "第二部分" in t]
        assert "S01" in page, (length, texts)
