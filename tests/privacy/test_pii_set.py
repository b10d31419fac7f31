"""The personal-data test set, scored: floors a little under what the recognisers reach
(``benchmarks/bench_redact.py`` prints the full table; the issue's targets are recall
>= 99 % for phone/ID/card numbers and <= 2 % false masks)."""

from __future__ import annotations

import pytest

from qa_pipeline.testing.pii import CORE, load, recalled, score


def test_the_set_is_as_the_issue_asks() -> None:
    typed, speech = load("typed"), load("whisper")
    items = typed + speech
    assert len(items) >= 150
    assert len(speech) >= 50 and all(i["source"] == "whisper" for i in speech)
    assert sum(1 for i in items if not i["expect"]) >= 50
    for i in items:
        for e in i["expect"]:
            assert i.get("label_lost") or e["text"] in i["text"], i["id"]


def test_typed_part_floors() -> None:
    s = score(load("typed"))
    assert s.recall_of(CORE) >= 0.98  # measured 100 % (63/63)
    for k, ks in s.kinds.items():
        assert ks.recall >= 0.85, (k, ks.misses)
    assert s.false_mask_rate <= 0.02  # measured 0/61


@pytest.mark.parametrize(
    ("part", "floor"),
    # measured: 8/10, 12/14, 7/11 and 11/13 phone/ID/card numbers that survived the ASR
    # (6/10, 8/14 and 5/11 before the measured near-misses of spoken digits, homophone
    # cues and joins across a misheard word; seed 19, female and male voices, half of it
    # 8 kHz mu-law, was made after that change: held out, 10/13 with the recognisers before);
    # 10/10, 13/14, 10/11 and 12/13 after near-heard cues (变化 for 电话) and six digits
    # after a phone cue; seed 21 (made like seed 19 before that change, scored after it:
    # held out) 19/21, 17/21 with the recognisers before
    [
        ("pii_speech.jsonl", 0.9),
        ("pii_speech_s17.jsonl", 0.85),
        ("pii_speech_s18.jsonl", 0.8),
        ("pii_speech_s19.jsonl", 0.85),
        ("pii_speech_s21.jsonl", 0.85),
    ],
)
def test_whisper_part_floors(part: str, floor: float) -> None:
    """Whisper base's transcripts of espeak-ng speech. Most numbers do not survive that ASR
    (counted apart); on those that do, floors under what was measured; false masks 0/15,
    1/15, 1/15, 0/15 and 1/15 (order numbers whose cue word the ASR lost: 电端号, 灵弹 and
    电端号 again for 订单号)."""
    s = score(load(part))
    assert sum(ks.expected for ks in s.kinds.values()) >= 10
    assert s.recall_of(CORE) >= floor
    assert s.false_mask_rate <= 0.07


def test_numbers_the_asr_lost_show_no_five_digits_in_a_row() -> None:
    """Of the phone, ID and card numbers too garbled to score (fewer than half their digits
    heard in order), the redacted text shows five or more of the said digits in a row,
    exactly, in none but one (measured 1/191: seed 21's ID number, its cue heard as 纯纯纯浩马
    and its second half cut off by a misheard 舞球; 1/160 on seeds 16-19 with the
    recognisers before, 0/160 since)."""
    s = score(load("whisper"))
    assert s.lost_core >= 100
    assert s.lost_leaks <= 1, s.lost_leak_items


def test_recall_rule_allows_only_the_last_four_digits() -> None:
    text = "电话13812345678"
    assert recalled(text, 2, 13, [(2, 13)])
    assert recalled(text, 2, 13, [(2, 9)])  # 5678 visible
    assert not recalled(text, 2, 13, [(2, 8)])  # 45678 visible
    assert not recalled(text, 2, 13, [(4, 13)])  # 13 visible at the front
    assert not recalled(text, 2, 13, [])
