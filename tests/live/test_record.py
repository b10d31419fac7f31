"""``live.record``: a call replayed into the real live service (replay source, real VAD,
rules, sinks; the decoder a fake that hears a mobile number in every customer turn, no
model) is recorded to disk: one file, both legs at the source rate, the call's length, a
store row, the dashboard told; the customer turn that held the number is beeped in the
kept file (the whole turn: without a Whisper engine there is no word timing) and every
other sample is the call's own. A raw partial file left by a crash is deleted at start.

The word-timed variant with the real model (only the number's words beeped, the kept file
decoded again recovers no four digits of it) is ``test_record_whisper.py`` (heavy)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from qa_pipeline.audio import load_call
from qa_pipeline.messages import Role
from qa_pipeline.privacy.audio import DEFAULT_PAD_S
from qa_pipeline.testing import FakeDecoder, Recorder, wait_for

from .conftest import ANSWER_CLIP, BAN_CLIP

RATE = 16000
NUMBER = "13957246801"


def _call_file(speech_dir: Path, path: Path) -> np.ndarray:
    """9 s, two channels at 16 kHz: the agent at 0.3 s, the customer at 5 s."""
    agent = load_call(speech_dir / BAN_CLIP).channels[0]
    customer = load_call(speech_dir / ANSWER_CLIP).channels[0]
    rng = np.random.default_rng(5)
    out = (rng.standard_normal((9 * RATE, 2)) * 1e-3).astype(np.float32)
    out[int(0.3 * RATE) : int(0.3 * RATE) + len(agent), 0] += agent
    out[5 * RATE : 5 * RATE + len(customer), 1] += customer
    sf.write(path, np.clip(out, -1, 1), RATE, subtype="PCM_16")
    return sf.read(path, dtype="int16", always_2d=True)[0]


def _service(tmp_path: Path, wav: Path, sinks: list[tuple[str, Any]], monkeypatch: Any) -> Any:
    from prometheus_client import CollectorRegistry

    from qa_pipeline.live import service
    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.sinks import FanOut

    decoder = FakeDecoder(
        lambda s, k: "您好，请问有什么可以帮您" if s.role is Role.AGENT else f"我的手机号是{NUMBER}"
    )
    monkeypatch.setattr(service, "LiveDecoder", decoder)
    cfg = load_serve_config(
        None,
        {
            "sources": [{"type": "replay", "files": [str(wav)], "speed": 30.0}],
            "live": {
                "warmup": False,
                "record": {"enabled": True, "dir": str(tmp_path / "rec")},
            },
            "retention": {"store": str(tmp_path / "store.sqlite"), "interval_s": None},
        },
    )
    engine: Any = type("E", (), {"config": type("C", (), {"workers": 1, "beam_size": 1})})()
    return service.LiveService(
        cfg, engine=engine, sinks=FanOut(sinks), metrics=LiveMetrics(CollectorRegistry())
    )


def test_a_replayed_call_is_recorded_redacted(
    speech_dir: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    from qa_pipeline.dashboard import DashboardSink, DashboardState
    from qa_pipeline.store import Store
    from qa_pipeline.store.recordings import get_recording, recording_path

    wav = tmp_path / "call-rec-1.wav"
    original = _call_file(speech_dir, wav)
    rec_dir = tmp_path / "rec"
    rec_dir.mkdir()
    stale = rec_dir / "crashed-call.wav.partial"  # raw audio a crash left behind
    stale.write_bytes(b"RIFF....WAVE")
    mem = Recorder()
    state = DashboardState()
    svc = _service(
        tmp_path, wav, [("memory", mem), ("dashboard", DashboardSink(state))], monkeypatch
    )

    async def run() -> None:
        await svc.start()
        assert not stale.exists()  # deleted before any call was taken
        await asyncio.wait_for(svc.sources[0].done.wait(), 30)
        await wait_for(lambda: svc.recordings, 30)
        await svc.shutdown()

    asyncio.run(run())
    (kept,) = svc.recordings
    call_id = kept.call_id
    path = recording_path(rec_dir, call_id, "wav")
    assert kept.path == path and path.is_file()
    assert sorted(p.name for p in rec_dir.iterdir()) == [path.name]  # no raw file left
    info = sf.info(str(path))
    assert (info.channels, info.samplerate, info.subtype) == (2, RATE, "PCM_16")
    assert info.frames == len(original)  # the call's length, to the sample
    with Store(tmp_path / "store.sqlite") as db:
        row = get_recording(db, call_id)
    assert row is not None and row.redacted and row.path == str(path.absolute())
    assert (row.sample_rate, row.channels, row.duration_s) == (RATE, 2, 9.0)
    detail = state.detail(call_id)
    assert detail is not None and detail["call"]["audio"] is True

    # the customer's turn held the number (masked in its text); its span is beeped
    utts = [e.payload for _, e in mem.of("utterance", call_id)]
    held = [u for u in utts if u["channel"] == 1]
    assert held and all(NUMBER not in u["text"] for u in held), held
    assert kept.how == "utterance" and {s.channel for s in kept.spans} == {1}
    kept_samples = sf.read(path, dtype="int16", always_2d=True)[0]
    assert np.array_equal(kept_samples[:, 0], original[:, 0])  # the agent's leg untouched
    masked = np.zeros(len(original), dtype=bool)
    for u in held:
        a = max(0, int((u["start"] - DEFAULT_PAD_S) * RATE) - 1)
        masked[a : int(np.ceil((u["end"] + DEFAULT_PAD_S) * RATE)) + 1] = True
    assert 0 < masked.sum() < len(masked) / 2
    assert np.array_equal(kept_samples[~masked, 1], original[~masked, 1])
    inside = (u_ := held[0])["start"], u_["end"]
    core = slice(int(inside[0] * RATE), int(inside[1] * RATE))
    assert not np.array_equal(kept_samples[core, 1], original[core, 1])
    # a beep: one tone, not the customer's voice
    spectrum = np.abs(np.fft.rfft(kept_samples[core, 1].astype(np.float64)))
    peak_hz = np.argmax(spectrum) * RATE / (core.stop - core.start)
    assert abs(peak_hz - 1000) < 20, peak_hz


def test_recording_is_off_by_default(tmp_path: Path) -> None:
    from qa_pipeline.live.config import load_serve_config

    cfg = load_serve_config(None, {"sources": [{"type": "replay", "files": []}]})
    assert cfg.live.record.enabled is False


@pytest.mark.parametrize("late_s", [0.0, 1.5])
def test_legs_are_aligned_on_the_call_clock(tmp_path: Path, late_s: float) -> None:
    """Chunks of both legs written as they come (one leg joining late, a gap in the
    other): each sample lands at its time on the call clock."""
    from qa_pipeline.live.recorder import CallRecording
    from qa_pipeline.messages import AudioChunk, CallInfo

    call = CallInfo(call_id="align", channels=(Role.AGENT, Role.CUSTOMER))
    rec = CallRecording(tmp_path, call, 8000)
    step = 160
    ramp = [np.full(step, (i % 50) / 100, dtype=np.float32) for i in range(200)]  # 4 s
    for i, chunk in enumerate(ramp):
        t = i * step / 8000
        if not 1.0 <= t < 1.5:  # the agent's leg loses half a second
            rec.write(AudioChunk("align", 0, Role.AGENT, t, 8000, chunk))
        if t >= late_s:
            rec.write(AudioChunk("align", 1, Role.CUSTOMER, t, 8000, chunk))
    rec.close_raw()
    got = sf.read(rec.partial, dtype="float32", always_2d=True)[0]
    want = np.concatenate(ramp)
    assert len(got) == len(want)
    lost = slice(8000, 12000)
    assert np.allclose(got[:8000, 0], want[:8000], atol=1e-4)
    assert np.all(got[lost, 0] == 0) and np.allclose(got[12000:, 0], want[12000:], atol=1e-4)
    late = int(late_s * 8000)
    assert np.all(got[:late, 1] == 0) and np.allclose(got[late:, 1], want[late:], atol=1e-4)


def test_a_recording_that_fails_does_not_fail_the_call(
    speech_dir: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """A write that raises (a full disk) stops the recording, deletes its partial file and
    counts the error; the call is scored as usual and nothing is kept."""
    from qa_pipeline.live.recorder import CallRecording

    wav = tmp_path / "call-rec-2.wav"
    _call_file(speech_dir, wav)
    writes = []

    def full_disk(self: CallRecording, chunk: Any) -> None:
        writes.append(chunk.start)
        if len(writes) > 50:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(CallRecording, "write", full_disk)
    mem = Recorder()
    svc = _service(tmp_path, wav, [("memory", mem)], monkeypatch)

    async def run() -> None:
        await svc.start()
        await asyncio.wait_for(svc.sources[0].done.wait(), 30)
        await wait_for(lambda: svc.scored, 30)
        await svc.shutdown()

    asyncio.run(run())
    (card,) = [e.payload for _, e in mem.of("scorecard")]
    assert card["call_id"] == "call-rec-2" and len(writes) == 51
    assert list((tmp_path / "rec").iterdir()) == [] and svc.recordings == []


def test_flac_and_a_call_without_personal_data(tmp_path: Path) -> None:
    """FLAC is written as WAV is; a call whose turns held no personal data is kept as
    recorded (nothing masked), and a call with no audio keeps nothing."""
    from qa_pipeline.live.recorder import CallRecording
    from qa_pipeline.messages import AudioChunk, CallInfo, Utterance

    call = CallInfo(call_id="plain/call 1", channels=(Role.AGENT, Role.CUSTOMER))
    rec = CallRecording(tmp_path, call, 8000, "flac")
    assert rec.path.name.endswith(".flac") and "/" not in rec.path.name
    tone = (0.3 * np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000)).astype(np.float32)
    for ch in (0, 1):
        rec.write(AudioChunk(call.call_id, ch, call.channels[ch], 0.0, 8000, tone))
    rec.utterance(Utterance(call.call_id, 0, 0, Role.AGENT, 0.1, 0.9, "您好", "您好", 0.9, "zh"))
    kept = asyncio.run(rec.finish(None, None))
    assert kept is not None and kept.how == "none" and kept.spans == ()
    data, rate = sf.read(kept.path, dtype="float32", always_2d=True)
    assert (rate, data.shape) == (8000, (8000, 2)) and sf.info(str(kept.path)).format == "FLAC"
    assert np.allclose(data[:, 1], tone, atol=1e-4)
    assert not rec.partial.exists()
    empty = CallRecording(tmp_path, CallInfo(call_id="silent"), 8000)
    assert asyncio.run(empty.finish(None, None)) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [kept.path.name]


@pytest.mark.parametrize(("mode", "rate"), [("beep", 8000), ("beep", 44100), ("silence", 8000)])
def test_streamed_redaction_is_write_redacted_block_by_block(
    tmp_path: Path, mode: str, rate: int
) -> None:
    """The recorder masks a kept file a block at a time (a 4-hour call is never in memory):
    the samples are those ``write_redacted`` gives for the whole file, spans across block
    ends included."""
    from qa_pipeline.audio_redact import MaskedSpan, write_redacted
    from qa_pipeline.live.recorder import stream_redacted

    src = tmp_path / "raw.wav"
    rng = np.random.default_rng(7)
    sf.write(src, rng.standard_normal((rate * 20, 2)) * 0.1, rate, subtype="PCM_16")
    spans = [
        MaskedSpan("mobile", 1, 0.0, 0.4, "words", 0),  # at the very start
        MaskedSpan("mobile", 1, 2.9, 3.2, "words", 1),  # across the 3 s block end
        MaskedSpan("id_card", 0, 5.95, 6.05, "words", 2),  # its pad across the 6 s end
        MaskedSpan("mobile", 1, 11.0, 14.5, "utterance", 3),  # longer than a block
        MaskedSpan("mobile", 0, 19.8, 20.0, "words", 4),  # at the end
    ]
    whole, streamed = tmp_path / "whole.wav", tmp_path / "streamed.wav"
    write_redacted(src, whole, spans, mode=mode)  # type: ignore[arg-type]
    stream_redacted(src, streamed, spans, mode=mode, block_s=3.0)  # type: ignore[arg-type]
    a = sf.read(whole, dtype="int16")[0]
    b = sf.read(streamed, dtype="int16")[0]
    raw = sf.read(src, dtype="int16")[0]
    assert a.shape == b.shape == raw.shape and not np.array_equal(a, raw)
    assert np.array_equal(a, b)


def test_word_spans_mask_only_their_words(
    speech_dir: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """With word timing (a finder standing in for the Whisper one: it places the number in
    the second half of the turn) only that stretch is beeped; the rest of the turn, and the
    call, keep their samples. The finder runs on an ASR slot with the turns that held the
    number."""
    import threading

    from qa_pipeline.audio_redact import MaskedSpan, SpanSearch
    from qa_pipeline.live import service

    asked: list[tuple[str, list[int]]] = []

    def finder(engine: Any) -> Any:
        def find(path: Path, utterances: list[Any]) -> SpanSearch:
            asked.append((threading.current_thread().name, [u.index for u in utterances]))
            assert path.name.endswith(".wav.partial") and path.is_file()
            return SpanSearch(
                tuple(
                    MaskedSpan(
                        "mobile", u.channel, u.start + 0.5 * u.duration, u.end, "words", u.index
                    )
                    for u in utterances
                ),
                len(utterances),
                0.0,
            )

        return find

    monkeypatch.setattr(service, "whisper_spans", finder)
    wav = tmp_path / "call-rec-3.wav"
    original = _call_file(speech_dir, wav)
    mem = Recorder()
    svc = _service(tmp_path, wav, [("memory", mem)], monkeypatch)

    async def run() -> None:
        await svc.start()
        await asyncio.wait_for(svc.sources[0].done.wait(), 30)
        await wait_for(lambda: svc.recordings, 30)
        await svc.shutdown()

    asyncio.run(run())
    (kept,) = svc.recordings
    held = [e.payload for _, e in mem.of("utterance", kept.call_id) if e.payload["channel"] == 1]
    assert kept.how == "words" and len(asked) == 1
    assert asked[0][1] == [u["index"] for u in held] and asked[0][0] != "MainThread"
    got = sf.read(kept.path, dtype="int16", always_2d=True)[0]
    masked = np.zeros(len(original), dtype=bool)
    for s in kept.spans:
        masked[
            max(0, int((s.start - DEFAULT_PAD_S) * RATE) - 1) : int((s.end + DEFAULT_PAD_S) * RATE)
            + 2
        ] = True
    assert np.array_equal(got[~masked, 1], original[~masked, 1])
    assert np.array_equal(got[:, 0], original[:, 0])
    for u in held:  # the first half of each turn (less the pad) is the customer's voice
        half = u["start"] + 0.5 * (u["end"] - u["start"])
        first = slice(int(u["start"] * RATE), int((half - DEFAULT_PAD_S - 0.02) * RATE))
        assert first.stop - first.start > 0.3 * RATE
        assert not masked[first].any() and np.array_equal(got[first, 1], original[first, 1])
        words = slice(int((half + 0.05) * RATE), int(u["end"] * RATE))
        assert not np.array_equal(got[words, 1], original[words, 1])
