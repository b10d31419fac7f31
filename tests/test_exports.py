"""Exports for Excel: the CSV's bytes (BOM, CRLF, Chinese, injection neutralised, typed
values) and the XLSX read back with openpyxl (values, types, widths, frozen header)."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from qa_pipeline import exports

FINDINGS = [
    {
        "rule_id": "CLOSE-THANKS",
        "severity": "major",
        "message": '=HYPERLINK("http://x","点我")',
        "evidence": [
            {"start": 52.5, "end": 55.0, "role": "agent", "text": "好的，那先这样", "matched": ""},
            {"start": 57.25, "end": 59.0, "role": "agent", "text": "+再见", "matched": "再见"},
        ],
    },
    {"rule_id": "BANNED", "severity": "critical", "message": "说了禁语“保证”", "evidence": []},
]

ROWS: list[dict[str, Any]] = [
    {
        "call_id": "c-001",
        "status": "ok",
        "score": 87.5,
        "grade": "良好",
        "failed": 0,
        "failed_rules": json.dumps(["CLOSE-THANKS", "BANNED"]),
        "findings": json.dumps(FINDINGS, ensure_ascii=False),
        "verdicts": json.dumps({"OPEN-GREET": ["uncertain", 0, 2, "置信度低"]}),
        "agent_id": "@张三",
        "team": "-投诉组",
        "started_at": "2026-03-02T09:05:30+08:00",
        "complete": 1,
        "source": "\trec/c-001.wav",
        "error": None,
    },
    {
        "call_id": "c-002",
        "status": "ok",
        "score": 100.0,
        "grade": "优秀",
        "failed": 0,
        "failed_rules": "[]",
        "findings": "[]",
        "verdicts": "{}",
        "agent_id": "A02",
        "team": "",
        "started_at": "2026-03-03T15:30:00",
        "complete": 0,
        "source": "rec/c-002.wav",
        "error": None,
    },
    {
        "call_id": "c-003",
        "status": "error",
        "score": None,
        "grade": None,
        "failed": None,
        "failed_rules": "[]",
        "findings": "[]",
        "verdicts": "{}",
        "agent_id": None,
        "started_at": None,
        "source": "rec/c-003.wav",
        "error": "\r=cmd|' /C calc'!A0",
    },
]


def test_neutralise_prefixes_formula_starts_only() -> None:
    for s in ("=1+1", "+86 138", "-2", "@SUM(A1)", "\tx", "\rx", "＝１＋１"):
        assert exports.neutralise(s) == "'" + s
    for s in ("", "您好", "1+1", "a=b", "'quoted", " =x"):
        assert exports.neutralise(s) == s


def test_csv_bytes_are_what_excel_expects(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    exports.write_csv(path, exports.RESULT_COLUMNS, [exports.result_record(r) for r in ROWS])
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "no UTF-8 byte-order mark: Excel reads GBK"
    body = raw[3:]
    assert body.count(b"\r\n") == len(ROWS) + 1 and b"\n" not in body.replace(b"\r\n", b"")
    text = body.decode("utf-8")
    assert "良好" in text and "优秀" in text  # Chinese intact
    lines = text.split("\r\n")
    assert lines[0] == "call id,agent,team,started,score,grade,failed rules,review,complete"
    # numbers as numbers, times in a form Excel parses, booleans
    assert lines[1] == (
        "c-001,'@张三,'-投诉组,2026-03-02 09:05:30,87.5,良好,CLOSE-THANKS BANNED,true,true"
    )
    assert lines[2] == "c-002,A02,,2026-03-03 15:30:00,100,优秀,,false,false"
    assert lines[3] == "c-003,,,,,,,,"
    assert not list(path.parent.glob(".*.tmp"))


def test_csv_findings_neutralised_and_multiline_quoted() -> None:
    recs = [f for r in ROWS for f in exports.finding_records(r)]
    raw = exports.csv_bytes(exports.FINDING_COLUMNS, recs)
    assert raw[:3] == b"\xef\xbb\xbf"
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0][:3] == ["call id", "#", "rule"]
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["message"] == '\'=HYPERLINK("http://x","点我")'
    assert first["evidence start (s)"] == "52.5" and first["evidence end (s)"] == "55"
    assert first["evidence"] == "52.5–55.0 s agent: 好的，那先这样\n57.2–59.0 s agent: +再见 [再见]"
    second = dict(zip(rows[0], rows[2], strict=True))
    assert second["message"] == "说了禁语“保证”" and second["evidence start (s)"] == ""
    assert len(rows) == 3


def test_rescore_style_columns_keep_error_text_safe(tmp_path: Path) -> None:
    cols = (
        exports.Column("call_id", "call_id"),
        exports.Column("error", "error"),
        exports.Column("source", "source"),
        exports.Column("findings", "findings", "int"),
    )
    raw = exports.csv_bytes(cols, [exports.result_record(r) for r in ROWS])
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[1] == ["c-001", "", "'\trec/c-001.wav", "2"]
    assert rows[3] == ["c-003", "'\r=cmd|' /C calc'!A0", "rec/c-003.wav", "0"]


def test_xlsx_read_back(tmp_path: Path) -> None:
    path = tmp_path / "r.xlsx"
    exports.write_xlsx(path, exports.result_sheets(ROWS))
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["results", "findings"]
    ws = wb["results"]
    header = [c.value for c in ws[1]]
    assert header == [
        "call id", "agent", "team", "started", "score", "grade", "failed rules", "review",
        "complete",
    ]  # fmt: skip
    r1 = [c.value for c in ws[2]]
    assert r1 == [
        "c-001", "@张三", "-投诉组", datetime(2026, 3, 2, 9, 5, 30), 87.5, "良好",
        "CLOSE-THANKS BANNED", True, True,
    ]  # fmt: skip
    # strings are strings (no formula), numbers numbers, times dates, flags booleans
    assert [c.data_type for c in ws[2]] == ["s", "s", "s", "d", "n", "s", "s", "b", "b"]
    assert ws["D2"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert ws["E2"].number_format == "0.0"
    assert [c.value for c in ws[4]][:6] == ["c-003", None, None, None, None, None]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:I4"
    # CJK width: "CLOSE-THANKS BANNED" is 19 cells, "-投诉组" 7
    assert ws.column_dimensions["G"].width == pytest.approx(21, abs=1)
    assert ws.column_dimensions["C"].width == pytest.approx(9, abs=1)

    fs = wb["findings"]
    rows = [[c.value for c in r] for r in fs.iter_rows(min_row=2)]
    assert len(rows) == 2
    assert rows[0][:6] == [
        "c-001",
        1,
        "CLOSE-THANKS",
        "major",
        '=HYPERLINK("http://x","点我")',
        52.5,
    ]
    assert fs["E2"].data_type == "s"  # the formula-like message stays text
    assert rows[0][7].split("\n")[1] == "57.2–59.0 s agent: +再见 [再见]"
    assert rows[1][2:6] == ["BANNED", "critical", "说了禁语“保证”", None]
    assert fs.freeze_panes == "A2"


def test_xlsx_bytes_and_empty() -> None:
    data = exports.xlsx_bytes(exports.result_sheets([]))
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert [c.value for c in wb["results"][1]][0] == "call id"
    assert wb["results"].max_row == 1 and wb["findings"].max_row == 1


def test_display_width_counts_cjk_double() -> None:
    assert exports.display_width("abc") == 3
    assert exports.display_width("投诉abc") == 7
    assert exports.display_width("ａｂ\n好") == 4


def test_parse_time_bad_input_is_none() -> None:
    assert exports.parse_time("not a time") is None
    assert exports.parse_time("2026-03-02T01:00:00Z") == datetime(2026, 3, 2, 1, 0)


def test_xlsx_few_thousand_rows_is_quick(tmp_path: Path) -> None:
    """results.xlsx on 3,000 calls with 3 findings each: written in seconds (measured about
    0.6 s here); rescore can turn it off (--no-xlsx)."""
    rows = []
    for i in range(3000):
        r = dict(ROWS[0])
        r["call_id"] = f"c-{i:05d}"
        rows.append(r)
    t = time.perf_counter()
    exports.write_xlsx(tmp_path / "big.xlsx", exports.result_sheets(rows))
    took = time.perf_counter() - t
    assert took < 10, took


def test_store_findings_rows_are_records() -> None:
    """A row of the store's findings table exports as it is (no evidence text)."""
    row = {
        "run_id": "r", "call_id": "c-9", "seq": 0, "rule_id": "BAN-POLICY",
        "severity": "critical", "message": "-这是公司规定", "utterance_index": 3,
        "start_s": 12.0, "end_s": 14.5, "matched": "这是公司规定",
    }  # fmt: skip
    raw = exports.csv_bytes(exports.FINDING_COLUMNS, [row])
    lines = raw.decode("utf-8-sig").split("\r\n")
    assert lines[1] == "c-9,0,BAN-POLICY,critical,'-这是公司规定,12,14.5,"
