"""Roles on mono recordings (qa_pipeline/roles.py): two espeak-ng voices told apart, the
agent named from the pack's phrases and the call direction, roles left unknown when the
evidence is weak; (slow) a generated corpus call mixed to mono, through the pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from qa_pipeline import roles
from qa_pipeline.config import load_config
from qa_pipeline.messages import Direction, Role, Utterance
from qa_pipeline.rules import load_pack

TOOLS_MISSING = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
needs_tools = pytest.mark.skipif(
    bool(TOOLS_MISSING),
    reason=f"{' and '.join(TOOLS_MISSING)} not installed (apt-get install -y espeak-ng sox)",
)

RATE = 16000
LINES = (
    "您好，华夏客服，我是工号一二三，请问有什么可以帮您？",
    "我的快递三天了还没有到，能帮我查一下吗？",
    "好的，请您稍等，我帮您查询一下。",
    "好的，我等一下。",
    "让您久等了，您的包裹明天上午送到。",
    "那太好了，谢谢你。",
    "不客气，还有什么可以帮您的吗？",
    "没有了，再见。",
)


def _speak(text: str, variant: str, pitch: int) -> np.ndarray:
    from qa_pipeline.samples.generate import Voice, render_speech

    return render_speech(text, Voice(variant, 165, pitch, 0, -22.0), RATE)


def _mono_call(
    voices: tuple[tuple[str, int], tuple[str, int]], gap: float = 0.6
) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    """The lines spoken alternately by the two voices (voice 0 first), ``gap`` seconds
    apart, over faint white noise; with each line's (start, end, voice)."""
    rng = np.random.default_rng(7)
    parts: list[np.ndarray] = [np.zeros(int(0.5 * RATE), dtype=np.float32)]
    spans = []
    t = 0.5
    for i, line in enumerate(LINES):
        clip = _speak(line, *voices[i % 2])
        spans.append((t, t + len(clip) / RATE, i % 2))
        parts += [clip, np.zeros(int(gap * RATE), dtype=np.float32)]
        t += len(clip) / RATE + gap
    x = np.concatenate(parts)
    return (x + rng.normal(0, 10 ** (-60 / 20), len(x))).astype(np.float32), spans


def _voice_of(seg: Any, spans: list[tuple[float, float, int]]) -> int:
    ov = [0.0, 0.0]
    for a, b, v in spans:
        ov[v] += max(0.0, min(seg.end, b) - max(seg.start, a))
    return int(np.argmax(ov))


@pytest.fixture(scope="module")
def two_voice_call() -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    if TOOLS_MISSING:
        pytest.skip("espeak-ng / sox not installed")
    return _mono_call((("m4", 30), ("f2", 70)))


@needs_tools
def test_two_voices_of_different_pitch_are_told_apart(two_voice_call: Any) -> None:
    x, spans = two_voice_call
    mt = roles.speaker_turns(x, load_config(), call_id="t")
    assert mt.two_voices, mt.clustering
    assert mt.clustering.separation >= load_config().audio.mono_min_separation
    assert mt.clustering.f0_hz[0] < mt.clustering.f0_hz[1]
    # every turn holds one line, of one voice, the same voice for all lines of a speaker
    assert len(mt.segments) == len(LINES)
    got = {_voice_of(s, spans): k for s, k in zip(mt.segments, mt.speakers, strict=True)}
    assert sorted(got.values()) == [0, 1]
    assert all(got[_voice_of(s, spans)] == k for s, k in zip(mt.segments, mt.speakers, strict=True))


@needs_tools
def test_turns_split_at_a_short_pause_between_speakers() -> None:
    """0.4 s between speakers (less than the VAD's 600 ms end of utterance): still one
    voice per turn."""
    x, spans = _mono_call((("m4", 30), ("f2", 70)), gap=0.4)
    mt = roles.speaker_turns(x, load_config(), call_id="t")
    assert mt.two_voices
    for s, k in zip(mt.segments, mt.speakers, strict=True):
        ov = [max(0.0, min(s.end, b) - max(s.start, a)) for a, b, v in spans]
        voices = {spans[i][2] for i, o in enumerate(ov) if o > 0.2}
        assert len(voices) == 1, (s.start, s.end, voices, k)


@needs_tools
def test_one_voice_stays_unknown() -> None:
    x, _ = _mono_call((("f2", 50), ("f2", 50)))
    mt = roles.speaker_turns(x, load_config(), call_id="t")
    assert not mt.two_voices, mt.clustering
    assert set(mt.speakers) == {-1}


