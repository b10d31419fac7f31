"""Spreadsheet exports of scored calls: CSV that Excel opens correctly and XLSX.

Used by ``rescore`` (``results.csv``, ``results.xlsx``) and by the dashboard's export, so it
knows nothing of either: it takes result rows as the store gives them (dicts with the JSON
columns ``failed_rules``, ``findings``, ``verdicts`` as text, or already parsed) and writes
tables of typed columns.

* **CSV** is UTF-8 *with* a byte-order mark (``utf-8-sig``: Excel on Chinese Windows reads a
  CSV without one as GBK and garbles every Chinese character), CRLF line ends, numbers as
  plain numbers, times as ``YYYY-MM-DD HH:MM:SS`` (a form Excel parses as a date-time; the
  call's own wall-clock time, its UTC offset dropped). Text cells that a spreadsheet would
  read as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return,
  or their full-width forms) get a leading ``'`` (OWASP, "CSV Injection"): transcripts and
  rule messages are what callers said.
* **XLSX** (XlsxWriter): every text cell is written as a string (never a formula, number or
  link), numbers and times with number formats, column widths counted in CJK cells (a
  Chinese character is two columns wide), the header frozen and filtered.

Use: ``csv_bytes(RESULT_COLUMNS, map(result_record, rows))`` and
``xlsx_bytes(result_sheets(rows))`` for a download (``write_csv`` / ``write_xlsx`` for a
file, written atomically). Rows of the store's ``findings`` table (``call_id``, ``seq``,
``rule_id``, ``severity``, ``message``, ``start_s``, ``end_s``) are already records of
:data:`FINDING_COLUMNS` (their ``evidence`` text left empty).
"""

from __future__ import annotations

import csv
import io
import json
import os
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

Kind = Literal["text", "number", "int", "datetime", "bool"]

#: the first characters that make a spreadsheet read a cell as a formula (OWASP), with the
#: full-width forms a Chinese input method types
_FORMULA_START = frozenset("=+-@\t\r＝＋－＠")

#: widest column, in character cells, of the XLSX sheets
MAX_WIDTH = 60


@dataclass(frozen=True)
class Column:
    """One exported column: its key in the records, its header, its kind."""

    key: str
    header: str
    kind: Kind = "text"
    #: XLSX number format (numbers and times)
    num_format: str | None = None


@dataclass(frozen=True)
class Sheet:
    name: str
    columns: Sequence[Column]
    records: Sequence[Mapping[str, Any]]


RESULT_COLUMNS: tuple[Column, ...] = (
    Column("call_id", "call id"),
    Column("agent_id", "agent"),
    Column("team", "team"),
    Column("started", "started", "datetime", "yyyy-mm-dd hh:mm:ss"),
    Column("score", "score", "number", "0.0"),
    Column("grade", "grade"),
    Column("failed_rules", "failed rules"),
    Column("review", "review", "bool"),
    Column("complete", "complete", "bool"),
)

FINDING_COLUMNS: tuple[Column, ...] = (
    Column("call_id", "call id"),
    Column("seq", "#", "int", "0"),
    Column("rule_id", "rule"),
    Column("severity", "severity"),
    Column("message", "message"),
    Column("start_s", "evidence start (s)", "number", "0.0"),
    Column("end_s", "evidence end (s)", "number", "0.0"),
    Column("evidence", "evidence"),
)


# ------------------------------------------------------------------ values


def neutralise(text: str) -> str:
    """``text`` safe to put in a CSV cell: a leading ``'`` when a spreadsheet would read it
    as a formula (OWASP CSV injection), otherwise unchanged."""
    if text and text[0] in _FORMULA_START:
        return "'" + text
    return text


