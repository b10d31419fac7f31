"""Non-speech gives no speech: line noise, tones, DTMF, hold music, fax and call-progress
tones, a dead line (all generated with sox) give no utterance in the recorded path and no
ASR job in the live path; the same screen keeps every segment of real speech."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from qa_pipeline.audio import load_call
from qa_pipeline.config import PipelineConfig, VadConfig, load_config
from qa_pipeline.messages import AudioChunk, CallInfo, Role
from qa_pipeline.pipeline import Pipeline
from qa_pipeline.samples.nonspeech import KINDS, render, write_nonspeech
from qa_pipeline.screen import nonspeech_reason

SECONDS = 30.0


class NoAsr:
    """An ASR that must never be asked: the screen leaves it nothing to decode."""

    settings: dict[str, object] = {"model": "none"}
    provenance: dict[str, object] = {}
    bias: tuple[str, ...] = ()

    def with_bias(self, bias: tuple[str, ...]) -> NoAsr:
        return self

    def transcribe_many(self, segments: Any, on_result: Any = None) -> Any:
        segs = list(segments)
        assert not segs, f"{len(segs)} non-speech segments reached the ASR"
        return iter(())


def segments_of(path: Path, cfg: PipelineConfig | None = None) -> tuple[list[Any], Counter[str]]:
    p = Pipeline(cfg or load_config(), engine=NoAsr())  # type: ignore[arg-type]
    rejected: Counter[str] = Counter()
    return p.segment(load_call(path), path.stem, rejected), rejected


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_gives_no_segment(kind: str, tmp_path: Path) -> None:
    f = write_nonspeech(tmp_path / f"{kind}.wav", kind, SECONDS, encoding="ulaw")
    segs, rejected = segments_of(f)
    assert segs == [], f"{kind}: {[(s.start, s.end) for s in segs]}"
    print(kind, dict(rejected))


def test_two_minute_dual_channel_pcm_and_ulaw(tmp_path: Path) -> None:
    """Two minutes (then shorter), both channels: hold music against line noise (PCM), DTMF against a
    busy tone (mu-law), fax against a dead line with digital silence."""
    pairs = [
        (("hold-music", "noise-pink-20"), "pcm"),
        (("dtmf", "busy"), "ulaw"),
        (("fax-ced", "dead-digital"), "ulaw"),
        (("noise-white-20", "noise-white-20"), "pcm"),
    ]
    for i, (kinds, enc) in enumerate(pairs):
        secs = 120.0 if i == 0 else 45.0
        f = write_nonspeech(tmp_path / f"{'+'.join(kinds)}.wav", kinds, secs, encoding=enc)
        assert sf.info(str(f)).channels == 2
        segs, rejected = segments_of(f)
        assert segs == [], f"{kinds}: {[(s.channel, s.start, s.end) for s in segs]}"
        # tones (DTMF, busy, fax) open VAD segments that the screen drops; line noise and
        # this hold music are steady enough for the VAD's noise gate to keep it shut
        if kinds[0] in ("dtmf", "fax-ced"):
            assert sum(rejected.values()) > 0


def test_screen_off_lets_them_through(tmp_path: Path) -> None:
    """Without the screen the VAD passes tones and loud noise to the ASR (what invented
    the utterances): the tests above are testing the screen, not a deaf VAD. (The VAD's
    noise gate, off here too, keeps it shut on steady sounds: line noise, a steady tone.)"""
    off = PipelineConfig(vad=VadConfig(nonspeech_filter=False, noise_gate_db=0))
    for kind in ("tone-1k", "noise-pink-20", "hold-music", "dtmf"):
        f = write_nonspeech(tmp_path / f"{kind}.wav", kind, 20.0)
        segs, _ = segments_of(f, off)
        assert segs, kind


def test_recorded_path_scores_no_utterance(tmp_path: Path) -> None:
    """``Pipeline.score``: no segment reaches the ASR, the transcript is empty, no finding,
    no failed rule; the screened segments (DTMF's) are counted in the stats."""
    f = write_nonspeech(tmp_path / "hold.wav", ("hold-music", "dtmf"), 60.0)
    result = Pipeline(load_config(), engine=NoAsr()).score(f)  # type: ignore[arg-type]
    assert result.transcript.utterances == ()
    assert dict(result.stats.dropped)["nonspeech"] >= 2
    assert result.scorecard is not None
    assert result.scorecard.findings == ()
    assert all(v.verdict.value != "failed" for v in result.scorecard.verdicts)


class _Metrics:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


def test_live_path_replay_gives_no_asr_job(tmp_path: Path) -> None:
    """The live path: the replay source plays non-speech calls into live call sessions
    (16 kHz as replayed, and 8 kHz as a telephone source sends it): no ASR job, no
    utterance, no finding that rests on one."""
    from qa_pipeline.live.session import CallSession
    from qa_pipeline.rules import load_pack
    from qa_pipeline.sources.base import EndReason
    from qa_pipeline.sources.replay import ReplaySource

    cfg = load_config()
    pack = load_pack(None)
    files = [
        write_nonspeech(tmp_path / "a.wav", ("tone-1k", "noise-white-20"), 30.0),
        write_nonspeech(tmp_path / "b.wav", ("ringback", "hold-music"), 30.0, encoding="pcm"),
    ]

    class Handler:
        def __init__(self) -> None:
            self.sessions: dict[str, CallSession] = {}
            self.jobs: list[Any] = []
            self.events: list[Any] = []

        def call_started(self, call: CallInfo, sample_rate: int, *, source: str) -> bool:
            self.sessions[call.call_id] = CallSession(
                call,
                sample_rate,
                vad=cfg.vad,
                pack=pack,
                emit=self.events.append,
                metrics=_Metrics(),
                source=source,
            )
            return True

        def audio(self, chunk: AudioChunk) -> None:
            self.jobs += self.sessions[chunk.call_id].push(chunk)

        def call_error(
            self, call_id: str | None, reason: str, detail: str = "", *, source: str
        ) -> None:
            raise AssertionError(f"{reason}: {detail}")

        def call_ended(self, call_id: str, reason: EndReason) -> None:
            s = self.sessions[call_id]
            self.jobs += s.flush()
            s.end()

    h = Handler()

    async def main() -> None:
        src = ReplaySource(files, speed=200.0, chunk_ms=100)
        await src.start(h)
        await asyncio.wait_for(src.done.wait(), 60)

    asyncio.run(main())
    assert set(h.sessions) == {"a", "b"}
    # and the same audio at 8 kHz, as a telephone source delivers it
    info = CallInfo(call_id="c8k", channels=(Role.AGENT, Role.CUSTOMER))
    h.call_started(info, 8000, source="test")
    chans = [render("dtmf", 30.0), render("busy", 30.0)]
    for i in range(0, len(chans[0]), 160):
        for ch, x in enumerate(chans):
            h.audio(AudioChunk("c8k", ch, info.channels[ch], i / 8000, 8000, x[i : i + 160]))
    h.call_ended("c8k", EndReason.EOF)
    assert h.jobs == []
    kinds = [e.kind.value for e in h.events]
    assert "utterance" not in kinds and kinds.count("scorecard") == 3
    for s in h.sessions.values():
        assert s.scorecard is not None
        assert s.scorecard.findings == ()


# -- real speech is kept ---------------------------------------------------------------------


def _rejections(audio: np.ndarray, rate: int) -> list[str]:
    """The screen's verdict on every VAD segment of a clip (screen off while segmenting)."""
    from qa_pipeline.vad import segment_channel

    cfg = load_config().vad
    raw = VadConfig(**{**cfg.model_dump(), "nonspeech_filter": False})
    out = []
    for s in segment_channel(
        audio, raw, call_id="x", channel=0, role=Role.UNKNOWN, sample_rate=rate
    ):
        r = nonspeech_reason(
            s.samples,
            s.sample_rate,
            tonal_fraction=cfg.nonspeech_tonal_fraction,
            min_spread_db=cfg.nonspeech_min_spread_db,
        )
        if r:
            out.append(f"{s.start:.2f}-{s.end:.2f} {r}")
    return out


def test_real_speech_is_kept(manifest: list[dict[str, Any]], speech_dir: Path) -> None:
    """Every shared clip (zh, en, far-field) at 16 kHz, as 8 kHz mu-law, and under pink
    line noise at 10 dB below its speech level: no segment is screened out."""
    import soxr

    bad = {}
    for item in manifest:
        clip = load_call(speech_dir / item["audio"]).channels[0]
        narrow = soxr.resample(clip, 16000, 8000).astype(np.float32)
        frames = clip[: len(clip) // 160 * 160].reshape(-1, 160)
        speech_db = 20 * np.log10(np.percentile(np.sqrt(np.mean(frames**2, axis=1)), 90))
        noise = render("noise-pink-20", len(clip) / 16000 + 0.1, 16000)[: len(clip)]
        noise *= 10 ** ((speech_db - 10 - (-20)) / 20)
        for name, audio, rate in (
            ("16k", clip, 16000),
            ("8k", narrow, 8000),
            ("noisy", np.clip(clip + noise, -1, 1).astype(np.float32), 16000),
        ):
            if r := _rejections(audio, rate):
                bad[f"{item['audio']} {name}"] = r
    assert not bad


def test_real_speech_mulaw_file_is_kept(
    manifest: list[dict[str, Any]], speech_dir: Path, tmp_path: Path
) -> None:
    import soxr

    for item in manifest:
        clip = load_call(speech_dir / item["audio"]).channels[0]
        f = tmp_path / "c.wav"
        sf.write(str(f), soxr.resample(clip, 16000, 8000), 8000, subtype="ULAW")
        segs, rejected = segments_of(f)
        assert segs and not rejected, item["audio"]


def test_generated_calls_are_kept(tmp_path: Path) -> None:
    from qa_pipeline.samples.generate import generate_samples

    for wav in generate_samples(tmp_path, ["perfect", "talk_over", "complaint_apology"]):
        segs, rejected = segments_of(wav)
        assert segs and not rejected, (wav.name, dict(rejected))


def test_a_flat_synthetic_voice_is_speech_not_a_tone(tmp_path: Path) -> None:
    """espeak-ng's 'steph' voice puts over 80 % of many frames' energy in two harmonics, as
    a tone does; its pitch still glides, which a tone's never does (the untuned corpus lost
    turns of this voice to the screen until the drift check)."""
    import os
    import shutil
    import subprocess

    import soxr

    from qa_pipeline import screen

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")
    wav = tmp_path / "steph.wav"
    subprocess.run(
        ["espeak-ng", "-v", "cmn-latn-pinyin+steph", "-s", "169", "-p", "67", "-w", str(wav)]
        + ["没有了，谢谢。"],
        check=True,
        env={**os.environ, "LANG": "C.UTF-8"},
    )
    x, rate = sf.read(str(wav), dtype="float32")
    x = soxr.resample(soxr.resample(x, rate, 8000), 8000, 16000).astype(np.float32)
    power = screen._frame_power(x, 16000)
    level = 10 * np.log10(power.sum(axis=1))
    tonal = screen._two_peak_share(power[level > level.max() - 20]) > screen.TONAL_FRAME_SHARE
    assert tonal.mean() >= 0.75  # tonal by the energy criterion alone
    assert nonspeech_reason(x, 16000, tonal_fraction=0.75, min_spread_db=1.2) is None
