"""The operator registry: every operator declares its trigger, its example runs, and an
operator defined only here (one module) is picked up by the schema, the compiler, lint,
the labels and the rules README's operator table."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from qa_pipeline.errors import ConfigError
from qa_pipeline.rules import RulePack, default_pack_path, score_transcript
from qa_pipeline.rules.lang.labels import label
from qa_pipeline.rules.lang.schema import Cond, Settings, Strict
from qa_pipeline.rules.lint import lint_pack
from qa_pipeline.rules.ops import FAMILIES
from qa_pipeline.rules.ops.compiler import CompileError, Compiler
from qa_pipeline.rules.ops.registry import (
    REGISTRY,
    CPath,
    Example,
    Issue,
    Level,
    LintCtx,
    Operator,
    Trigger,
    readme_table,
    registered,
    with_readme_table,
)
from qa_pipeline.rules.runtime import nodes as N
from qa_pipeline.rules.runtime.textindex import TextIndex

from .conftest import transcript, verdict

MakePack = Callable[..., RulePack]
ROOT = Path(__file__).resolve().parents[2]
PACKS = Path(__file__).parent / "packs"


def _rule(cond: dict[str, Any], mode: str = "require") -> str:
    return f"""\
rules:
  - id: R-T
    description: test rule
    severity: major
    weight: 10
    {mode}: {json.dumps(cond, ensure_ascii=False)}
"""


def _compile(cond: dict[str, Any]) -> N.CNode:
    return Compiler(TextIndex(), Settings.model_validate({})).call(Cond.model_validate(cond))


def test_every_operator_declares_its_trigger() -> None:
    assert len(REGISTRY) >= 34
    for name, op in REGISTRY.items():
        assert op.name == name
        assert isinstance(op.trigger, Trigger) or (callable(op.trigger) and op.trigger_doc), name
        assert op.summary, name
        assert (ROOT / "qa_pipeline" / "rules" / "ops" / f"{op.family}.py").is_file(), name


def test_an_operator_cannot_be_declared_without_a_trigger() -> None:
    with pytest.raises(TypeError, match="trigger"):
        Operator(  # type: ignore[call-arg]
            name="no_trigger",
            level=Level.CALL,
            spec=bool,
            summary="x",
            example=Example({"no_trigger": True}),
            call=lambda cx, v, p: N.CResponseGap(1.0),
        )


@pytest.mark.parametrize("name", list(REGISTRY))
def test_example_compiles_and_keeps_its_trigger(name: str) -> None:
    """The compiler checks each node against its operator's declared trigger."""
    op = REGISTRY[name]
    assert name in json.dumps(op.example.cond), "the example uses its operator"
    _compile(op.example.cond)  # raises CompileError on a node that contradicts it


@pytest.mark.parametrize(
    "name", [n for n, op in REGISTRY.items() if op.example.found or op.example.missing]
)
def test_example_runs(name: str, make_pack: MakePack) -> None:
    ex = REGISTRY[name].example
    pack = make_pack(_rule(ex.cond))
    if ex.found:
        assert verdict(score_transcript(pack, transcript(ex.found)), "R-T") == "passed"
    if ex.missing:
        assert verdict(score_transcript(pack, transcript(ex.missing)), "R-T") == "failed"


def test_a_new_operator_is_one_module() -> None:
    """``occurrences`` is declared in its own module, listed nowhere else in the code."""
    assert REGISTRY["occurrences"].family == "occurrences"
    assert "occurrences" not in FAMILIES
    for p in (ROOT / "qa_pipeline" / "rules").rglob("*.py"):
        if p.name != "occurrences.py":
            text = p.read_text(encoding="utf-8")
            assert '"occurrences"' not in text and "OccurrencesSpec" not in text, p


def test_most_examples_run() -> None:
    runs = [n for n, op in REGISTRY.items() if op.example.found and op.example.missing]
    assert len(runs) >= 20, runs


# --------------------------------------------------------------------------- a new operator


class EndsWithSpec(Strict):
    phrases: list[str]


def _ends_with(cx: Compiler, v: EndsWithSpec, p: CPath) -> N.UNode:
    return N.UKeywordAny(cx.atoms(v.phrases, (*p, "phrases")), "end")


def _ends_with_lint(cx: LintCtx, v: EndsWithSpec) -> list[Issue]:
    return [
        ("warning", f"{cx.where}.ends_with: {ph!r} ends in a particle")
        for ph in v.phrases
        if ph[-1] in "吗呢吧"
    ]


ENDS_WITH = Operator(
    name="ends_with",
    level=Level.UTTERANCE,
    spec=EndsWithSpec,
    shorthand=lambda v: {"phrases": v} if isinstance(v, list) else v,
    trigger=Trigger.PHRASES,
    summary="the utterance ends with one of the phrases (test operator)",
    example=Example({"ends_with": ["再见"]}, found=[("a", 0, 1, "好的再见")]),
    utt=_ends_with,
    label=lambda v, label: "结尾：" + v.phrases[0],
    lint=_ends_with_lint,
)


