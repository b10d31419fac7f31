"""Personal data out of audio, the fast parts: beeping and silencing spans of samples
(qa_pipeline/privacy/audio.py), placing text spans in time from word timestamps, and the
call-level search and rewrite (qa_pipeline/audio_redact.py) with a stand-in timed decode."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from qa_pipeline import audio_redact
from qa_pipeline.asr.words import TimedDecode
from qa_pipeline.audio import CallAudio
from qa_pipeline.messages import EntitySpan, Role, Utterance
from qa_pipeline.privacy import find_entities
from qa_pipeline.privacy.audio import (
    BEEP_HZ,
    BEEP_PEAK,
    TimedWord,
    entity_times,
    merge_spans,
    redact_samples,
)
from qa_pipeline.text import normalise

RATE = 16000


def _tone(hz: float, seconds: float, rate: int = RATE, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spec))])


# -- redact_samples -------------------------------------------------------------------


def test_a_beep_replaces_the_padded_span_and_nothing_else() -> None:
    x = _tone(300, 3.0)
    y = redact_samples(x, RATE, [(1.0, 1.5)], "beep", pad_s=0.1)
    assert y.dtype == np.float32 and y.shape == x.shape and y is not x
    a, b = round(0.9 * RATE), round(1.6 * RATE)
    assert np.array_equal(y[:a], x[:a]) and np.array_equal(y[b:], x[b:])
    inner = y[a + 200 : b - 200]  # past the fades: the beep alone, none of the speech
    assert _peak_hz(inner, RATE) == pytest.approx(BEEP_HZ, abs=5)
    assert float(np.max(np.abs(inner))) == pytest.approx(BEEP_PEAK, rel=0.01)
    t = np.arange(a + 200, b - 200) / RATE
    assert np.allclose(inner, BEEP_PEAK * np.sin(2 * np.pi * BEEP_HZ * t), atol=1e-6)


def test_silence_fades_out_and_back_without_a_click() -> None:
    x = _tone(440, 2.0)
    y = redact_samples(x, RATE, [(0.5, 1.0)], "silence", pad_s=0.0)
    a, b = round(0.5 * RATE), round(1.0 * RATE)
    assert np.all(y[a + 100 : b - 100] == 0)
    # the largest step is no larger than the tone's own (a hard cut jumps up to 0.5)
    natural = float(np.max(np.abs(np.diff(x))))
    assert float(np.max(np.abs(np.diff(y)))) <= natural * 1.05
    # the beep's edges too
    z = redact_samples(x, RATE, [(0.5, 1.0)], "beep", pad_s=0.0)
    beep_step = 2 * math.sin(math.pi * BEEP_HZ / RATE) * BEEP_PEAK
    assert float(np.max(np.abs(np.diff(z)))) <= max(natural, beep_step) * 1.05


def test_int16_keeps_its_type_and_scale() -> None:
    x = (_tone(300, 1.0, amp=0.99) * 32767).astype(np.int16)
    y = redact_samples(x, RATE, [(0.2, 0.6)], "beep", pad_s=0.0)
    assert y.dtype == np.int16
    inner = y[round(0.3 * RATE) : round(0.5 * RATE)]
    assert int(np.max(np.abs(inner))) == pytest.approx(BEEP_PEAK * 32767, rel=0.01)
    assert np.array_equal(y[: round(0.2 * RATE)], x[: round(0.2 * RATE)])
    s = redact_samples(x, RATE, [(0.2, 0.6)], "silence", pad_s=0.0)
    assert s.dtype == np.int16 and not np.any(s[round(0.3 * RATE) : round(0.5 * RATE)])


def test_eight_khz_mu_law_audio(tmp_path: Path) -> None:
    """A telephone recording: 8 kHz mu-law, read as float, redacted, written back."""
    p = tmp_path / "ulaw.wav"
    sf.write(p, _tone(300, 2.0, 8000, 0.3), 8000, subtype="ULAW")
    x, rate = sf.read(p, dtype="float32")
    y = redact_samples(x, rate, [(0.5, 1.5)], "beep", pad_s=0.15)
    q = tmp_path / "out.wav"
    sf.write(q, y, rate, subtype="ULAW")
    back, _ = sf.read(q, dtype="float32")
    inner = back[round(0.4 * rate) : round(1.6 * rate)]
    assert _peak_hz(inner, rate) == pytest.approx(BEEP_HZ, abs=8)
    assert np.allclose(back[: round(0.3 * rate)], x[: round(0.3 * rate)], atol=1e-3)


def test_spans_are_padded_clipped_and_joined() -> None:
    assert merge_spans([(2.0, 3.0), (0.05, 0.5), (0.6, 1.0)], 0.1, duration=2.5) == [
        (0.0, 1.1),  # clipped at 0, joined with the next once padded
        (1.9, 2.5),  # clipped at the end
    ]
    assert merge_spans([(0.05, 0.5), (0.6, 1.0)], 0.1, duration=2.5) == [(0.0, 1.1)]
    assert merge_spans([(2.0, 3.0)], 0.1, duration=2.5) == [(1.9, 2.5)]
    assert merge_spans([(3.0, 4.0)], 0.1, duration=2.5) == []
    two = np.stack([_tone(300, 1.0), _tone(500, 1.0)], axis=1)
    y = redact_samples(two, RATE, [(0.2, 0.4), (0.9, 5.0)], "silence", pad_s=0.05)
    assert y.shape == two.shape
    assert not np.any(y[round(0.2 * RATE) : round(0.4 * RATE)])  # every channel
    assert not np.any(y[round(0.9 * RATE) :])
    assert np.array_equal(y[: round(0.1 * RATE)], two[: round(0.1 * RATE)])


def test_bad_arguments() -> None:
    x = _tone(300, 0.5)
    with pytest.raises(ValueError, match="mode"):
        redact_samples(x, RATE, [(0.1, 0.2)], "bleep")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample rate"):
        redact_samples(x, 2000, [(0.1, 0.2)])
    assert redact_samples(x, 2000, [(0.1, 0.2)], "silence").shape == x.shape


# -- text spans -> time spans --------------------------------------------------------


def _words(*triples: tuple[str, float, float]) -> list[TimedWord]:
    return [TimedWord(*t) for t in triples]


def test_a_number_in_traditional_text_with_digit_words() -> None:
    # as faster-whisper wrote it: traditional characters, words of 1-3 characters
    words = _words(
        ("我的", 0.0, 0.5), ("手", 0.5, 0.8), ("機", 0.8, 1.1), ("號", 1.1, 1.4),
        ("是", 1.4, 1.7), ("13", 1.74, 2.1), ("8.", 2.16, 2.5), ("1234", 2.8, 3.9),
        ("5678", 4.0, 5.2), ("，謝謝", 5.5, 6.0),
    )  # fmt: skip
    text = normalise("".join(w.text for w in words))
    assert text == "我的手机号是138.12345678，谢谢"
    (e,) = find_entities(text)
    # its words, and the pauses on either side (the next word starts at 5.5)
    assert entity_times(text, words, [(e.start, e.end)], normalise) == [(1.7, 5.5)]
    # a span inside one word takes the whole word
    assert entity_times(text, words, [(1, 2)], normalise) == [(0.0, 0.5)]
    assert entity_times(text, words[:-1], [(e.start, e.end)], normalise) == [(1.7, math.inf)]


def test_spoken_numerals_with_punctuation_the_normalisation_changed() -> None:
    words = _words(
        (" 我的手机号是", 0.0, 1.2), (" 幺三八", 1.3, 2.0), (" 一二三四", 2.2, 3.0),
        (" 五六七八", 3.2, 4.1), (" 好的", 4.5, 4.9),
    )  # fmt: skip
    text = normalise("".join(w.text for w in words))
    assert text == "我的手机号是，幺三八，一二三四，五六七八，好的"  # spaces became commas
    (e,) = find_entities(text)
    assert entity_times(text, words, [(e.start, e.end)], normalise) == [(1.2, 4.5)]


def test_text_no_word_holds_reaches_to_the_neighbouring_words() -> None:
    words = _words(("我的号码", 0.0, 1.0), ("是", 1.0, 1.3), ("好的", 3.0, 3.5))
    text = "我的号码是一三八一二三四五六七八好的"  # the digits are in no word
    (e,) = find_entities(text)
    assert entity_times(text, words, [(e.start, e.end)]) == [(1.3, 3.0)]
    # after the last word: on to the end of the audio; before the first: from its start
    assert entity_times("是一三八", words[1:2], [(1, 4)]) == [(1.3, math.inf)]
    assert entity_times("一三八是", _words(("是", 2.0, 2.2)), [(0, 3)]) == [(0.0, 2.0)]
    # no words at all: the whole audio
    assert entity_times("一三八", [], [(0, 3)]) == [(0.0, math.inf)]


# -- a call: the utterances that held personal data, decoded again with word times ----


def _call(seconds: float = 10.0) -> CallAudio:
    n = round(seconds * RATE)
    return CallAudio(
        "c", (np.zeros(n, np.float32), np.zeros(n, np.float32)),
        (Role.AGENT, Role.CUSTOMER), RATE, "WAV/PCM_16",
    )  # fmt: skip


def _utt(i: int, ch: int, start: float, end: float, text: str, **kw: Any) -> Utterance:
    role = (Role.AGENT, Role.CUSTOMER)[ch]
    return Utterance("c", i, ch, role, start, end, text, text, 0.8, **kw)


def _decodes(monkeypatch: pytest.MonkeyPatch, *decodes: TimedDecode) -> list[float]:
    """Stand in for the timed decode; records the seconds of audio each was given."""
    asked: list[float] = []
    todo = list(decodes)

    def fake(engine: Any, samples: np.ndarray, rate: int = RATE) -> TimedDecode:
        asked.append(len(samples) / rate)
        return todo.pop(0)

    monkeypatch.setattr(audio_redact, "timed_decode", fake)
    return asked


def test_the_timed_decode_places_the_number(monkeypatch: pytest.MonkeyPatch) -> None:
    words = (TimedWord("我的手机号是", 0.3, 1.3), TimedWord("13812345678", 1.5, 4.0))
    asked = _decodes(monkeypatch, TimedDecode("我的手机号是13812345678", words, 0.5))
    utts = [
        _utt(0, 0, 0.5, 2.0, "您好，请问您的手机号是多少"),
        _utt(1, 1, 3.0, 7.5, "我的手机号是幺三八一二三四五六七八"),
    ]
    found = audio_redact.find_spans(None, _call(), utts)  # type: ignore[arg-type]
    assert found.timed_decodes == 1 and found.fallbacks == 0 and found.decode_seconds == 0.5
    assert asked == [pytest.approx(4.5)]  # the utterance's own audio
    (s,) = found.spans
    assert (s.kind, s.channel, s.how, s.utterance) == ("mobile", 1, "words", 1)
    # from the end of the word before to the end of the audio decoded (nothing after it)
    assert (s.start, s.end) == (pytest.approx(3.0 + 1.3), pytest.approx(7.5))


def test_a_number_the_timed_decode_missed_masks_the_whole_utterance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    words = (TimedWord("我的手机号是", 0.3, 1.3), TimedWord("幺三八", 1.5, 2.0))
    _decodes(monkeypatch, TimedDecode("我的手机号是幺三八", words, 0.4))
    # the text step redacted it already: its spans say what it held
    u = _utt(0, 1, 3.0, 7.5, "我的手机号是[手机号]", entities=(EntitySpan("mobile", 6, 11),))
    found = audio_redact.find_spans(None, _call(), [u])  # type: ignore[arg-type]
    assert [(s.how, s.start, s.end) for s in found.spans] == [("utterance", 3.0, 7.5)]
    assert found.fallbacks == 1


def test_two_numbers_one_confirmed_masks_the_utterance_and_the_placed_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    words = (TimedWord("13812345678", 0.5, 2.0), TimedWord("还有一个", 2.2, 3.0))
    _decodes(monkeypatch, TimedDecode("13812345678还有一个", words, 0.4))
    u = _utt(0, 1, 1.0, 6.0, "13812345678还有一个13912345678")
    found = audio_redact.find_spans(None, _call(), [u])  # type: ignore[arg-type]
    assert sorted(s.how for s in found.spans) == ["utterance", "words"]


def test_write_redacted_keeps_the_format_and_the_other_channel(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    rng = np.random.default_rng(1)
    stereo = rng.uniform(-0.3, 0.3, size=(8000 * 3, 2)).astype(np.float32)
    sf.write(src, stereo, 8000, subtype="ULAW")
    spans = [audio_redact.MaskedSpan("mobile", 1, 1.0, 2.0, "words", 0)]
    audio_redact.write_redacted(src, dst, spans, pad_s=0.1)
    a, b = sf.info(str(src)), sf.info(str(dst))
    assert (b.format, b.subtype, b.samplerate, b.channels, b.frames) == (
        a.format, a.subtype, a.samplerate, a.channels, a.frames,
    )  # fmt: skip
    x = sf.read(src, dtype="int16")[0]
    y = sf.read(dst, dtype="int16")[0]
    assert np.array_equal(x[:, 0], y[:, 0])  # byte for byte, outside the span too
    assert np.array_equal(x[:7200, 1], y[:7200, 1]) and np.array_equal(x[17600:, 1], y[17600:, 1])
    assert not np.array_equal(x[8000:16000, 1], y[8000:16000, 1])
    assert audio_redact.masked_seconds(spans, 0.1) == pytest.approx(1.2)
    with pytest.raises(Exception, match="cannot write"):
        (tmp_path / "x.mp3").write_bytes(b"not audio")
        audio_redact.write_redacted(tmp_path / "x.mp3", dst, spans)
