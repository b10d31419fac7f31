"""The sample-call generator: layout, audio, sidecar and cache (espeak-ng + sox, no Whisper)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import yaml

from qa_pipeline.errors import ConfigError
from qa_pipeline.samples import generate as gen
from qa_pipeline.samples.generate import (
    SampleError,
    Scenario,
    generate_call,
    generate_samples,
    load_scenarios,
)

TOOLS_MISSING = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
needs_tools = pytest.mark.skipif(
    bool(TOOLS_MISSING),
    reason=f"{' and '.join(TOOLS_MISSING)} not installed (apt-get install -y espeak-ng sox)",
)

REQUIRED_IDS = {
    "perfect",
    "missing_greeting",
    "stonewalling",
    "slow_answer",
    "silent_hold",
    "polite_hold",
    "complaint_apology",
    "complaint_no_apology",
    "talk_over",
    "dismissed_suggestion",
    "i_dont_know",
    "over_promise",
    "no_closing",
    "demo",
}
TOLERANCE_S = 0.15
FRAME_S = 0.010


def _scenario(sid: str) -> Scenario:
    return next(s for s in load_scenarios() if s.id == sid)


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if TOOLS_MISSING:
        pytest.skip(f"{' and '.join(TOOLS_MISSING)} not installed (apt-get install espeak-ng sox)")
    out = tmp_path_factory.mktemp("samples")
    paths = generate_samples(out, ["perfect", "talk_over", "polite_hold"])
    return {p.stem: p for p in paths}


def _sidecar(wav: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(wav.with_suffix(".json").read_text(encoding="utf-8"))
    return doc


def _frame_db(channel: np.ndarray, rate: int) -> np.ndarray:
    n = int(rate * FRAME_S)
    frames = channel[: len(channel) // n * n].reshape(-1, n).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return np.asarray(20 * np.log10(np.maximum(rms, 1e-9)))


# -- scenarios file ----------------------------------------------------------------------


def test_scenarios_file_is_valid() -> None:
    raw = yaml.safe_load(gen.default_scenarios_path().read_text(encoding="utf-8"))
    ids = [s["id"] for s in raw]
    assert len(ids) == len(set(ids)), "scenario ids must be unique"
    assert set(ids) >= REQUIRED_IDS
    for sc in raw:
        assert sc["call"]["started_at"] and sc["call"]["direction"] in ("inbound", "outbound")
        assert sc["expect"] and set(sc["expect"].values()) <= {"fire", "ok"}
        for i, t in enumerate(sc["turns"]):
            assert t["role"] in ("agent", "customer"), (sc["id"], i)
            assert isinstance(t["text"], str) and t["text"].strip(), (sc["id"], i)
            assert ("at" in t) != ("gap" in t), f"{sc['id']} turn {i}: needs exactly one timing"
    # and the loader agrees
    assert [s.id for s in load_scenarios()] == ids


def test_scenario_rules_are_catalogue_ids() -> None:
    known = {
        "OPEN-ANSWER", "OPEN-GREET", "OPEN-TIME", "OPEN-HOLIDAY", "OPEN-IDENT", "OPEN-NAME",
        "OPEN-PURPOSE", "OUT-CONFIRM", "OUT-HOURS", "BAN-WEI", "BAN-POLICY", "BAN-DISMISS",
        "BAN-NO", "BAN-BLAME", "COURT-WORDS", "COURT-NIN", "APOLOGY-FIRST", "EMPATHY",
        "CLARIFY", "NO-INTERRUPT", "RESP-GAP", "HOLD-NOTICE", "DEAD-AIR", "OVER-PROMISE",
        "SOLUTION", "CONFIRM-SAT", "CLOSE-THANKS", "CLOSE-HANGUP", "DURATION", "PACE",
        "FIVE-VOICES", "EOAC",
    }  # fmt: skip
    for sc in load_scenarios():
        assert set(sc.expect) <= known, sc.id


def test_invalid_scenarios_report_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            [
                {"id": "a", "call": {}, "turns": [{"role": "agent", "text": "您好"}]},
                {"id": "a", "call": {}, "turns": [{"role": "agent", "text": "您好", "at": 1}]},
                {
                    "id": "b",
                    "turns": [
                        {"role": "boss", "text": "", "at": 1},
                        {"role": "agent", "text": "好"},
                    ],
                    "expect": {"OPEN-GREET": "maybe"},
                },
            ],
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as e:
        load_scenarios(bad)
    msg = str(e.value)
    assert "duplicate id" in msg
    assert "role must be agent or customer" in msg
    assert "'text' must be non-empty" in msg
    assert "needs timing" in msg
    assert "'expect'" in msg


def test_layout_gaps_overlaps_and_same_speaker_clash() -> None:
    sc = _scenario("talk_over")
    durations = [2.0] * len(sc.turns)
    placed = gen.layout(sc, durations)
    assert placed[0].start == pytest.approx(1.0)
    assert placed[1].start == pytest.approx(placed[0].end + 0.8)
    assert placed[2].start == pytest.approx(placed[1].end - 2.5)  # negative gap: talk-over
    # the same speaker cannot talk over themself
    self_clash = (*sc.turns[:2], replace(sc.turns[2], role=sc.turns[1].role))
    with pytest.raises(SampleError, match="same speaker"):
        gen.layout(replace(sc, turns=self_clash), [2.0, 2.0, 2.0])


def test_missing_tools_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    gen.check_tools.cache_clear()
    monkeypatch.setattr(gen.shutil, "which", lambda _name: None)
    try:
        with pytest.raises(SampleError, match=r"apt-get install espeak-ng.*apt-get install sox"):
            gen.check_tools()
    finally:
        gen.check_tools.cache_clear()


# -- rendered calls ----------------------------------------------------------------------


@needs_tools
def test_call_is_dual_channel_8k_ulaw_matching_sidecar(calls: dict[str, Path]) -> None:
    for wav in calls.values():
        info = sf.info(wav)
        side = _sidecar(wav)
        assert info.channels == 2
        assert info.samplerate == 8000
        assert info.subtype == "ULAW"
        assert info.frames / info.samplerate == pytest.approx(side["audio"]["duration"], abs=1e-3)
        assert side["call"]["call_id"] == wav.stem == side["scenario"]
        assert side["call"]["metadata"]["scenario"] == wav.stem
        assert side["turns"][-1]["end"] <= side["audio"]["duration"]
        assert side["expect"]


@needs_tools
def test_pipeline_reads_the_sidecar(calls: dict[str, Path]) -> None:
    from qa_pipeline.callinfo import read_call_info
    from qa_pipeline.messages import Direction

    info = read_call_info(calls["perfect"])
    assert info.call_id == "perfect"
    assert info.started_at is not None and 12 <= info.started_at.hour < 18
    assert info.direction is Direction.INBOUND
    assert ("scenario", "perfect") in info.metadata


@needs_tools
def test_turn_times_are_monotonic_per_channel(calls: dict[str, Path]) -> None:
    for wav in calls.values():
        turns = _sidecar(wav)["turns"]
        for ch in (0, 1):
            mine = [t for t in turns if t["channel"] == ch]
            assert mine, f"{wav.stem}: channel {ch} has no turns"
            for a, b in zip(mine, mine[1:], strict=False):
                assert a["start"] < a["end"] <= b["start"] < b["end"]
            assert all(t["role"] == ("agent" if ch == 0 else "customer") for t in mine)


@needs_tools
def test_energy_is_where_the_sidecar_says(calls: dict[str, Path]) -> None:
    for wav in calls.values():
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
        turns = _sidecar(wav)["turns"]
        for ch in (0, 1):
            db = _frame_db(audio[:, ch], rate)
            t = (np.arange(len(db)) + 0.5) * FRAME_S
            loud = db > -45.0
            mine = [x for x in turns if x["channel"] == ch]
            inside = np.zeros(len(db), dtype=bool)
            near = np.zeros(len(db), dtype=bool)
            for x in mine:
                span = (t >= x["start"]) & (t <= x["end"])
                inside |= span
                near |= (t >= x["start"] - TOLERANCE_S) & (t <= x["end"] + TOLERANCE_S)
                voiced = np.flatnonzero(loud & span)
                assert voiced.size, f"{wav.stem} ch{ch}: no speech in turn {x['text']}"
                assert t[voiced[0]] - x["start"] <= TOLERANCE_S, (wav.stem, x["text"])
                assert x["end"] - t[voiced[-1]] <= TOLERANCE_S, (wav.stem, x["text"])
                assert loud[span].mean() > 0.5, f"{wav.stem}: turn mostly quiet: {x['text']}"
            assert not loud[~near].any(), f"{wav.stem} ch{ch}: energy outside the turns"
            # line noise, not digital silence, between turns
            assert np.all(db[~near] > -80.0) and np.all(db[~near] < -50.0)


@needs_tools
def test_talk_over_really_overlaps(calls: dict[str, Path]) -> None:
    wav = calls["talk_over"]
    turns = _sidecar(wav)["turns"]
    agent = [t for t in turns if t["role"] == "agent"]
    cust = [t for t in turns if t["role"] == "customer"]
    overlaps = [
        min(a["end"], c["end"]) - a["start"]
        for a in agent
        for c in cust
        if c["start"] < a["start"] < c["end"]
    ]
    assert len(overlaps) >= 2 and min(overlaps) >= 1.0
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    both = (_frame_db(audio[:, 0], rate) > -45) & (_frame_db(audio[:, 1], rate) > -45)
    assert both.sum() * FRAME_S >= 1.0, "both channels should be speaking at once"


@needs_tools
def test_polite_hold_has_a_long_silence(calls: dict[str, Path]) -> None:
    turns = _sidecar(calls["polite_hold"])["turns"]
    gaps = [b["start"] - a["end"] for a, b in zip(turns, turns[1:], strict=False)]
    assert max(gaps) >= 20.0 - 1e-6
    hold = gaps.index(max(gaps))
    assert "请您稍等" in turns[hold]["text"] and "让您久等了" in turns[hold + 1]["text"]


@needs_tools
def test_cache_skips_regeneration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sc = _scenario("i_dont_know")
    wav = generate_call(sc, tmp_path)
    side = wav.with_suffix(".json")
    before = (wav.stat().st_mtime_ns, side.stat().st_mtime_ns)
    old_hash = _sidecar(wav)["generator"]["inputs_sha256"]

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("re-rendered although nothing changed")

    monkeypatch.setattr(gen, "render_speech", boom)
    assert generate_call(sc, tmp_path) == wav
    assert generate_samples(tmp_path, ["i_dont_know"]) == [wav]
    assert (wav.stat().st_mtime_ns, side.stat().st_mtime_ns) == before
    monkeypatch.undo()

    # a changed scenario (or a forced run) is rendered again
    changed = replace(sc, turns=(*sc.turns[:-1], replace(sc.turns[-1], text="谢谢，再见。")))
    changed = replace(changed, source=None)
    generate_call(changed, tmp_path)
    assert _sidecar(wav)["turns"][-1]["text"] == "谢谢，再见。"
    assert _sidecar(wav)["generator"]["inputs_sha256"] != old_hash
    os.utime(wav, ns=before)
    generate_call(sc, tmp_path, force=True)
    assert wav.stat().st_mtime_ns != before[0]


@needs_tools
def test_pcm16_at_16k(tmp_path: Path) -> None:
    wav = generate_call("no_closing", tmp_path, rate=16000, encoding="pcm16")
    info = sf.info(wav)
    assert (info.channels, info.samplerate, info.subtype) == (2, 16000, "PCM_16")
    assert _sidecar(wav)["audio"]["sample_rate"] == 16000


def test_unknown_scenario_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(SampleError, match="no scenario 'nope'"):
        generate_samples(tmp_path, ["nope"])
    with pytest.raises(SampleError, match="encoding"):
        generate_call("perfect", tmp_path, encoding="mp3")


@needs_tools
def test_samples_command_prints_a_table(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from qa_pipeline.samples.cli import samples_command

    app = typer.Typer()
    app.command()(samples_command)
    app.command("other")(lambda: None)  # force sub-command mode
    res = CliRunner().invoke(
        app, ["samples-command", "--outdir", str(tmp_path), "--scenario", "wei_opening"]
    )
    assert res.exit_code == 0, res.output
    assert "wei_opening" in res.output and (tmp_path / "wei_opening.wav").is_file()
    res = CliRunner().invoke(app, ["samples-command", "--outdir", str(tmp_path), "-s", "zzz"])
    assert res.exit_code == 2