def test_an_operator_from_one_module_is_picked_up_everywhere(
    make_pack: MakePack, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError):
        Cond.model_validate({"ends_with": ["再见"]})
    assert "`ends_with`" not in readme_table()
    with registered(ENDS_WITH):
        # the schema (with its shorthand), nested inside built-in operators too
        c = Cond.model_validate({"not": {"ends_with": ["再见"]}})
        assert c.operators()[0][1].operators()[0][1] == EndsWithSpec(phrases=["再见"])
        # the labels
        assert label(Cond.model_validate({"ends_with": ["再见"]})) == "结尾：再见"
        # the compiler and the runtime
        pack = make_pack(_rule({"exists": {"role": "agent", "ends_with": ["再见"]}}))
        assert (
            verdict(score_transcript(pack, transcript([("a", 0, 1, "好的再见")])), "R-T")
            == "passed"
        )
        assert (
            verdict(score_transcript(pack, transcript([("a", 0, 1, "再见了您")])), "R-T")
            == "failed"
        )
        # lint's walk reaches it inside a call operator, with its own check
        d = tmp_path / "lintpack"
        d.mkdir()
        (d / "pack.yaml").write_text('name: t\nversion: "1"\n', encoding="utf-8")
        (d / "rules.yaml").write_text(
            _rule({"count": {"of": {"ends_with": ["好吗"]}, "at_least": 2}}), encoding="utf-8"
        )
        issues = [str(i) for i in lint_pack(d)]
        assert any("body.count.of.ends_with: '好吗' ends in a particle" in i for i in issues), (
            issues
        )
        # the README's table
        assert "| `ends_with` | utterance |" in readme_table()
        assert "`ends_with`" in with_readme_table(
            (default_pack_path() / "README.md").read_text(encoding="utf-8")
        )
    with pytest.raises(ValidationError):
        Cond.model_validate({"ends_with": ["再见"]})
    assert "ends_with" not in REGISTRY


def test_a_node_that_contradicts_its_declared_trigger_is_refused() -> None:
    """The silent default the registry replaces: a call node that never looks at
    utterances, declared as triggered by phrases, would make forbid pass / require fail."""
    wrong = Operator(
        name="wrong_trigger",
        level=Level.CALL,
        spec=bool,
        trigger=Trigger.PHRASES,
        summary="x",
        example=Example({"wrong_trigger": True}),
        call=lambda cx, v, p: N.CResponseGap(1.0),
    )
    with registered(wrong), pytest.raises(CompileError, match="trigger"):
        _compile({"wrong_trigger": True})


def test_readme_operator_table_matches_the_registry() -> None:
    readme = (ROOT / "configs" / "rules" / "README.md").read_text(encoding="utf-8")
    assert with_readme_table(readme) == readme, (
        "configs/rules/README.md is stale: run python -m qa_pipeline.rules.ops"
    )
    for name in REGISTRY:
        assert f"| `{name}` |" in readme


# --------------------------------------------------------------------------- occurrences


def test_occurrences_counts_every_occurrence(make_pack: MakePack) -> None:
    p = make_pack(_rule({"occurrences": {"phrases": ["对不起"], "at_least": 3}}, "forbid"))
    assert (
        verdict(
            score_transcript(p, transcript([("a", 0, 1, "对不起对不起"), ("a", 2, 3, "对不起")])),
            "R-T",
        )
        == "failed"
    )
    assert (
        verdict(
            score_transcript(p, transcript([("a", 0, 1, "对不起"), ("a", 2, 3, "对不起")])), "R-T"
        )
        == "passed"
    )
    p = make_pack(_rule({"occurrences": {"phrases": ["您好"], "at_most": 1}}))
    assert verdict(score_transcript(p, transcript([("a", 0, 1, "您好")])), "R-T") == "passed"
    assert verdict(score_transcript(p, transcript([("a", 0, 1, "嗯")])), "R-T") == "passed"
    assert (
        verdict(score_transcript(p, transcript([("a", 0, 1, "您好"), ("c", 1, 2, "您好")])), "R-T")
        == "failed"
    )


def test_occurrences_needs_one_limit(make_pack: MakePack) -> None:
    with pytest.raises(ConfigError, match="exactly one of at_least / at_most"):
        make_pack(_rule({"occurrences": {"phrases": ["对不起"]}}))
    with pytest.raises(ConfigError, match="exactly one of at_least / at_most"):
        make_pack(_rule({"occurrences": {"phrases": ["对不起"], "at_least": 1, "at_most": 2}}))


def test_occurrences_fixtures() -> None:
    from qa_pipeline.rules import load_pack
    from qa_pipeline.rules.fixtures import load_fixtures, run_fixtures

    pack = load_pack(PACKS / "occurrences")
    outcomes = run_fixtures(pack, load_fixtures(PACKS / "occurrences" / "fixtures"))
    assert len(outcomes) == 6
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]
