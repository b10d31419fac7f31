"""Targeted verification decode (qa_pipeline/verify.py): a required phrase Whisper misheard is
accepted as heard only when a decode hinted with the rule's phrases holds it and the audio
scores that reading about as well as the heard one; the transcript text is never changed,
and only ``require`` rules read what was verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from verify_calls import TOOLS_MISSING, agent_says, closing_pack

from qa_pipeline.messages import CallEnded, CallInfo, Role, Utterance, Verdict, replace
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.rules.runtime.engine import score_unmet
from qa_pipeline.text import utterance
from qa_pipeline.transcript import Transcript, transcript_from_dict, transcript_to_dict
from qa_pipeline.verify import new_phrases, rule_hint, verify_version


def _call(texts: list[tuple[Role, str]]) -> Transcript:
    utts = tuple(
        Utterance("v", i, 0 if r is Role.AGENT else 1, r, 1.0 + 3 * i, 3.5 + 3 * i, t, t, 0.8)
        for i, (r, t) in enumerate(texts)
    )
    return Transcript(CallInfo("v"), utts, CallEnded("v", 40.0, (40.0, 39.0)))


def test_rule_hints_are_the_required_phrases_only() -> None:
    pack = load_pack()
    thanks = rule_hint(pack, "CLOSE-THANKS")
    assert thanks is not None and thanks.hint.startswith("感谢您的来电，谢谢您的来电")
    ident = rule_hint(pack, "OPEN-IDENT")
    assert ident is not None and "华夏" in ident.hint and "工号" in ident.hint
    assert rule_hint(pack, "BAN-POLICY") is None  # forbid rules are never hinted
    assert rule_hint(pack, "RESP-GAP") is None  # nor rules without phrases
    # versioned: another phrase list or margin is another version
    assert verify_version(pack, 2.0) == verify_version(load_pack(), 2.0)
    assert verify_version(pack, 2.0) != verify_version(pack, 3.0)
    assert verify_version(pack, 2.0) != verify_version(
        load_pack(settings={"company_name": "恒通"}), 2.0
    )


def test_new_phrases_by_the_packs_matcher() -> None:
    pack = load_pack()
    thanks = rule_hint(pack, "CLOSE-THANKS")
    assert thanks is not None
    # the hinted decode adds the farewell the heard text misses
    assert new_phrases(pack, thanks, "好的，开天", "好的，再见") == ["再见"]
    # nothing new when the heard text already had it, or the hinted text lacks it
    assert new_phrases(pack, thanks, "好的，再见", "好的，再见") == []
    assert new_phrases(pack, thanks, "好的，开天", "好的，开天") == []
    ident = rule_hint(pack, "OPEN-IDENT")
    assert ident is not None  # a regex records the text it matched
    assert new_phrases(pack, ident, "华夏克夫，我四一零二三号", "华夏客服，我是工号10023") == [
        "我是"
    ]


def test_unmet_required_rules_name_their_scope() -> None:
    pack = load_pack()
    t = _call(
        [
            (Role.AGENT, "您好，华夏客服，我是工号1023，请问有什么可以帮您"),
            (Role.CUSTOMER, "我想查一下话费"),
            (Role.AGENT, "好的，您本月话费是五十八元"),
            (Role.CUSTOMER, "好的"),
            (Role.AGENT, "好的，开天"),
        ]
    )
    card, unmet = score_unmet(pack, t)
    scope = dict(unmet)
    assert scope["CLOSE-THANKS"] == (0, 2, 4)  # the agent's last three turns
    assert "BAN-POLICY" not in scope and "OPEN-GREET" not in scope
    verdict = {v.rule_id: v.verdict for v in card.verdicts}
    assert verdict["CLOSE-THANKS"] is Verdict.FAILED
    # the farewell verified in the last turn: passed, the text unchanged
    u = replace(t.utterances[4], verified=("再见",))
    fixed = Transcript(t.call, (*t.utterances[:4], u), t.ended)
    verdict = {v.rule_id: v.verdict for v in score_transcript(pack, fixed).verdicts}
    assert verdict["CLOSE-THANKS"] is Verdict.PASSED
    assert fixed.utterances[4].text == "好的，开天"
    # stored and read back (rules-only re-scoring keeps it); documents without it unchanged
    doc = transcript_to_dict(fixed)
    assert doc["utterances"][4]["verified"] == ["再见"] and "verified" not in doc["utterances"][0]
    assert transcript_from_dict(doc).utterances[4].verified == ("再见",)
    # a banned phrase among the verified ones fails nothing (forbid rules read the text)
    bad = replace(t.utterances[2], verified=("这是公司规定",))
    t2 = Transcript(t.call, (*t.utterances[:2], bad, *t.utterances[3:]), t.ended)
    verdict = {v.rule_id: v.verdict for v in score_transcript(pack, t2).verdicts}
    assert verdict["BAN-POLICY"] is Verdict.PASSED


@pytest.mark.slow
@pytest.mark.skipif(bool(TOOLS_MISSING), reason=f"{TOOLS_MISSING} not installed (espeak-ng, sox)")
@pytest.mark.parametrize(
    ("said", "variant", "accepted"),
    [
        # said, misheard as 福克希，埃建 -> accepted
        ("不客气，再见", "m4", True),
        # no farewell said -> whatever the hinted decode writes, nothing is accepted
        ("好的，您本月话费是五十八元", "m4", False),
    ],
)
def test_a_misheard_farewell_is_verified_and_an_unsaid_one_is_not(
    engine: Any, tmp_path: Path, said: str, variant: str, accepted: bool
) -> None:
    from qa_pipeline.audio import resample
    from qa_pipeline.config import load_config
    from qa_pipeline.messages import SpeechSegment
    from qa_pipeline.verify import Check, verify_transcript

    pack = closing_pack(tmp_path)
    a = resample(agent_says(said, variant), 8000)
    seg = SpeechSegment("v", 0, Role.AGENT, 1.0, 1.0 + len(a) / 16000, a)
    heard = utterance(engine.transcribe_segment(seg), 0)
    print(f"the decode heard {heard.text}")
    if accepted:
        # the premise, set rather than hoped for: the first reading missed the farewell.
        # Whisper base read this audio 福克希，埃建 with a 15 s window on an AVX2 CPU and
        # reads it right with the 30 s window on an AMX one (2026-12-07); the verification
        # decode of the real audio is on trial here, not the first reading
        heard = replace(heard, text="福克希，埃建", raw_text="福克希，埃建")
    t = Transcript(CallInfo("v"), (heard,), CallEnded("v", seg.end + 1, (seg.end + 1, 0.0)))
    if accepted:
        assert {v.rule_id: v.verdict for v in score_transcript(pack, t).verdicts}[
            "CLOSE-THANKS"
        ] is Verdict.FAILED, heard.text
    checks: list[Check] = []
    out = verify_transcript(engine, pack, t, {0: seg}, load_config().asr.verify_margin, checks)
    assert [c.rule_id for c in checks] == ["CLOSE-THANKS"]  # only the failing require rule
    verdicts = {v.rule_id: v.verdict for v in score_transcript(pack, out).verdicts}
    u = out.utterances[0]
    assert u.text == heard.text and u.raw_text == heard.raw_text  # the transcript unchanged
    assert verdicts["BAN-POLICY"] is Verdict.PASSED
    if accepted:
        assert "再见" in u.verified, checks
        assert verdicts["CLOSE-THANKS"] is Verdict.PASSED
    else:
        assert u.verified == (), checks
        assert verdicts["CLOSE-THANKS"] is Verdict.FAILED


@pytest.mark.slow
@pytest.mark.skipif(bool(TOOLS_MISSING), reason=f"{TOOLS_MISSING} not installed (espeak-ng, sox)")
def test_readings_the_guard_empties_are_weighed_not_a_crash(engine: Any, tmp_path: Path) -> None:
    """A hinted or reference reading the guard empties (a copied prompt) is the empty text:
    it covers nothing, so nothing is accepted (it raised ValueError on an empty max)."""
    from qa_pipeline.asr.guard import PROMPT_ECHO, GuardResult
    from qa_pipeline.audio import resample
    from qa_pipeline.config import load_config
    from qa_pipeline.messages import SpeechSegment
    from qa_pipeline.verify import Check, verify_transcript

    class EmptiesAll:
        def check(self, text: str, **_: Any) -> GuardResult:
            return GuardResult("", PROMPT_ECHO)

    pack = closing_pack(tmp_path)
    a = resample(agent_says("不客气，再见", "m4"), 8000)
    seg = SpeechSegment("v", 0, Role.AGENT, 1.0, 1.0 + len(a) / 16000, a)
    heard = replace(utterance(engine.transcribe_segment(seg), 0), text="福克希", raw_text="福克希")
    t = Transcript(CallInfo("v"), (heard,), CallEnded("v", seg.end + 1, (seg.end + 1, 0.0)))
    emptying = engine.with_bias(())
    emptying.guard = EmptiesAll()
    checks: list[Check] = []
    out = verify_transcript(emptying, pack, t, {0: seg}, load_config().asr.verify_margin, checks)
    assert [(c.rule_id, c.hinted, c.accepted) for c in checks] == [("CLOSE-THANKS", "", False)]
    assert out.utterances[0].verified == ()
