"""VAD keeps the words: on generated calls (the sidecar has each turn's real speech
timing) the speech inside each utterance starts and ends within 0.15 s of the script;
quiet turns and far-field clips do not lose their start.

An utterance's ``start``/``end`` include ``vad.pad_ms`` of audio either side of the
detected speech (clamped at the start of the stream and at the previous segment's end),
so the speech inside it is ``[start + pad, end - pad]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from qa_pipeline.audio import load_call
from qa_pipeline.config import load_config
from qa_pipeline.pipeline import Pipeline

TOLERANCE_S = 0.15
CFG = load_config()
PAD_S = CFG.vad.pad_ms / 1000


def inner(seg: Any) -> tuple[float, float]:
    """The detected speech inside a segment: its padding excluded."""
    return (seg.start + PAD_S if seg.start > 0 else 0.0), seg.end - PAD_S


def segments(path: Path) -> list[Any]:
    return Pipeline(CFG).segment(load_call(path), path.stem)


def offsets(wav: Path) -> list[tuple[float, str]]:
    """(offset in seconds, description) for every utterance start/end and uncovered turn."""
    turns = json.loads(wav.with_suffix(".json").read_text(encoding="utf-8"))["turns"]
    segs = segments(wav)
    out = []
    for s in segs:
        mine = [
            t
            for t in turns
            if t["channel"] == s.channel and t["start"] < s.end and t["end"] > s.start
        ]
        assert mine, f"{wav.stem}: segment {s.start}-{s.end} on channel {s.channel} holds no turn"
        a, b = inner(s)
        out.append(
            (
                abs(a - mine[0]["start"]),
                f"{wav.stem} ch{s.channel} start {a:.2f} vs {mine[0]['start']:.2f}",
            )
        )
        out.append(
            (
                abs(b - mine[-1]["end"]),
                f"{wav.stem} ch{s.channel} end {b:.2f} vs {mine[-1]['end']:.2f}",
            )
        )
    for t in turns:
        covered = [
            s
            for s in segs
            if s.channel == t["channel"] and s.start < t["end"] and s.end > t["start"]
        ]
        assert covered, f"{wav.stem}: turn {t['text']!r} at {t['start']}s found no segment"
    return out


def test_generated_calls_speech_within_tolerance(tmp_path: Path) -> None:
    from qa_pipeline.samples.generate import generate_samples

    ids = ["demo", "talk_over", "polite_hold", "wei_opening", "stonewalling"]
    found = [o for wav in generate_samples(tmp_path, ids) for o in offsets(wav)]
    worst = max(found)
    print(f"VAD timing: {len(found)} utterance edges, worst offset {worst[0]:.3f} s ({worst[1]})")
    assert worst[0] <= TOLERANCE_S, worst


@pytest.mark.parametrize("level_dbfs", [-20.0, -40.0])
def test_quiet_turn_keeps_its_start(level_dbfs: float, tmp_path: Path) -> None:
    """A turn rendered 20 dB below the generator's agent level (8 kHz mu-law, the
    generator's -60 dBFS line noise) is found whole."""
    from qa_pipeline.samples.generate import NOISE_DBFS, Voice, render_speech

    rate = 8000
    rng = np.random.default_rng(3)
    for k, text in enumerate(["您好，华夏客服中心，请问有什么可以帮您？", "好的，请稍等。"]):
        clip = render_speech(text, Voice("f3", 140, 50, level_dbfs=level_dbfs), rate)
        start = 1.5
        x = rng.normal(0, 10 ** (NOISE_DBFS / 20), int((start + len(clip) / rate + 2.0) * rate))
        i = int(start * rate)
        x[i : i + len(clip)] += clip
        f = tmp_path / f"quiet{k}.wav"
        sf.write(str(f), x.astype(np.float32), rate, subtype="ULAW")
        segs = segments(f)
        assert len(segs) == 1, [(s.start, s.end) for s in segs]
        a, b = inner(segs[0])
        print(
            f"{level_dbfs} dBFS {text}: start {a - start:+.3f} s, end {b - start - len(clip) / rate:+.3f} s"
        )
        assert abs(a - start) <= TOLERANCE_S
        assert abs(b - (start + len(clip) / rate)) <= TOLERANCE_S


def test_far_field_clips_keep_their_start(manifest: list[dict[str, Any]], speech_dir: Path) -> None:
    """The far-field clips: the first segment begins no later than 0.15 s after the first
    30 ms frame within 15 dB of the clip's loud level (its 90th percentile frame)."""
    far = [m["audio"] for m in manifest if "far" in m["audio"]]
    assert far
    for name in far:
        x = load_call(speech_dir / name).channels[0]
        frames = x[: len(x) // 480 * 480].reshape(-1, 480)
        db = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-9)
        onset = int(np.flatnonzero(db > np.percentile(db, 90) - 15)[0]) * 0.03
        segs = segments(speech_dir / name)
        assert segs, name
        assert inner(segs[0])[0] <= onset + TOLERANCE_S, (name, segs[0].start, onset)
