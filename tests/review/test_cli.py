"""``qa-pipeline review ...`` and ``rules fixtures-from-reviews`` on both backends."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from qa_pipeline.cli import app
from qa_pipeline.rules import RulePack
from qa_pipeline.store import open_store

from .conftest import call_a, store_call


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def test_review_commands(store_url: str, pack: RulePack, pack_dir: Path, tmp_path: Path) -> None:
    with open_store(store_url) as db:
        store_call(db, call_a("A1"), pack)
    s, p = ("--store", store_url), ("--pack", str(pack_dir))
    code, out = run("review", "queue", *s, "--scan", "--below", "95", "--json")
    assert code == 0, out
    got = json.loads(out)
    assert got["queued"] == ["A1"]
    assert got["items"][0]["reasons"] == ["uncertain", "low_score"]

    code, out = run("review", "show", "A1", *s, "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["machine"] == {"score": 91.0, "grade": "非常满意", "failed": False}
    assert shown["verdicts"]["BAN-POLICY"] == {
        "machine": "uncertain",
        "now": "uncertain",
        "deduction": 0.0,
    }
    assert shown["transcript"][2]["text"] == "好的，您的号码是[手机号]对吗"
    assert [f["rule_id"] for f in shown["findings"]] == ["NO-PHONE", "BAN-N", "BAN-N"]

    code, out = run(
        "review", "decide", "A1", "--rule", "BAN-POLICY", "--confirm", "--comment", "听过录音",
        "--reviewer", "质检员王", *s, *p, "--json",
    )  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["score"] == 71.0 and json.loads(out)["grade"] == "不满意"
    code, out = run(
        "review", "appeal", "A1", "--rule", "BAN-POLICY", "--reason", "是客户说的公司规定",
        "--agent", "A007", *s, *p,
    )  # fmt: skip
    assert code == 0, out
    code, out = run("review", "queue", *s)
    assert code == 0 and out.startswith("A1\topen\t91\tuncertain,low_score,appeal\tBAN-POLICY")
    code, out = run(
        "review", "decide", "A1", "-r", "BAN-POLICY", "--overturn", "passed", "--comment",
        "申诉成立", "--reviewer", "组长李", *s, *p,
    )  # fmt: skip
    assert code == 0 and "A1 v3: 91 非常满意 (by 组长李)" in out, out
    code, out = run("review", "show", "A1", *s)
    assert code == 0 and "reviewed v3: 91 非常满意 (组长李)" in out, out
    assert "好的，您的号码是[手机号]对吗" in out and "BAN-N: failed" in out
    assert "BAN-POLICY: uncertain -> passed" in out
    code, out = run("review", "history", "A1", *s, "--json")
    hist = json.loads(out)
    assert [(h["version"], h["kind"], h["by"], h["score"]) for h in hist] == [
        (1, "review", "质检员王", 71.0),
        (2, "appeal", "A007", 71.0),
        (3, "review", "组长李", 91.0),
    ]
    assert hist[2]["decisions"] == [
        {"rule_id": "BAN-POLICY", "action": "overturn", "before": "failed", "after": "passed",
         "comment": "申诉成立"}
    ]  # fmt: skip
    code, out = run("review", "history", "A1", *s)
    assert code == 0 and "v2 " in out and "appeal by A007" in out

    code, out = run("rules", "fixtures-from-reviews", *s, "--out", str(tmp_path / "fx"))
    assert code == 0 and "1 fixtures in 1 files" in out, out
    code, out = run("rules", "test", str(pack_dir), "--fixtures", str(tmp_path / "fx"))
    assert code == 1 and "1 failed" in out  # the pack still says uncertain; the reviewer: ok
    later = ("--out", str(tmp_path / "later"), "--since", "2999-01-01")
    code, out = run("rules", "fixtures-from-reviews", *s, *later)
    assert code == 0 and "0 fixtures in 0 files" in out, out
    code, out = run("rules", "fixtures-from-reviews", *s, "--out", "x", "--since", "yesterday")
    assert code == 2 and "--since" in out


def test_bad_input_is_named(store_url: str, pack: RulePack, pack_dir: Path) -> None:
    with open_store(store_url) as db:
        store_call(db, call_a("A1"), pack)
    s, p = ("--store", store_url), ("--pack", str(pack_dir))
    code, out = run(
        "review", "decide", "A1", "-r", "GREET", "--overturn", "maybe", "--reviewer", "w", *s, *p
    )
    assert code == 2 and "--overturn" in out and "maybe" in out
    code, out = run("review", "decide", "A1", "-r", "GREET", "--reviewer", "w", *s, *p)
    assert code == 2 and "give --confirm or --overturn" in out
    code, out = run("review", "decide", "A1", "-r", "NOPE", "--confirm", "--reviewer", "w", *s, *p)
    assert code == 2 and "no verdict of rule NOPE" in out
    code, out = run("review", "show", "ZZ", *s)
    assert code == 2 and "call ZZ: no scored result" in out
    code, out = run("review", "queue", "--state", "later", *s)
    assert code == 2 and "later" in out


def test_a_store_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    code, out = run("review", "queue", "--store", str(tmp_path / "f" / "s.sqlite"))
    assert code == 2 and "--store" in out and "error:" in out
    code, out = run("review", "queue", "--store", "postgresql://nobody@127.0.0.1:1/none")
    assert code == 2 and "cannot connect" in out
