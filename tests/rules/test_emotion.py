"""The emotion scorer (rules/emotion.py): negation, degree, quotes, whose feeling, prosody,
and the precision measured on the labelled turns (benchmarks/data/emotion_utterances.jsonl)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from qa_pipeline.rules.emotion import Cue, EmotionLexicon, SpeakerBaseline, prosody_boost

DATA = Path(__file__).parents[2] / "benchmarks" / "data" / "emotion_utterances.jsonl"


def _precision_recall(
    lex: EmotionLexicon, rows: list[dict], split: str
) -> tuple[float, float, int]:
    """Any-label precision and recall of one split at min_strength 0.5, and the flag count."""
    tp = fp = fn = 0
    for r in rows:
        if r["split"] != split:
            continue
        s = lex.score(r["text"], role=r["role"])
        got = s.label if s.strength >= 0.5 else None
        tp += got is not None and got == r["label"]
        fp += got is not None and got != r["label"]
        fn += r["label"] is not None and got != r["label"]
    return tp / (tp + fp), tp / (tp + fn), tp + fp


@pytest.fixture(scope="module")
def lex() -> EmotionLexicon:
    return EmotionLexicon.load()


@pytest.mark.parametrize(
    ("text", "role", "label"),
    [
        ("我非常生气，你们到底怎么回事？", "customer", "anger"),
        ("我很生气！", "customer", "anger"),
        ("你们让我很生气", "customer", "anger"),
        ("我都快被你们逼疯了", "customer", "anger"),
        ("你们这不是坑人吗？", "customer", "anger"),  # rhetorical 不是…吗 is no negation
        ("我已经很不耐烦了", "customer", "anger"),
        ("你有完没完？", "agent", "impatience"),
        ("我都说了好几遍了", "agent", "impatience"),
    ],
)
def test_fires(lex: EmotionLexicon, text: str, role: str, label: str) -> None:
    s = lex.score(text, role=role)
    assert s.label == label
    assert s.strength >= 0.5
    assert s.cues


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("我不生气，就是问问", "customer"),
        ("我没有生气", "customer"),
        ("我一点都不生气", "customer"),
        ("我不是在发火", "customer"),
        ("我并没有不满意", "customer"),
        ("请您不要生气", "agent"),
        ("请您不要生气", "customer"),
        ("我没有不耐烦，我再解释一遍", "agent"),
        ("我不是不耐烦", "agent"),
        ("我理解您很生气", "customer"),  # someone else's feeling
        ("您是不是不满意？", "customer"),
        ("他说“太烦了”", "customer"),  # quoted
        ("我朋友说“这什么破服务”", "customer"),
        ("客户经常抱怨烦死了", "agent"),  # reported without quotes
        ("麻烦您帮我查一下", "customer"),  # 麻烦 hides 烦
        ("着急的话可以先付运费", "customer"),
        ("你们这个活动太划算了", "customer"),
    ],
)
def test_does_not_fire(lex: EmotionLexicon, text: str, role: str) -> None:
    assert lex.score(text, role=role).label is None


def test_normalised_text_scores_the_same(lex: EmotionLexicon) -> None:
    from qa_pipeline.text import normalise

    for raw in ("我非常生氣！", "他說“太煩了”", "你們這不是坑人嗎？", "我不生氣", "有完沒完"):
        for role in ("customer", "agent"):
            assert lex.score(normalise(raw), role=role, simplified=True) == lex.score(
                raw, role=role
            )


def test_role_picks_the_category(lex: EmotionLexicon) -> None:
    assert lex.score("有完没完", role="agent").label == "impatience"
    assert lex.score("有完没完", role="customer").label is None
    assert lex.score("什么破服务", role="agent").label is None
    unknown = lex.score("什么破服务", role="unknown")
    assert unknown.label == "anger"


def test_degree_words(lex: EmotionLexicon) -> None:
    plain = lex.score("我失望", role="customer").strength
    assert lex.score("我非常失望", role="customer").strength > plain
    assert lex.score("我有点失望", role="customer").strength < plain
    assert lex.score("烦死了", role="customer").strength > lex.score("烦", role="customer").strength
    assert (
        lex.score("气死了！", role="customer").strength
        > lex.score("气死了", role="customer").strength
    )
    # more cues, more strength; never above 1
    two = lex.score("骗子！我要投诉你们，太过分了", role="customer")
    assert two.strength > lex.score("骗子", role="customer").strength
    assert two.strength <= 1.0


def test_prosody_alone_never_fires(lex: EmotionLexicon) -> None:
    s = lex.score("请问退款几天到账", role="customer", level_jump_db=20.0, pace_jump=2.5)
    assert s.label is None
    assert s.strength == 0.0


def test_prosody_raises_a_lexical_cue(lex: EmotionLexicon) -> None:
    quiet = lex.score("你们怎么回事", role="customer")
    loud = lex.score("你们怎么回事", role="customer", level_jump_db=9.0)
    fast = lex.score("你们怎么回事", role="customer", pace_jump=1.6)
    both = lex.score("你们怎么回事", role="customer", level_jump_db=12.0, pace_jump=2.0)
    assert quiet.strength < fast.strength < loud.strength < both.strength <= 1.0
    assert "level+9db" in loud.cues
    # a usual level and pace change nothing
    same = lex.score("你们怎么回事", role="customer", level_jump_db=1.0, pace_jump=1.05)
    assert same == quiet
    assert prosody_boost(None, None) == 0.0
    assert prosody_boost(math.nan, None) == 0.0
    assert prosody_boost(30.0, 5.0) == pytest.approx(0.65)


def test_speaker_baseline() -> None:
    b = SpeakerBaseline(min_turns=3)
    for level in (-30.0, -28.0, -32.0):
        assert b.observe("您好请问有什么可以帮您", 2.0, level) == (None, None)
    level_jump, pace_jump = b.observe("您好请问有什么可以帮您", 1.0, -20.0)
    assert level_jump == pytest.approx(10.0)  # median -30
    assert pace_jump == pytest.approx(2.0)
    lj, pj = b.observe("嗯", 0.1, None)  # no level, too short for a pace
    assert (lj, pj) == (None, None)


def test_bad_lexicon_rejected() -> None:
    with pytest.raises(ValueError, match="weight"):
        EmotionLexicon([Cue("生气", "anger", "state", 1.5)], [])
    with pytest.raises(ValueError):
        EmotionLexicon([Cue("生气", "rage", "state", 0.5)], [])


def test_measured_precision_floors(lex: EmotionLexicon) -> None:
    """Floors at the figures measured at min_strength 0.5 (benchmarks/bench_emotion.py).
    test: held out from tuning but written with the lexicon (40 flags, 100 % precision,
    87 % recall); holdout: written after the lexicon was frozen and never tuned on (7 flags,
    43 % precision, 8.6 % recall) - the honest figure, far below the 90 % bar that the
    emotion operator needs for the default pack."""
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 150
    assert sum(1 for r in rows if r["text"].startswith(("我不", "我没"))) >= 5  # negations
    precision, recall, _ = _precision_recall(lex, rows, "test")
    assert precision >= 0.95
    assert recall >= 0.8
    p_hold, r_hold, flags = _precision_recall(lex, rows, "holdout")
    assert flags >= 5
    assert p_hold >= 0.4
    assert r_hold >= 0.05
