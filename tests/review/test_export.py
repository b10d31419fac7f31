"""Overturned verdicts exported as rule fixtures: personal data as placeholders the fixture
runner reads as masks, and fixtures that fail on a pack that disagrees with the reviewer
and pass on one that agrees."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from typer.testing import CliRunner

from qa_pipeline.cli import app
from qa_pipeline.messages import EntitySpan, Role, Utterance, Verdict
from qa_pipeline.review import Action, Decision, repo
from qa_pipeline.review.export import export_fixtures
from qa_pipeline.rules import RulePack, load_pack
from qa_pipeline.rules.fixtures import load_fixtures, placeholder_text, run_fixtures
from qa_pipeline.store import Store

from .conftest import RULES, call_a, call_clean, store_call, write_pack

# the same pack with the three rules the reviewers corrected changed to agree with them: a
# read-back of an ID number only (the entity rule), 不晓得 only (the text rule), and a
# greeting the clean call lacks
AGREEING = (
    RULES.replace("forbid: {entity: mobile}", "forbid: {entity: id_number}")
    .replace("keyword: [不知道]", "keyword: [不晓得]")
    .replace("require: {keyword: [您好]}", "require: {keyword: [欢迎致电]}")
)


def overturn_three(db: Store, pack: RulePack) -> None:
    store_call(db, call_a("A1"), pack)
    store_call(db, call_clean("B1"), pack)
    repo.review(
        db,
        pack,
        "A1",
        "质检员王",
        [
            Decision("NO-PHONE", Action.OVERTURN, Verdict.PASSED, "客户要求核对号码"),
            Decision("BAN-N", Action.OVERTURN, Verdict.PASSED, "语境中不算"),
            Decision("BAN-POLICY", Action.CONFIRM),  # confirmed: not exported
        ],
    )
    repo.review(
        db, pack, "B1", "质检员王", [Decision("GREET", Action.OVERTURN, Verdict.FAILED, "没报工号")]
    )


def test_export_fails_on_the_pack_that_was_wrong(
    db: Store, pack: RulePack, pack_dir: Path, tmp_path: Path
) -> None:
    overturn_three(db, pack)
    out = tmp_path / "fx"
    files = export_fixtures(db, out)
    assert sorted(f.path.name for f in files) == ["review-A1.yaml", "review-B1.yaml"]
    assert sum(f.fixtures for f in files) == 3
    text = (out / "review-A1.yaml").read_text(encoding="utf-8")
    assert "13812345678" not in text and "5678" not in text
    doc = yaml.safe_load(text)
    by_rule = {next(iter(f["expect"])): f for f in doc["fixtures"]}
    assert {r: f["expect"][r] for r, f in by_rule.items()} == {"NO-PHONE": "ok", "BAN-N": "ok"}
    turns = by_rule["NO-PHONE"]["turns"]
    assert turns[2]["text"] == "好的，您的号码是[手机号]对吗" and turns[2]["role"] == "agent"
    assert by_rule["NO-PHONE"]["call"]["direction"] == "inbound"
    assert "客户要求核对号码" in by_rule["NO-PHONE"]["description"]

    fixtures = load_fixtures(out)
    outcomes = {(o.fixture, o.rule_id): o for o in run_fixtures(pack, fixtures)}
    # the pack still gives the machine's verdicts: every fixture fails on it, the entity
    # rule because the placeholder is read as the mobile number it stands for
    assert {k: (o.expected, o.actual, o.ok) for k, o in outcomes.items()} == {
        ("review-A1-NO-PHONE", "NO-PHONE"): ("ok", "fire", False),
        ("review-A1-BAN-N", "BAN-N"): ("ok", "fire", False),
        ("review-B1-GREET", "GREET"): ("fire", "ok", False),
    }
    fixed = load_pack(write_pack(tmp_path / "fixed", AGREEING))
    assert all(o.ok for o in run_fixtures(fixed, fixtures))

    # the same through the command line
    runner = CliRunner()
    r = runner.invoke(app, ["rules", "test", str(pack_dir), "--fixtures", str(out)])
    assert r.exit_code == 1, r.output
    assert "3 fixtures, 3 expectations, 0 passed, 3 failed" in r.output
    r = runner.invoke(app, ["rules", "test", str(tmp_path / "fixed"), "--fixtures", str(out)])
    assert r.exit_code == 0, r.output
    assert "3 passed, 0 failed" in r.output


def test_overturned_back_and_since(db: Store, pack: RulePack, tmp_path: Path) -> None:
    overturn_three(db, pack)
    t_mid = time.time()
    # the second reviewer puts BAN-N back: it is no longer an overturn
    repo.review(
        db, pack, "A1", "组长李", [Decision("BAN-N", Action.OVERTURN, Verdict.FAILED, "算")]
    )
    got = {(o.call_id, o.rule_id, o.machine, o.reviewed) for o in repo.overturned(db)}
    assert got == {
        ("A1", "NO-PHONE", Verdict.FAILED, Verdict.PASSED),
        ("B1", "GREET", Verdict.PASSED, Verdict.FAILED),
    }
    assert repo.overturned(db, since=t_mid) == []  # BAN-N's last overturn is undone
    assert export_fixtures(db, tmp_path / "none", since=time.time() + 10) == []


def test_placeholders_are_read_as_masks(tmp_path: Path) -> None:
    """A mask as any mode wrote it becomes the bare placeholder, and the fixture runner reads
    a placeholder as an entity of its kind at its place."""
    u = Utterance(
        call_id="c", index=0, channel=0, role=Role.AGENT, start=0, end=1,
        text="号码[手机号#0a1b2c…5678]，证件[身份证号]",
        entities=(EntitySpan("mobile", 2, 19, "0a1b2c", "5678"), EntitySpan("id_number", 22, 28)),
    )  # fmt: skip
    assert u.text[2:19] == "[手机号#0a1b2c…5678]" and u.text[22:28] == "[身份证号]"
    assert placeholder_text(u) == "号码[手机号]，证件[身份证号]"
    # without spans (a document that lost them) the masks in the text are found
    bare = Utterance(**{**{f: getattr(u, f) for f in u.__struct_fields__}, "entities": ()})
    assert placeholder_text(bare) == "号码[手机号]，证件[身份证号]"
    (tmp_path / "f.yaml").write_text(
        "fixtures:\n  - name: p\n    turns: [[agent, 0, 1, '号码[手机号]，证件[身份证号]']]\n"
        "    expect: {X: ok}\n",
        encoding="utf-8",
    )
    [f] = load_fixtures(tmp_path / "f.yaml")
    [got] = f.transcript().utterances
    assert [(s.kind, got.text[s.start : s.end]) for s in got.entities] == [
        ("mobile", "[手机号]"),
        ("id_number", "[身份证号]"),
    ]