def parse_time(value: Any) -> datetime | None:
    """A stored start time (ISO 8601 text or a datetime) as a naive wall-clock datetime (the
    call's own local time; the offset is dropped so Excel shows what the call centre saw);
    ``None`` when missing or unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        t = value
    else:
        try:
            t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return t.replace(tzinfo=None, microsecond=0)


def _json(value: Any, empty: Any) -> Any:
    if value is None or value == "":
        return empty
    if isinstance(value, str):
        return json.loads(value)
    return value


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


def result_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A store result row (``Store.results``) as a record of :data:`RESULT_COLUMNS` (and the
    rescore CSV's extra columns): typed values, lists as space-separated ids."""
    verdicts = _json(row.get("verdicts"), {})
    unsure = [rid for rid, v in verdicts.items() if v and v[0] == "uncertain"]
    ok = row.get("status", "ok") == "ok"
    review = row.get("review")
    if review is None and ok:
        review = bool(unsure)
    findings = _json(row.get("findings"), [])
    score = row.get("score")
    return {
        "call_id": row.get("call_id") or "",
        "status": row.get("status") or "",
        "agent_id": row.get("agent_id") or "",
        "team": row.get("team") or "",
        "started": parse_time(row.get("started_at")),
        "started_at": row.get("started_at") or "",
        "score": None if score is None else float(score),
        "grade": row.get("grade") or "",
        "failed": _flag(row.get("failed")),
        "failed_rules": " ".join(_json(row.get("failed_rules"), [])),
        "findings": len(findings),
        "review": _flag(review),
        "uncertain_rules": " ".join(unsure),
        "complete": _flag(row.get("complete")),
        "source": row.get("source") or "",
        "error": row.get("error") or "",
    }


