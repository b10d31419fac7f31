"""The default pack: catalogue coverage, fixtures, lint, CLI."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from qa_pipeline.rules import RulePack, default_pack_path
from qa_pipeline.rules.cli import rules_app
from qa_pipeline.rules.fixtures import (
    coverage,
    default_fixtures_dir,
    load_fixtures,
    run_fixtures,
)
from qa_pipeline.rules.lint import lint_pack

CATALOGUE = Path(__file__).resolve().parents[3] / "shared" / "design" / "rule-catalogue.md"
CATALOGUE_IDS = [
    "OPEN-ANSWER",
    "OPEN-GREET",
    "OPEN-TIME",
    "OPEN-HOLIDAY",
    "OPEN-IDENT",
    "OPEN-NAME",
    "OPEN-PURPOSE",
    "OUT-CONFIRM",
    "OUT-HOURS",
    "BAN-WEI",
    "BAN-POLICY",
    "BAN-DISMISS",
    "BAN-NO",
    "BAN-BLAME",
    "COURT-WORDS",
    "COURT-NIN",
    "APOLOGY-FIRST",
    "EMPATHY",
    "CLARIFY",
    "NO-INTERRUPT",
    "RESP-GAP",
    "HOLD-NOTICE",
    "DEAD-AIR",
    "OVER-PROMISE",
    "SOLUTION",
    "CONFIRM-SAT",
    "CLOSE-THANKS",
    "CLOSE-HANGUP",
    "DURATION",
    "PACE",
    "FIVE-VOICES",
    "EOAC",
]


def test_default_pack_covers_the_catalogue(default_pack: RulePack) -> None:
    ids = CATALOGUE_IDS
    if CATALOGUE.exists():
        ids = re.findall(r"^\| ([A-Z][A-Z-]+) \|", CATALOGUE.read_text(encoding="utf-8"), re.M)
        assert len(ids) >= 30
    assert set(ids) <= set(default_pack.rule_ids)
    assert default_pack.rule("BAN-POLICY").severity.value == "critical"


def test_default_pack_location() -> None:
    assert (default_pack_path() / "pack.yaml").exists()


def test_every_fixture_expectation_holds(default_pack: RulePack) -> None:
    fixtures = load_fixtures(default_fixtures_dir())
    failed = [o for o in run_fixtures(default_pack, fixtures) if not o.ok]
    assert not failed, "\n".join(
        f"{o.fixture} {o.rule_id}: {o.expected} != {o.actual} ({o.detail})" for o in failed
    )


def test_every_rule_has_fire_and_ok_fixtures(default_pack: RulePack) -> None:
    cov = coverage(load_fixtures(default_fixtures_dir()))
    for rid in default_pack.rule_ids:
        assert {"fire", "ok"} <= cov.get(rid, set()), rid


def test_lint_default_pack_clean() -> None:
    errors = [i for i in lint_pack() if i.level == "error"]
    assert errors == []


def test_cli_test_and_lint() -> None:
    r = CliRunner().invoke(rules_app, ["test"])
    assert r.exit_code == 0, r.output
    assert "0 failed" in r.output
    r = CliRunner().invoke(rules_app, ["lint"])
    assert r.exit_code == 0, r.output


def _copy_pack(tmp_path: Path) -> Path:
    d = tmp_path / "pack"
    shutil.copytree(default_pack_path(), d)
    return d


def test_cli_test_fails_on_wrong_expectation(tmp_path: Path) -> None:
    d = _copy_pack(tmp_path)
    f = d / "fixtures" / "holidays.yaml"
    f.write_text(
        f.read_text(encoding="utf-8").replace("OPEN-HOLIDAY: fire", "OPEN-HOLIDAY: ok"),
        encoding="utf-8",
    )
    r = CliRunner().invoke(rules_app, ["test", str(d)])
    assert r.exit_code == 1
    assert "FAIL" in r.output and "OPEN-HOLIDAY" in r.output


def test_lint_reports_missing_fixtures_duplicates_and_unreachable(tmp_path: Path) -> None:
    d = _copy_pack(tmp_path)
    (d / "extra.yaml").write_text(
        """\
rules:
  - id: NEW-RULE
    description: 新规则
    severity: minor
    weight: 1
    scope: {role: agent, first_seconds: 99999}
    forbid:
      all:
        - {role: agent, keyword: [甲]}
        - {role: customer}
  - id: NEW-TWO
    description: x
    severity: minor
    weight: 1
    forbid: {direction: inbound, all: [{direction: outbound}], time_of_day: "09:00-10:00"}
""",
        encoding="utf-8",
    )
    msgs = [str(i) for i in lint_pack(d)]
    text = "\n".join(msgs)
    assert "NEW-RULE: no fixture where it must fire" in text
    assert "NEW-RULE: no fixture where it must not fire" in text
    assert "beyond the longest call" in text
    assert "different roles" in text
    assert "both call directions" in text
    assert re.search(r"extra\.yaml:2: error: NEW-RULE", text)
    r = CliRunner().invoke(rules_app, ["lint", str(d)])
    assert r.exit_code == 1
    (d / "dup.yaml").write_text((d / "extra.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    text = "\n".join(str(i) for i in lint_pack(d))
    assert "duplicate rule id NEW-RULE" in text


def test_lint_warns_about_unknown_fixture_rules(tmp_path: Path) -> None:
    d = _copy_pack(tmp_path)
    f = d / "fixtures" / "holidays.yaml"
    f.write_text(
        f.read_text(encoding="utf-8").replace(
            "OPEN-TIME: not_applicable\n      OPEN-GREET", "NOPE-RULE: ok\n      OPEN-GREET", 1
        ),
        encoding="utf-8",
    )
    assert any("unknown rule id NOPE-RULE" in str(i) for i in lint_pack(d))


def test_fixture_schema_errors_have_lines(tmp_path: Path) -> None:
    d = tmp_path / "fx"
    d.mkdir()
    (d / "bad.yaml").write_text(
        "fixtures:\n  - name: x\n    turns: [[agent, 0, 1, hi]]\n    expect: {OPEN-GREET: maybe}\n",
        encoding="utf-8",
    )
    r = CliRunner().invoke(rules_app, ["test", "--fixtures", str(d)])
    assert r.exit_code == 2  # fixtures that cannot be loaded: a config error, not a failure
    assert "bad.yaml:4" in r.output.replace("\n", "")
