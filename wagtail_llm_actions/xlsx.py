"""A streamed, minimal XLSX writer for the report export.

openpyxl (even in ``write_only`` mode, without lxml) builds an object per cell and serialises
it through ``xml.etree``: about 13x the time of the CSV export at 100,000 rows. This writes
the worksheet XML directly, row by row, into a ZIP stream that is sent as it is produced, so
memory stays flat and the time is close to the CSV's.

The workbook has one sheet; strings are inline strings (never formulas, whatever they start
with), numbers are numbers, datetimes are Excel serial dates shown with ``date_format``.
"""

from __future__ import annotations

import datetime
import re
import zipfile
from collections.abc import Iterable, Iterator
from decimal import Decimal
from xml.sax.saxutils import escape, quoteattr

#: Rows written between two chunks sent to the client.
ROWS_PER_CHUNK = 500

#: Excel refuses longer cell texts.
MAX_CELL_CHARS = 32767

_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_EXCEL_EPOCH = datetime.datetime(1899, 12, 30)
_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    f'<Override PartName="/xl/workbook.xml" ContentType="{_CT}.sheet.main+xml"/>'
    f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_CT}.worksheet+xml"/>'
    f'<Override PartName="/xl/styles.xml" ContentType="{_CT}.styles+xml"/>'
    "</Types>"
)
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    f'<Relationships xmlns="{_PKG_REL_NS}">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    f'<Relationships xmlns="{_PKG_REL_NS}">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_REL_NS}/styles" Target="styles.xml"/>'
    "</Relationships>"
)


def _workbook(sheet_title: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}"><sheets>'
        f'<sheet name={quoteattr(sheet_title[:31])} sheetId="1" r:id="rId1"/>'
        "</sheets></workbook>"
    )


def _styles(date_format: str) -> str:
    # style 0: general; 1: datetimes (date_format); 2: dates
    xf = 'fontId="0" fillId="0" borderId="0" xfId="0"'
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<styleSheet xmlns="{_MAIN_NS}">'
        '<numFmts count="2">'
        f'<numFmt numFmtId="164" formatCode={quoteattr(date_format)}/>'
        '<numFmt numFmtId="165" formatCode="yyyy-mm-dd"/>'
        "</numFmts>"
        '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
        "</cellStyleXfs>"
        f'<cellXfs count="3"><xf numFmtId="0" {xf}/>'
        f'<xf numFmtId="164" {xf} applyNumberFormat="1"/>'
        f'<xf numFmtId="165" {xf} applyNumberFormat="1"/></cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        "</styleSheet>"
    )


def column_letters(count: int) -> list[str]:
    """``["A", "B", …, "Z", "AA", …]`` for ``count`` columns."""
    letters = []
    for index in range(1, count + 1):
        name = ""
        while index:
            index, rest = divmod(index - 1, 26)
            name = chr(65 + rest) + name
        letters.append(name)
    return letters


def cell(ref: str, value) -> str:
    """One ``<c>`` element, or "" for an empty cell."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int):
        return f'<c r="{ref}"><v>{value}</v></c>'
    if isinstance(value, Decimal):
        if value.is_finite():
            return f'<c r="{ref}"><v>{value:f}</v></c>'
        value = str(value)
    elif isinstance(value, float):
        if value == value and value not in (float("inf"), float("-inf")):
            return f'<c r="{ref}"><v>{value!r}</v></c>'
        value = str(value)
    elif isinstance(value, datetime.datetime):
        if value.tzinfo is not None:  # shown in UTC, as Wagtail's own export does
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        serial = (value - _EXCEL_EPOCH) / datetime.timedelta(days=1)
        return f'<c r="{ref}" s="1"><v>{serial!r}</v></c>'
    elif isinstance(value, datetime.date):
        serial = (value - _EXCEL_EPOCH.date()).days
        return f'<c r="{ref}" s="2"><v>{serial}</v></c>'
    text = _ILLEGAL_XML.sub("", value if isinstance(value, str) else str(value))
    if len(text) > MAX_CELL_CHARS:
        text = text[:MAX_CELL_CHARS]
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{escape(text)}</t></is></c>'


class _Sink:
    """A write-only, unseekable file: ``zipfile`` writes into it, the generator drains it."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def stream_xlsx(
    headings: Iterable[str],
    rows: Iterable[Iterable],
    *,
    date_format: str = "yyyy-mm-dd hh:mm:ss",
    sheet_title: str = "Sheet1",
) -> Iterator[bytes]:
    """The bytes of an XLSX workbook with ``headings`` then ``rows``, in chunks."""
    headings = list(headings)
    letters = column_letters(len(headings))
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("[Content_Types].xml", _CONTENT_TYPES)
        zf.writestr("_rels/.rels", _ROOT_RELS)
        zf.writestr("xl/workbook.xml", _workbook(sheet_title))
        zf.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        zf.writestr("xl/styles.xml", _styles(date_format))
        with zf.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            head = "".join(cell(f"{c}1", str(h)) for c, h in zip(letters, headings, strict=True))
            sheet.write(
                (
                    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                    f'<worksheet xmlns="{_MAIN_NS}"><sheetData><row r="1">{head}</row>'
                ).encode()
            )
            block: list[str] = []
            number = 1
            for row in rows:
                number += 1
                cells = "".join(cell(f"{c}{number}", v) for c, v in zip(letters, row, strict=False))
                block.append(f'<row r="{number}">{cells}</row>')
                if len(block) == ROWS_PER_CHUNK:
                    sheet.write("".join(block).encode())
                    block = []
                    yield sink.drain()
            block.append("</sheetData></worksheet>")
            sheet.write("".join(block).encode())
    yield sink.drain()
