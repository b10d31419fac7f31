"""Text matching robust to ASR output: pinyin fuzzy, numerals, match form."""

from __future__ import annotations

import pytest

from qa_pipeline.rules.runtime.textindex import (
    TextIndex,
    fold_syllable,
    fold_text,
    syllable,
    syllable_ids,
)


def index(*phrases: str, threshold: float = 85) -> tuple[TextIndex, list[int]]:
    ix = TextIndex()
    atoms = [ix.fuzzy(p, threshold) for p in phrases]
    ix.finish()
    return ix, atoms


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("好的，千年少等，我帮您查一下", "请您稍等"),
        ("您好，请问有什么可疑方林？", "可以帮您"),
        ("請您稍等", "请您稍等"),  # traditional
        ("请您 稍等！", "请您稍等"),  # spaces, punctuation
        ("让您久等了", "让您久等了"),
        ("宁好，这里是华冠", "您好"),  # two syllables: exact pinyin (homophone)
    ],
)
def test_fuzzy_matches_asr_variants(text: str, phrase: str) -> None:
    ix, (atom,) = index(phrase)
    assert ix.hits(ix.analyse(text), atom), (text, ix.analyse(text).pinyin)


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("可以放心", "可以帮您"),
        ("今天天气不错", "请您稍等"),
        ("千万别等", "请您稍等"),
        ("你好", "您好"),
        ("我想查一下话费", "这是公司规定"),
        ("嗯", "请您稍等"),
        ("请问有什么可以帮您", "还有什么其他可以帮您"),
    ],
)
def test_fuzzy_rejects_unrelated(text: str, phrase: str) -> None:
    ix, (atom,) = index(phrase)
    assert not ix.hits(ix.analyse(text), atom), (text, ix.analyse(text).pinyin)


def test_fuzzy_threshold_is_tunable() -> None:
    ix, (strict, loose) = index("可以帮您", threshold=99)[0], [0, 0]
    ix = TextIndex()
    strict = ix.fuzzy("可以帮您", 99)
    loose = ix.fuzzy("可以帮您", 80)
    ix.finish()
    a = ix.analyse("可疑方林")
    assert not ix.hits(a, strict)
    assert ix.hits(a, loose)


def test_fuzzy_span_points_at_the_words() -> None:
    ix, (atom,) = index("请您稍等")
    a = ix.analyse("好的，千年少等，我帮您查一下")
    (span,) = ix.hits(a, atom)
    assert a.matched(span) == "千年少等"


def test_syllable_ids_one_per_character_equal_for_equal_syllables() -> None:
    """Characters are learned on first sight, also ones that lie in the range the ids are
    drawn from (a private-use character in a transcript must not pass for an id)."""
    text = "请您稍等青年少灯"
    ids = syllable_ids(text)
    assert len(ids) == len(text)
    for i, a in enumerate(text):
        for j, b in enumerate(text):
            assert (ids[i] == ids[j]) == (syllable(a) == syllable(b)), (a, b)
    first = syllable_ids("请")
    odd = first + "请" + chr(0xF0000 + 60_000)  # the id of 请 as a character, 请, another
    got = syllable_ids(odd)
    assert len(got) == 3 and got[1] == first
    assert got[0] != first and got[2] not in (first, got[0])
    assert syllable_ids(odd) == got  # learned: the same ids next time


def test_syllable_folding() -> None:
    assert fold_syllable("zhang") == "zan"
    assert fold_syllable("ling") == "nin"
    assert fold_syllable("shi") == "si"
    assert fold_syllable("kong") == "kong"


def test_numerals_fold_both_ways() -> None:
    assert fold_text("预计二天内") == fold_text("预计2天内") == "预计2天内"
    ix = TextIndex()
    atom = ix.keyword("两天内")
    ix.finish()
    assert ix.hits(ix.analyse("预计2天内处理"), atom) == [(2, 5)]


def test_keyword_aho_corasick_spans() -> None:
    ix = TextIndex()
    a1, a2 = ix.keyword("公司规定"), ix.keyword("规定")
    ix.finish()
    a = ix.analyse("这是公司规定，规定就是规定")
    assert ix.hits(a, a1) == [(2, 6)]
    assert len(ix.hits(a, a2)) == 3


def test_regex_exclusion_and_entities() -> None:
    ix = TextIndex()
    r = ix.regex(r"保证", r"不能保证")
    number = ix.entity("number")  # personal data: the redactor's spans (tests/privacy)
    ix.finish()
    assert ix.hits(ix.analyse("我保证没问题"), r)
    assert not ix.hits(ix.analyse("我不能保证"), r)
    assert ix.hits(ix.analyse("订单号1381234567890"), number) == [(3, 16)]
    assert ix.hits(ix.analyse("三天内"), number) == [(0, 1)]  # numerals fold to digits
    assert not ix.hits(ix.analyse("好的"), number)


def test_similar_sentence() -> None:
    ix = TextIndex()
    s = ix.similar(["您看还有什么需要我为您做的吗"], 75)
    ix.finish()
    assert ix.hits(ix.analyse("您看看还有什么需要我帮您做的吗？"), s)
    assert not ix.hits(ix.analyse("我的快递一直没收到"), s)


def test_analysis_is_cached_per_text() -> None:
    ix, _ = index("请您稍等")
    assert ix.analyse("你好") is ix.analyse("你好")
