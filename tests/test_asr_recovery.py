"""Decoding that can be trusted: a segment's text does not depend on what it is batched
with, and a decode that loops or breaks a character is decoded again, not cut and kept."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa_pipeline.asr.guard import GuardResult, HallucinationGuard
from qa_pipeline.asr.result import REPLACEMENT, AsrResult, clean_raw, suspect_reason
from qa_pipeline.evaluation import cer_counts
from qa_pipeline.messages import Role, SpeechSegment
from qa_pipeline.text import normalise, utterances

# Whisper base on this far-field clip, fitted window: a repetition loop the guard collapses
# to the first words (91 tokens for "然后被灌出了，当然现在已经好了") — measured 2026-12-06
LOOPING_CLIP = "zh/funasr_nano_far_2.wav"


def _segment(
    speech_dir: Path, name: str, start: float = 0.0, cut: float | None = None
) -> SpeechSegment:
    from audio_helpers import read_clip

    a = read_clip(speech_dir, name)
    if cut is not None:
        a = a[: int(cut * 16000)]
    return SpeechSegment("t", 0, Role.AGENT, start, start + len(a) / 16000, a)


def test_suspect_reasons() -> None:
    g = HallucinationGuard()
    ok = g.check("您好，请问有什么可以帮您", no_speech_prob=0.1, avg_logprob=-0.3)
    assert suspect_reason("您好，请问有什么可以帮您", ok, capped=False) is None
    assert suspect_reason("您好，请问有什么可以帮您", ok, capped=True) == "token_cap"
    loop = g.check("铁铁铁铁铁铁铁铁铁铁铁铁", no_speech_prob=0.1, avg_logprob=-0.3)
    assert loop.collapsed_loop and suspect_reason("铁" * 12, loop, capped=False) == "loop"
    broken = "谢谢您的来" + REPLACEMENT
    assert suspect_reason(broken, GuardResult(clean_raw(broken)), capped=False) == "broken_char"
    dropped = GuardResult("", "no_speech")
    assert suspect_reason("铁" * 40, dropped, capped=True) is None  # nothing to recover
    assert clean_raw(broken) == "谢谢您的来" and clean_raw("好") == "好"


def test_unreadable_speech_stays_in_the_transcript() -> None:
    """A segment dropped as a loop was speech: it stays (no text, confidence 0) so timing
    rules see the reply; silence and hallucinations do not."""
    seg = [
        SpeechSegment("c", i % 2, Role.AGENT, float(i), i + 0.8, np.zeros(800, np.float32))
        for i in range(4)
    ]

    def res(s: SpeechSegment, text: str, why: str | None) -> AsrResult:
        return AsrResult(s, text, "陪人体" * 9, 0.4, 0.01, "zh", 30, 0.1, dropped_reason=why)

    utts = utterances(
        [
            res(seg[3], "", "no_speech"),
            res(seg[2], "", "loop"),
            res(seg[1], "", "hallucination"),
            res(seg[0], "您好", None),
        ]
    )
    assert [(u.index, u.start, u.text, u.confidence) for u in utts] == [
        (0, 0.0, "您好", 0.4),
        (1, 2.0, "", 0.0),
    ]
    assert utts[1].raw_text == "陪人体" * 9


@pytest.mark.slow
def test_text_does_not_depend_on_the_batch(engine: Any, speech_dir: Path) -> None:
    """The same audio decodes to the same text alone and in batches with neighbours of
    other lengths (the live worker batches whatever is queued)."""
    fitted = engine._fitted
    short = _segment(speech_dir, "zh/aishell2_IT0011W0001.wav")
    # two 4 s cuts: the same window and token cap, so they really share a batch
    a = _segment(speech_dir, "zh/aishell1_BAC009S0724W0121.wav", start=5.0, cut=4.0)
    b = _segment(speech_dir, "zh/aishell1_BAC009S0764W0121.wav", start=7.0, cut=4.0)
    assert fitted.batch_key(a) == fitted.batch_key(b) != fitted.batch_key(short)
    long = _segment(speech_dir, "zh/qwen3asr_fast1.wav", start=9.0)
    alone = {id(s): fitted.decode([s])[0].text for s in (short, a, b, long)}
    for batch in ([short, long], [a, b], [long, b, short, a], [b, a, short]):
        got = fitted.decode(batch)
        assert [r.segment for r in got] == batch
        assert [r.text for r in got] == [alone[id(s)] for s in batch]


@pytest.mark.slow
def test_a_looping_decode_is_decoded_again(
    engine: Any, manifest: list[dict[str, Any]], speech_dir: Path
) -> None:
    """The issue's fault, on real audio: a first decode that fell into a loop, was cut at
    the token cap in the middle of a character and had its repeats collapsed by the guard
    is decoded again, not kept. Whether Whisper loops on a given clip depends on the CPU's
    int8 kernels (this clip looped at a 15 s window on an AVX2 CPU and does not on an AMX
    one), so the first decode is the measured loop, put through the engine's own guard."""
    ref = next(c["text"] for c in manifest if c["audio"] == LOOPING_CLIP)
    seg = _segment(speech_dir, LOOPING_CLIP)
    engine = engine.with_bias(())  # measured without the company-name hotword
    raw = "然后被灌出了" + "铁" * 80 + REPLACEMENT  # cut at the cap in half a character
    guarded = engine.guard.check(clean_raw(raw), no_speech_prob=0.05, avg_logprob=-0.4)
    first = AsrResult(
        seg,
        guarded.text,
        raw,
        0.67,
        0.05,
        "zh",
        91,
        0.5,
        suspect=suspect_reason(raw, guarded, capped=True),
    )
    assert first.suspect == "token_cap" and guarded.collapsed_loop
    r = engine._after_fitted(first)
    assert r.suspect is None and r.dropped_reason is None
    assert REPLACEMENT not in r.text and REPLACEMENT not in r.raw_text
    assert "铁铁" not in r.raw_text
    errors, n = cer_counts(ref, normalise(r.text))  # scored as the text step hands it on
    first_errors, _ = cer_counts(ref, normalise(first.text))
    print(f"looping decode: {first_errors}/{n} errors -> recovered {errors}/{n}: {r.text}")
    # the loop's few characters are replaced by a reading of the whole clip (a hard
    # far-field one: 23/37 errors here on an AMX CPU, the plain loop 20/37)
    assert errors < first_errors and errors / n < 0.7
    assert len(normalise(r.text)) >= 0.6 * n > 2 * len(normalise(first.text))
    # and this engine's own decode of the clip is one that can be trusted as it is
    own = engine.transcribe_segment(seg)
    assert own.suspect is None and REPLACEMENT not in own.raw_text