@needs_tools
def test_near_identical_voices_stay_unknown() -> None:
    x, _ = _mono_call((("f2", 50), ("f2", 53)))
    mt = roles.speaker_turns(x, load_config(), call_id="t")
    assert not mt.two_voices, mt.clustering


def _utts(lines: list[tuple[int, str]]) -> tuple[list[Utterance], list[int]]:
    out, who = [], []
    t = 0.5
    for i, (voice, text) in enumerate(lines):
        out.append(Utterance("c", i, 0, Role.UNKNOWN, t, t + 3.0, text))
        who.append(voice)
        t += 4.0
    return out, who


CUES = roles.pack_cues(load_pack(settings={"company_name": "华夏"}))
MARGIN = load_config().audio.mono_min_margin


def test_inbound_agent_first_is_named_by_opening_phrases() -> None:
    utts, who = _utts([(1, text) if i % 2 == 0 else (0, text) for i, text in enumerate(LINES)])
    n = roles.name_voices(utts, who, CUES, Direction.INBOUND, MARGIN)
    assert n.agent == 1
    assert {"OPEN-GREET", "OPEN-IDENT", "OPEN-PURPOSE"} <= set(n.evidence[1])
    assert n.scores[1] - n.scores[0] >= MARGIN


def test_misheard_purpose_phrase_still_counts() -> None:
    """可以帮您 heard as 可疑犯您 (one syllable in four different)."""
    assert roles.says(roles.syllables("请问有什么可疑犯您"), roles.syllables("有什么可以帮您"))
    assert not roles.says(roles.syllables("你好"), roles.syllables("您好"))


def test_outbound_agent_speaks_second_and_states_the_purpose() -> None:
    lines = [
        (0, "喂？哪位？"),
        (1, "您好，请问是王先生吗？我是华夏客服，工号一二三，请问您现在方便接听电话吗？"),
        (0, "是我，什么事？"),
        (1, "您上个月的账单有一笔费用需要跟您核对一下。"),
        (0, "好的，你说吧。"),
        (1, "感谢您的耐心，还有其他问题吗？祝您生活愉快，再见。"),
    ]
    utts, who = _utts(lines)
    n = roles.name_voices(utts, who, CUES, Direction.OUTBOUND, MARGIN)
    assert n.first == 0 and n.agent == 1
    assert "OUT-CONFIRM" in n.evidence[1]


def test_weak_evidence_leaves_roles_unknown() -> None:
    """Neither voice says an agent phrase: only the direction speaks for the first voice,
    one point, under the margin."""
    lines = [(0, "我想问一下快递的事情。"), (1, "快递什么时候到？"), (0, "明天吧。"), (1, "好的。")]
    utts, who = _utts(lines)
    n = roles.name_voices(utts, who, CUES, Direction.INBOUND, MARGIN)
    assert n.agent is None and n.scores == (1.0, 0.0)


@needs_tools
def test_assigned_roles_and_provenance_in_the_transcript(two_voice_call: Any) -> None:
    from dataclasses import replace as dc_replace

    from qa_pipeline.messages import CallEnded, CallInfo
    from qa_pipeline.transcript import Transcript, transcript_to_dict

    x, spans = two_voice_call
    mt = roles.speaker_turns(x, load_config(), call_id="t")
    # the script's words as the ASR would give them, at the turns' times
    utts = [
        Utterance("t", i, 0, Role.UNKNOWN, s.start, s.end, LINES[i])
        for i, s in enumerate(mt.segments)
    ]
    call = CallInfo("t", direction=Direction.INBOUND, channels=(Role.UNKNOWN,))
    t = Transcript(call, tuple(utts), CallEnded("t", float(len(x)) / RATE), (("model", "m"),))
    named = roles.name_transcript(t, mt, load_pack(settings={"company_name": "华夏"}))
    assert [u.role for u in named.utterances] == [
        Role.AGENT if i % 2 == 0 else Role.CUSTOMER for i in range(len(LINES))
    ]
    doc = transcript_to_dict(named)
    assert doc["asr"]["roles"] == "inferred" and "agent = voice" in doc["asr"]["roles_detail"]
    # one voice: roles stay unknown, and the transcript says why
    one = roles.speaker_turns(_mono_call((("f2", 50), ("f2", 50)))[0], load_config(), call_id="t")
    left = roles.name_transcript(dc_replace(t, utterances=()), one, load_pack())
    assert dict(left.asr)["roles"] == "unknown"