def finding_records(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One record of :data:`FINDING_COLUMNS` per finding of a store result row: the first
    evidence's times, every evidence as ``start–end s role: text [matched]`` lines."""
    out = []
    for seq, f in enumerate(_json(row.get("findings"), []), 1):
        ev = f.get("evidence") or []
        lines = []
        for e in ev:
            line = f"{float(e.get('start') or 0):.1f}–{float(e.get('end') or 0):.1f} s"
            if e.get("role"):
                line += f" {e['role']}"
            if e.get("text"):
                line += f": {e['text']}"
            if e.get("matched"):
                line += f" [{e['matched']}]"
            lines.append(line)
        out.append(
            {
                "call_id": row.get("call_id") or "",
                "seq": seq,
                "rule_id": f.get("rule_id") or "",
                "severity": f.get("severity") or "",
                "message": f.get("message") or "",
                "start_s": float(ev[0]["start"]) if ev and ev[0].get("start") is not None else None,
                "end_s": float(ev[0]["end"]) if ev and ev[0].get("end") is not None else None,
                "evidence": "\n".join(lines),
            }
        )
    return out


def _csv_cell(kind: Kind, value: Any) -> str | int | float:
    if value is None:
        return ""
    if kind == "number":
        f = float(value)
        return int(f) if f.is_integer() else f
    if kind == "int":
        return int(value)
    if kind == "bool":
        return "true" if value else "false"
    if kind == "datetime":
        t = parse_time(value)
        return "" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")
    return neutralise(str(value))


# ------------------------------------------------------------------ CSV


def write_csv_stream(
    f: IO[str], columns: Sequence[Column], records: Iterable[Mapping[str, Any]]
) -> None:
    """CSV rows (header first, CRLF line ends) to a text stream opened with ``newline=""``;
    the caller writes the BOM (``utf-8-sig``)."""
    w = csv.writer(f, lineterminator="\r\n")
    w.writerow([neutralise(c.header) for c in columns])
    for r in records:
        w.writerow([_csv_cell(c.kind, r.get(c.key)) for c in columns])


def csv_bytes(columns: Sequence[Column], records: Iterable[Mapping[str, Any]]) -> bytes:
    """The whole CSV file as bytes (BOM first), for a download."""
    buf = io.StringIO(newline="")
    write_csv_stream(buf, columns, records)
    return buf.getvalue().encode("utf-8-sig")


def write_csv(path: Path, columns: Sequence[Column], records: Iterable[Mapping[str, Any]]) -> None:
    """Write ``path`` atomically (a temporary file beside it, then renamed)."""
    _atomic(path, lambda tmp: _write_csv_file(tmp, columns, records))


def _write_csv_file(
    tmp: Path, columns: Sequence[Column], records: Iterable[Mapping[str, Any]]
) -> None:
    with tmp.open("w", encoding="utf-8-sig", newline="") as f:
        write_csv_stream(f, columns, records)


# ------------------------------------------------------------------ XLSX


def display_width(text: str) -> int:
    """Character cells ``text`` takes in a spreadsheet column (wide and full-width East
    Asian characters count two); of a multi-line cell, its longest line."""
    best = 0
    for line in text.split("\n"):
        n = 0
        for ch in line:
            n += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        best = max(best, n)
    return best


def _xlsx_text(kind: Kind, value: Any) -> str:
    """How a value reads in its cell, for the column width."""
    if value is None:
        return ""
    if kind == "datetime":
        return "0000-00-00 00:00:00"
    if kind == "bool":
        return "FALSE"
    if kind in ("number", "int"):
        return f"{float(value):.1f}"
    return str(value)


def write_xlsx_file(target: str | Path | IO[bytes], sheets: Sequence[Sheet]) -> None:
    """An XLSX workbook with one worksheet per :class:`Sheet` to a path or a binary stream."""
    import xlsxwriter  # imported here: only exports need it

    wb = xlsxwriter.Workbook(
        target,
        {
            # a string is a string: never a formula, a number or a link
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
            # a big export goes through temporary files, not memory; a stream is small
            "in_memory": not isinstance(target, (str, Path)),
            # no timestamp of the run inside the file
            "default_date_format": "yyyy-mm-dd hh:mm:ss",
        },
    )
    wb.set_properties({"created": datetime(2000, 1, 1)})
    header = wb.add_format({"bold": True, "bg_color": "#F5F7FA", "bottom": 1})
    wrap = wb.add_format({"text_wrap": True, "valign": "top"})
    top = wb.add_format({"valign": "top"})
    formats: dict[str | None, Any] = {None: top}
    for sheet in sheets:
        for c in sheet.columns:
            if c.num_format and c.num_format not in formats:
                formats[c.num_format] = wb.add_format({"num_format": c.num_format, "valign": "top"})
    for sheet in sheets:
        ws = wb.add_worksheet(sheet.name)
        cols = list(sheet.columns)
        widths = [display_width(c.header) for c in cols]
        multiline = [False] * len(cols)
        for i, r in enumerate(sheet.records, 1):
            for j, c in enumerate(cols):
                v = r.get(c.key)
                if c.kind == "text":
                    s = "" if v is None else str(v)
                    if not s:
                        ws.write_blank(i, j, None, top)
                    elif "\n" in s:
                        multiline[j] = True
                        ws.write_string(i, j, s, wrap)
                    else:
                        ws.write_string(i, j, s, top)
                elif v is None:
                    ws.write_blank(i, j, None, formats[c.num_format])
                elif c.kind == "bool":
                    ws.write_boolean(i, j, bool(v), top)
                elif c.kind == "datetime":
                    t = parse_time(v)
                    if t is None:
                        ws.write_blank(i, j, None, formats[c.num_format])
                    else:
                        ws.write_datetime(i, j, t, formats[c.num_format])
                else:
                    ws.write_number(i, j, float(v), formats[c.num_format])
                if widths[j] < MAX_WIDTH:
                    text = _xlsx_text(c.kind, v)
                    if 2 * len(text) > widths[j]:  # else it cannot be wider
                        widths[j] = max(widths[j], display_width(text))
        for j, c in enumerate(cols):
            ws.write_string(0, j, c.header, header)
            width = min(widths[j] + 2, MAX_WIDTH)
            ws.set_column(j, j, width, wrap if multiline[j] else None)
        ws.freeze_panes(1, 0)
        ws.autofilter(0, 0, max(len(sheet.records), 1), len(cols) - 1)
    wb.close()


def write_xlsx(path: Path, sheets: Sequence[Sheet]) -> None:
    """Write ``path`` atomically (a temporary file beside it, then renamed)."""
    _atomic(path, lambda tmp: write_xlsx_file(tmp, sheets))


def xlsx_bytes(sheets: Sequence[Sheet]) -> bytes:
    """The whole workbook as bytes, for a download."""
    buf = io.BytesIO()
    write_xlsx_file(buf, sheets)
    return buf.getvalue()


def result_sheets(rows: Sequence[Mapping[str, Any]]) -> list[Sheet]:
    """The standard workbook of result rows: ``results`` (one row per call) and
    ``findings`` (one row per finding)."""
    return [
        Sheet("results", RESULT_COLUMNS, [result_record(r) for r in rows]),
        Sheet("findings", FINDING_COLUMNS, [f for r in rows for f in finding_records(r)]),
    ]


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
