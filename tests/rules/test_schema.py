"""Loading: schema errors, line numbers, duplicate keys/ids, settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa_pipeline.errors import ConfigError
from qa_pipeline.rules import load_pack
from qa_pipeline.yamlsrc import load_yaml_text

from .conftest import PACK_HEADER

GOOD_RULE = """\
rules:
  - id: R-ONE
    description: d
    severity: major
    weight: 5
    forbid: {keyword: [坏话]}
"""


def write(d: Path, rules: str, header: str = PACK_HEADER) -> Path:
    d.mkdir(exist_ok=True)
    (d / "pack.yaml").write_text(header, encoding="utf-8")
    (d / "rules.yaml").write_text(rules, encoding="utf-8")
    return d


def problems(d: Path) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load_pack(d)
    return [f"{loc.line}:{msg}" for loc, msg in ei.value.problems]


def test_good_pack_loads(tmp_path: Path) -> None:
    pack = load_pack(write(tmp_path / "p", GOOD_RULE))
    assert pack.name == "test"
    assert pack.version.startswith("0.1+") and len(pack.version) == len("0.1+") + 12
    assert pack.rule_ids == ["R-ONE"]


def test_version_is_a_content_hash(tmp_path: Path) -> None:
    a = load_pack(write(tmp_path / "a", GOOD_RULE))
    b = load_pack(write(tmp_path / "b", GOOD_RULE))
    c = load_pack(write(tmp_path / "c", GOOD_RULE.replace("weight: 5", "weight: 6")))
    assert a.version == b.version != c.version


def test_all_errors_reported_at_once_with_lines(tmp_path: Path) -> None:
    rules = """\
rules:
  - id: R-ONE
    description: d
    severity: fatal
    weight: 5
    forbid: {keyword: [x]}
  - id: R-TWO
    description: d
    severity: minor
    weight: 1
    colour: red
    require: {keyword: [y], fuzy: [z]}
"""
    p = problems(write(tmp_path / "p", rules))
    assert len(p) == 3, p
    assert any(s.startswith("4:") and "severity" in s for s in p)
    assert any(s.startswith("11:") and "colour" in s and "unknown key" in s for s in p)
    assert any(s.startswith("12:") and "fuzy" in s for s in p)


def test_error_names_the_file(tmp_path: Path) -> None:
    d = write(tmp_path / "p", GOOD_RULE.replace("major", "huge"))
    with pytest.raises(ConfigError) as ei:
        load_pack(d)
    assert "rules.yaml:4" in str(ei.value)


def test_duplicate_yaml_keys_rejected() -> None:
    with pytest.raises(ConfigError) as ei:
        load_yaml_text("a: 1\nb: 2\na: 3\n", "x.yaml")
    ((loc, msg),) = ei.value.problems
    assert loc.line == 3 and "duplicate key 'a'" in msg and "line 1" in msg


def test_duplicate_rule_ids_across_files(tmp_path: Path) -> None:
    d = write(tmp_path / "p", GOOD_RULE)
    (d / "more.yaml").write_text(GOOD_RULE, encoding="utf-8")
    p = problems(d)
    assert any("duplicate rule id R-ONE" in s for s in p)


def test_yaml_times_stay_strings() -> None:
    assert load_yaml_text("t: 07:30\nn: 12\nf: 1.5\n", "x") == {"t": "07:30", "n": 12, "f": 1.5}


def test_bad_values(tmp_path: Path) -> None:
    rules = """\
rules:
  - id: bad id
    description: d
    severity: major
    weight: 500
    forbid: {keyword: []}
  - id: R-X
    description: d
    severity: major
    weight: 1
    require: {regex: '(unclosed'}
  - id: R-Y
    description: d
    severity: major
    weight: 1
    require: {keyword: [b]}
    forbid: {keyword: [a]}
"""
    p = problems(write(tmp_path / "p", rules))
    text = "\n".join(p)
    assert "rule id" in text and "weight" in text and "empty phrase list" in text
    assert "bad regular expression" in text and "exactly one of 'require' or 'forbid'" in text


def test_settings_references(tmp_path: Path) -> None:
    rules = """\
rules:
  - id: R-ONE
    description: d
    severity: major
    weight: 5
    forbid: {response_gap: {over: "${thresholds.gap}"}}
  - id: R-TWO
    description: d
    severity: major
    weight: 5
    forbid: {fuzzy: ["${phrases.hold}", 等一下, "${company_name}客服"]}
"""
    pack = load_pack(write(tmp_path / "p", rules))
    assert pack.rule("R-TWO").spec.forbid.fuzzy.phrases == [
        "请稍候",
        "请您稍等",
        "等一下",
        "华冠客服",
    ]  # type: ignore[union-attr]
    assert pack.rule("R-ONE").spec.forbid.response_gap.over == 5  # type: ignore[union-attr]
    bad = rules.replace("thresholds.gap", "thresholds.nope")
    p = problems(write(tmp_path / "q", bad))
    assert any(s.startswith("6:") and "unknown setting ${thresholds.nope}" in s for s in p)


def test_settings_override(tmp_path: Path) -> None:
    d = write(tmp_path / "p", GOOD_RULE)
    pack = load_pack(d, settings={"company_name": "远航", "thresholds": {"gap": 9}})
    assert pack.settings.company_name == "远航"
    assert pack.settings.thresholds["gap"] == 9
    assert pack.version != load_pack(d).version
    with pytest.raises(ConfigError, match="unknown setting thresholds.nope"):
        load_pack(d, settings={"thresholds": {"nope": 1}})
    with pytest.raises(ConfigError, match="comapny_name"):
        load_pack(d, settings={"comapny_name": "x"})


def test_grades_validated(tmp_path: Path) -> None:
    header = PACK_HEADER + "  grades: [{name: a, label: a, min_score: 50}]\n"
    p = problems(write(tmp_path / "p", GOOD_RULE, header))
    assert any("exactly four grades" in s for s in p)


def test_verdict_refs_checked(tmp_path: Path) -> None:
    rules = (
        GOOD_RULE
        + """\
  - id: R-COMP
    description: d
    severity: minor
    weight: 1
    require: {verdicts: [R-ONE, R-NOPE]}
"""
    )
    assert any("unknown rule R-NOPE" in s for s in problems(write(tmp_path / "p", rules)))
    cyc = """\
rules:
  - {id: A-A, description: d, severity: minor, weight: 1, require: {verdicts: [B-B]}}
  - {id: B-B, description: d, severity: minor, weight: 1, require: {verdicts: [A-A]}}
"""
    assert any("cycle" in s for s in problems(write(tmp_path / "q", cyc)))


def test_single_file_pack(tmp_path: Path) -> None:
    f = tmp_path / "one.yaml"
    f.write_text(PACK_HEADER + GOOD_RULE, encoding="utf-8")
    assert load_pack(f).rule_ids == ["R-ONE"]


def test_missing_pack(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_pack(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="missing pack.yaml"):
        load_pack(tmp_path / "empty")