@pytest.mark.slow
@needs_tools
def test_generated_mono_mix_gets_most_speech_right(pipeline: Any, tmp_path: Path) -> None:
    """Two corpus calls (seed 1: the first inbound and the first outbound call whose two
    voices' espeak-ng pitch settings differ by 20 or more, i.e. clearly different voices)
    mixed to mono and transcribed with the default config: the share of their speech given
    the right role has a floor, and the wrong share a ceiling."""
    from qa_pipeline.pipeline import Pipeline
    from qa_pipeline.samples import corpus as cp

    plans = cp.plan_corpus(cp.DEFAULT_CALLS, cp.DEFAULT_SEED)
    picks = [
        next(
            p
            for p in plans
            if p.direction == d and abs(p.audio.agent.pitch - p.audio.customer.pitch) >= 20
        )
        for d in ("inbound", "outbound")
    ]
    right = wrong = total = 0.0
    for plan in picks:
        wav = cp.render_call(plan, tmp_path)
        side = cp.read_sidecar(wav)
        data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
        mono = tmp_path / f"{plan.id}-mono.wav"
        sf.write(str(mono), np.clip(data.sum(axis=1), -1, 1), rate, subtype="PCM_16")
        call = dict(side["call"], channels=["unknown"])
        mono.with_suffix(".json").write_text(json.dumps({"call": call}), encoding="utf-8")
        cfg = load_config(overrides={"rules": {"settings": {"company_name": side["company"]}}})
        res = Pipeline(cfg, engine=pipeline.engine).transcribe(mono)
        print(plan.id, dict(res.transcript.asr).get("roles_detail"))
        for u in res.transcript.utterances:
            for t in side["turns"]:
                ov = max(0.0, min(u.end, t["end"]) - max(u.start, t["start"]))
                total += ov
                if u.role.value == t["role"]:
                    right += ov
                elif u.role != Role.UNKNOWN:
                    wrong += ov
    print(f"right {right / total:.2f} wrong {wrong / total:.2f} of {total:.0f} s")
    assert right / total >= 0.8
    assert wrong / total <= 0.1


def test_setting_off_is_its_own_transcript_key_and_auto_keeps_old_keys() -> None:
    from qa_pipeline.store import transcript_settings

    auto = transcript_settings(load_config())
    off = transcript_settings(load_config(overrides={"audio": {"mono_roles": "off"}}))
    assert "mono" not in auto  # transcripts stored before roles were inferred still match
    assert off["mono"] == ["off", 300] and off != auto


@needs_tools
def test_unnamed_voices_are_transcribed_from_the_channels_ordinary_turns(
    two_voice_call: Any, tmp_path: Path
) -> None:
    """Two voices told apart but not named (nothing the pack expects is said): the speaker
    split is dropped and the ASR decodes the channel's ordinary turns, as a one-voice mono
    call's (a sentence cut at a change of voice loses words, issue #13)."""
    from qa_pipeline.asr.engine import AsrResult
    from qa_pipeline.pipeline import Pipeline

    class Echo:
        """Stands in for Whisper: every segment 'says' 好的 (no agent phrase)."""

        settings: dict[str, object] = {"model": "echo"}
        provenance: dict[str, object] = {}
        decoded: list[tuple[float, float]] = []

        def transcribe_many(self, segments: Any, on_result: Any = None) -> Any:
            for s in segments:
                self.decoded.append((s.start, s.end))
                r = AsrResult(s, "好的", "好的", 0.9, 0.0, "zh", 2, 0.0)
                if on_result:
                    on_result(r)
                yield r

    x, _ = two_voice_call
    wav = tmp_path / "mono.wav"
    sf.write(str(wav), x, RATE, subtype="PCM_16")
    cfg = load_config(overrides={"asr": {"verify": False}})
    engine = Echo()
    res = Pipeline(cfg, engine=engine).transcribe(wav)  # type: ignore[arg-type]
    split = roles.speaker_turns(x, cfg, call_id="t")
    plain = roles.channel_turns(x, cfg, call_id="t")
    assert split.two_voices and len(split.segments) != len(plain)
    assert dict(res.transcript.asr)["roles"] == "unknown"
    assert [(u.start, u.end) for u in res.transcript.utterances] == [
        (s.start, s.end) for s in plain
    ]
    assert all(u.role == Role.UNKNOWN for u in res.transcript.utterances)
    assert res.stats.segments == len(plain)
