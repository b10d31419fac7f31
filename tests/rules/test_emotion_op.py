"""The ``emotion`` operator: declared in its own module, run through the rule engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from qa_pipeline.messages import Role, Verdict, replace
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.rules.fixtures import load_fixtures, run_fixtures
from qa_pipeline.rules.ops.registry import REGISTRY, Trigger
from qa_pipeline.rules.pack import RulePack
from qa_pipeline.testing import transcript
from qa_pipeline.transcript import Transcript

PACKS = Path(__file__).parent / "packs"
ROOT = Path(__file__).resolve().parents[2]


def write_pack(tmp_path: Path, cond: str) -> Path:
    (tmp_path / "pack.yaml").write_text(
        'name: t\nversion: "1"\nsettings: {company_name: 华冠}\n', encoding="utf-8"
    )
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - id: ANGER\n    description: 客户情绪\n    severity: minor\n"
        f"    weight: 0\n    scope: {{role: customer}}\n    forbid: {cond}\n",
        encoding="utf-8",
    )
    return tmp_path


def test_declared_in_its_own_module_and_kept_out_of_the_default_pack() -> None:
    op = REGISTRY["emotion"]
    assert op.family == "emotion" and op.trigger is Trigger.EVERY_UTTERANCE
    for p in (ROOT / "configs" / "rules").glob("*.yaml"):
        assert "emotion" not in p.read_text(encoding="utf-8"), p


def test_example_pack_fixtures() -> None:
    pack = load_pack(PACKS / "emotion")
    outcomes = run_fixtures(pack, load_fixtures(PACKS / "emotion" / "fixtures"))
    assert len(outcomes) == 6
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]


def _call(level_jump: float, last: str = "我的订单到底什么时候到") -> Transcript:
    # four calm customer turns, then a fifth with one weak cue (到底, strength 0.3)
    turns = [("c", 2.0 * i, 2.0 * i + 1.5, "我想问一下我的订单什么时候到") for i in range(4)]
    turns.append(("c", 9.0, 10.5, last))
    t = transcript(turns)
    utts = tuple(
        replace(u, level_dbfs=-30.0 + (level_jump if i == 4 else 0.0))
        for i, u in enumerate(t.utterances)
    )
    return dataclasses.replace(t, utterances=utts)


def test_prosody_raises_a_cue_but_never_fires_alone(tmp_path: Path) -> None:
    with_prosody = load_pack(write_pack(tmp_path, "{emotion: {kind: anger, min_strength: 0.6}}"))

    def verdict(pack: RulePack, call: Transcript) -> Verdict:
        card = score_transcript(pack, call)
        return next(v.verdict for v in card.verdicts if v.rule_id == "ANGER")

    assert verdict(with_prosody, _call(0.0)) is Verdict.PASSED  # the words alone: 0.3
    assert verdict(with_prosody, _call(12.0)) is Verdict.FAILED  # + a 12 dB jump
    # the same loud turn without the cue fires nothing
    assert verdict(with_prosody, _call(12.0, last="我的订单什么时候到")) is Verdict.PASSED
    off = tmp_path / "off"
    off.mkdir()
    no_prosody = load_pack(
        write_pack(off, "{emotion: {kind: anger, min_strength: 0.6, prosody: false}}")
    )
    assert verdict(no_prosody, _call(12.0)) is Verdict.PASSED
    # scoring the same call again starts the speakers' medians afresh
    assert verdict(with_prosody, _call(12.0)) is Verdict.FAILED
    assert verdict(with_prosody, _call(0.0)) is Verdict.PASSED


def test_evidence_is_the_cue(tmp_path: Path) -> None:
    pack = load_pack(write_pack(tmp_path, "{emotion: anger}"))
    card = score_transcript(pack, transcript([("c", 0.0, 2.0, "你们到底有完没完，气死我了")]))
    (f,) = card.findings
    assert f.evidence[0].role is Role.CUSTOMER and f.evidence[0].matched in ("到底", "有完没完")
