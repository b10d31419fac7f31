"""``qa-pipeline redact``: stdin lines -> redacted lines, or JSON with spans."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qa_pipeline.cli import app

LINES = (
    "我的手机号是幺三八，一二三四，五六七八，谢谢\n工号10086为您服务\n身份证11010519900307123X\n"
)


def test_one_redacted_line_per_line() -> None:
    r = CliRunner().invoke(app, ["redact"], input=LINES)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        "我的手机号是[手机号]，谢谢",
        "工号10086为您服务",
        "身份证[身份证号]",
    ]


def test_json_spans_never_carry_the_raw_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_PIPELINE_PRIVACY_KEY", "test-key")
    r = CliRunner().invoke(
        app, ["redact", "--json", "--mode", "hash", "--keep-last", "4"], input="电话13812345678\n"
    )
    assert r.exit_code == 0, r.output
    (doc,) = [json.loads(x) for x in r.stdout.splitlines()]
    (span,) = doc["spans"]
    assert span["kind"] == "mobile" and span["tail"] == "5678" and len(span["digest"]) == 12
    assert doc["text"][span["start"] : span["end"]] == f"[手机号#{span['digest']}…5678]"
    assert "1381234" not in r.stdout


def test_mask_mode_and_bad_options(monkeypatch: pytest.MonkeyPatch) -> None:
    r = CliRunner().invoke(
        app, ["redact", "--mode", "mask", "--keep-last", "2"], input="13812345678\n"
    )
    assert r.stdout == "*********78\n"
    assert CliRunner().invoke(app, ["redact", "--mode", "nope"], input="x\n").exit_code == 2
    monkeypatch.delenv("QA_PIPELINE_PRIVACY_KEY", raising=False)
    r = CliRunner().invoke(app, ["redact", "--mode", "hash"], input="x\n")
    assert r.exit_code != 0 and "QA_PIPELINE_PRIVACY_KEY" in r.output
