"""The recorded-call path end to end on real speech placed in a dual-channel call."""

import json
from pathlib import Path
from typing import Any

import pytest
from audio_helpers import read_clip, write_call
from typer.testing import CliRunner

from qa_pipeline.evaluation import cer_counts
from qa_pipeline.messages import Role

pytestmark = pytest.mark.slow

TURNS = [  # (channel, start s, clip)
    (0, 0.5, "zh/funasr_asr_example_zh.wav"),
    (1, 7.0, "zh/funasr_consult_sample.wav"),
    (0, 14.0, "zh/paddlespeech_zh.wav"),
    (1, 20.0, "zh/aishell1_BAC009S0764W0121.wav"),
]


@pytest.fixture(scope="module")
def call_file(speech_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 kHz mu-law stereo call, agent on the left, customer on the right (simulated
    telephone audio made from the real 16 kHz clips)."""
    placements = [(ch, t, read_clip(speech_dir, name)) for ch, t, name in TURNS]
    path = tmp_path_factory.mktemp("calls") / "call-001.wav"
    write_call(path, placements, 27.0, rate=8000, subtype="ULAW")
    path.with_suffix(".json").write_text(
        json.dumps(
            {
                "call": {
                    "call_id": "call-001",
                    "started_at": "2026-11-23T14:05:00",
                    "direction": "inbound",
                    "agent_id": "1024",
                }
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def result(pipeline: Any, call_file: Path) -> Any:
    return pipeline.transcribe(call_file)


def test_turns_roles_and_text(result: Any, manifest: list[dict[str, Any]]) -> None:
    refs = {c["audio"]: c["text"] for c in manifest}
    utts = result.transcript.utterances
    assert [u.role for u in utts] == [Role.AGENT, Role.CUSTOMER, Role.AGENT, Role.CUSTOMER]
    for u, (ch, start, name) in zip(utts, TURNS, strict=True):
        assert u.channel == ch
        assert abs(u.start - start) < 1.2
        errors, n = cer_counts(refs[name], u.text)
        assert errors / n < 0.4, (u.text, refs[name])
        assert 0.0 < u.confidence <= 1.0
        assert u.level_dbfs is not None and -55 < u.level_dbfs < 0


def test_metadata_from_sidecar(result: Any) -> None:
    call = result.transcript.call
    assert call.call_id == "call-001"
    assert call.agent_id == "1024"
    assert call.started_at is not None and call.started_at.hour == 14
    assert call.channels == (Role.AGENT, Role.CUSTOMER)


def test_invariants(result: Any, pipeline: Any) -> None:
    t = result.transcript
    max_len = pipeline.config.vad.max_utterance_s
    assert [u.index for u in t.utterances] == list(range(len(t.utterances)))
    for ch in (0, 1):
        mine = [u for u in t.utterances if u.channel == ch]
        for a, b in zip(mine, mine[1:], strict=False):
            assert a.start <= b.start and a.end <= b.start  # monotonic, no overlap
    for u in t.utterances:
        assert 0.0 <= u.start < u.end <= t.duration + 1e-6
        assert u.end - u.start <= max_len + 1e-6
    assert result.stats.speech_seconds < result.stats.audio_seconds * 2


def test_same_call_twice_same_result(pipeline: Any, call_file: Path, result: Any) -> None:
    again = pipeline.transcribe(call_file)
    assert again.transcript.utterances == result.transcript.utterances


def test_cli_transcribe_json(call_file: Path) -> None:
    from qa_pipeline.cli import app

    res = CliRunner().invoke(app, ["transcribe", str(call_file), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["schema_version"] == "1.0"
    assert doc["kind"] == "transcript"
    assert doc["call"]["call_id"] == "call-001"
    assert len(doc["utterances"]) == 4
    for u in doc["utterances"]:
        assert {"role", "start", "end", "text", "confidence"} <= u.keys()
    assert doc["asr"]["model"] == "embedded:whisper-base"


def test_cli_error_names_file(tmp_path: Path) -> None:
    from qa_pipeline.cli import app

    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    res = CliRunner().invoke(app, ["transcribe", str(bad)])
    assert res.exit_code == 2
    assert "broken.wav" in res.output


def test_batch_of_files_skips_bad_one(
    pipeline: Any, call_file: Path, result: Any, tmp_path: Path
) -> None:
    from qa_pipeline.errors import AudioError

    bad = tmp_path / "truncated.wav"
    bad.write_bytes(call_file.read_bytes()[:5000])
    out = list(pipeline.transcribe_paths([call_file, bad, call_file], batch_files=2))
    assert [p for p, _ in out] == [call_file, bad, call_file]
    assert isinstance(out[1][1], AudioError) and "truncated" in str(out[1][1])
    for _, r in (out[0], out[2]):
        assert r.transcript.utterances == result.transcript.utterances


def test_store_keeps_scored_call_and_skips_asr_next_time(
    pipeline: Any, call_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa_pipeline.rules import load_pack
    from qa_pipeline.store import Store

    pack = load_pack()
    with Store(tmp_path / "qa.sqlite") as store:
        first = pipeline.score(call_file, pack=pack, store=store)
        assert not first.stats.cached

        def no_asr(*a: Any, **k: Any) -> Any:
            raise AssertionError("ASR ran for audio already transcribed with these settings")

        monkeypatch.setattr(pipeline.engine, "transcribe_many", no_asr)
        second = pipeline.score(call_file, pack=pack, store=store)
        assert second.stats.cached
        assert second.transcript.utterances == first.transcript.utterances
        assert second.scorecard == first.scorecard
        rows = store.results(f"scored:{pack.version}")
        assert [r["call_id"] for r in rows] == ["call-001"]
        assert rows[0]["score"] == first.scorecard.score
        assert store.transcript("call-001").utterances == first.transcript.utterances
        # the call keeps a reference to its audio: the file as scored, not redacted
        import soundfile as sf

        from qa_pipeline.store.recordings import get_recording

        rec = get_recording(store, "call-001")
        info = sf.info(str(call_file))
        assert rec is not None and rec.path == str(call_file.absolute()) and not rec.redacted
        assert (rec.sample_rate, rec.channels) == (info.samplerate, info.channels)
        assert rec.duration_s == pytest.approx(info.duration, abs=1e-3)
