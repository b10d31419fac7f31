"""The transcript store: round trip, the ASR cache, Kafka import, recordings that fail."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from qa_pipeline.config import load_config
from qa_pipeline.messages import replace as struct_replace
from qa_pipeline.pipeline import Pipeline
from qa_pipeline.rescore import RescoreOptions, rescore
from qa_pipeline.rescore.sources import read_kafka_transcripts
from qa_pipeline.sinks.base import EventFactory, with_session
from qa_pipeline.store import Store, doc_key, settings_hash, transcript_settings
from qa_pipeline.transcript import transcript_to_dict

from .conftest import CALLS, FakeEngine
from .synth import make_call


def test_store_round_trip(store_url: str) -> None:
    import random

    t = make_call(3, random.Random(1))
    doc = transcript_to_dict(t)
    with Store(store_url) as st:
        sh = st.put_settings({"asr": {"model": "x"}})
        stored = st.put_transcript(t, audio_sha="abc", settings_hash_=sh)
        assert stored.call_id == t.call.call_id
        assert st.transcript(t.call.call_id) == t
        assert st.transcript_doc(t.call.call_id) == doc
        assert st.has_transcript("abc", sh) and not st.has_transcript("abc", "other")
        assert st.get_settings(sh) == {"asr": {"model": "x"}}
        # new metadata for the same recording: no new transcript, the call row changes
        call = dict(doc["call"], agent_id="B7", call_id="renamed")
        st.put_call(call, audio_sha="abc", settings_hash_=sh)
        st.db.commit()
        renamed = st.transcript("renamed")
        assert renamed is not None and renamed.call.agent_id == "B7"
        assert [u.text for u in renamed.utterances] == [u.text for u in t.utterances]
        assert st.db.execute("SELECT count(*) FROM transcripts").fetchone()[0] == 1


def test_settings_hash_from_config_alone() -> None:
    a = load_config()
    b = load_config(overrides={"asr": {"beam_size": 1}})
    c = load_config(overrides={"vad": {"aggressiveness": 3}})
    ha, hb, hc = (settings_hash(transcript_settings(x)) for x in (a, b, c))
    assert len({ha, hb, hc}) == 3
    assert settings_hash(transcript_settings(load_config())) == ha


def test_settings_hash_covers_the_encoder_window() -> None:
    def asr(**kw: Any) -> dict[str, Any]:
        return transcript_settings(load_config(overrides={"asr": kw}))["asr"]

    full = asr(window="full")
    f10 = asr(window="fitted", min_window_seconds=10)
    f15 = asr(window="fitted", min_window_seconds=15)
    f30 = asr(window="fitted", min_window_seconds=30)
    assert f10["window"] == "fitted" and f10["min_window_seconds"] == 10.0
    # full window: the key has no window entries, so transcripts stored before the option
    # existed (all made with the full window) stay valid; min_window_seconds is irrelevant
    assert "window" not in full and "min_window_seconds" not in full
    assert asr(window="full", min_window_seconds=10) == full
    hashes = {settings_hash({"asr": s}) for s in (full, f10, f15, f30)}
    assert len(hashes) == 4
    assert transcript_settings(load_config())["asr"] == f30  # the default


def test_cache_hit_skips_asr_and_other_settings_miss(
    calls_dir: Path, fake_pipeline: tuple[Pipeline, FakeEngine], tmp_path: Path, store_url: str
) -> None:
    pipe, eng = fake_pipeline
    store = store_url
    opts = RescoreOptions(inputs=[calls_dir], store=store, out=tmp_path / "o1", progress=False)
    first = rescore(opts, pipeline=pipe)
    assert first.transcribed == len(CALLS) and first.cached == 0 and not first.errors
    assert eng.calls >= 1
    decoded = eng.segments

    # same audio, same settings: rules only, the engine is never asked
    eng.calls = 0
    again = rescore(
        RescoreOptions(inputs=[calls_dir], store=store, out=tmp_path / "o2", progress=False),
        pipeline=pipe,
    )
    assert eng.calls == 0 and again.transcribed == 0 and again.cached == len(CALLS)
    # same audio copied elsewhere under another name: still a cache hit (content hash)
    other = tmp_path / "copy"
    other.mkdir()
    shutil.copy(calls_dir / "rs-call-1.wav", other / "renamed.wav")
    third = rescore(
        RescoreOptions(inputs=[other], store=store, out=tmp_path / "o3", progress=False),
        pipeline=pipe,
    )
    assert eng.calls == 0 and third.cached == 1
    with Store(store) as st:
        t = st.transcript("renamed")
        assert t is not None and t.call.source and t.call.source.endswith("renamed.wav")

    # other ASR settings: a miss, transcribed again
    cfg = load_config(overrides={"asr": {"beam_size": 1}})
    eng2 = FakeEngine(cfg)
    fourth = rescore(
        RescoreOptions(inputs=[calls_dir], store=store, out=tmp_path / "o4", progress=False),
        pipeline=Pipeline(cfg, engine=eng2),  # type: ignore[arg-type]
    )
    assert fourth.transcribed == len(CALLS) and eng2.segments == decoded
    with Store(store) as st:
        assert st.db.execute("SELECT count(*) FROM transcripts").fetchone()[0] == 2 * len(CALLS)


def test_unreadable_recording_is_reported_and_skipped(
    calls_dir: Path, fake_pipeline: tuple[Pipeline, FakeEngine], tmp_path: Path, store_url: str
) -> None:
    pipe, _ = fake_pipeline
    d = tmp_path / "calls"
    shutil.copytree(calls_dir, d)
    (d / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (d / "sub").mkdir()
    (d / "sub" / "truncated.flac").write_bytes((d / "rs-call-1.wav").read_bytes()[:3000])
    out = tmp_path / "out"
    s = rescore(RescoreOptions(inputs=[d], store=store_url, out=out, progress=False),
                pipeline=pipe)  # fmt: skip
    assert {e.call_id for e in s.errors} == {"broken", "truncated"}
    assert all(e.message for e in s.errors)
    assert s.transcribed == len(CALLS) and s.calls == len(CALLS) + 2
    rows = {
        r["call_id"]: r
        for r in map(json.loads, (out / "results.jsonl").read_text(encoding="utf-8").splitlines())
    }
    assert rows["broken"]["status"] == "error" and "broken.wav" in rows["broken"]["error"]
    assert all(rows[c]["status"] == "ok" for c in CALLS)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "broken" in html and "Unreadable" in html


class _Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset = offset
        self.value = value


class FakeConsumer:
    """The part of kafka.KafkaConsumer the reader uses, over an in-memory partition."""

    def __init__(self, records: list[bytes], **kw: Any) -> None:
        self.records = records
        self.pos = 0
        self.kw = kw

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, tps: list[Any]) -> None:
        self.tps = tps

    def seek_to_beginning(self, *tps: Any) -> None:
        self.pos = 0

    def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tps[0]: len(self.records)}

    def position(self, tp: Any) -> int:
        return self.pos

    def poll(self, timeout_ms: int = 0, max_records: int = 500) -> dict[Any, list[_Rec]]:
        part = self.records[self.pos : self.pos + 3]
        recs = [_Rec(self.pos + i, v) for i, v in enumerate(part)]
        self.pos += len(part)
        return {self.tps[0]: recs} if recs else {}

    def close(self) -> None:
        pass


def test_kafka_transcripts_topic_is_read_deduplicated_and_scored(
    tmp_path: Path, store_url: str
) -> None:
    import random

    rng = random.Random(2)
    calls = [replace(t, call=with_session(t.call)) for t in (make_call(i, rng) for i in range(4))]
    records: list[bytes] = []
    for t in calls:
        f = EventFactory.for_call(t.call)
        records.append(f.utterance(t.utterances[0]).to_json())  # another kind: ignored
        ev = f.transcript(t)
        records.append(ev.to_json())
        records.append(ev.to_json())  # delivered twice (at least once)
    records.append(b"not json")

    docs, counts = read_kafka_transcripts(
        "localhost:9092", "qa.transcripts",
        consumer_factory=lambda **kw: FakeConsumer(records, **kw),
    )  # fmt: skip
    assert [d["call"]["call_id"] for d in docs] == sorted(t.call.call_id for t in calls)
    assert counts["duplicates"] == 4 and counts["bad"] == 1 and counts["other_kinds"] == 4
    assert docs[0] == transcript_to_dict(calls[0])

    # and through the command's path: imported into the store, scored rules-only
    from qa_pipeline.rescore import run as run_mod

    orig = run_mod.read_kafka_transcripts
    run_mod.read_kafka_transcripts = lambda *a, **k: (docs, counts)
    try:
        s = rescore(
            RescoreOptions(
                store=store_url, kafka="localhost:9092", out=tmp_path / "o",
                progress=False,
            )
        )  # fmt: skip
    finally:
        run_mod.read_kafka_transcripts = orig
    assert s.imported == 4 and s.calls == 4 and s.scored == 4
    with Store(store_url) as st:
        assert st.transcript_doc(calls[1].call.call_id) == transcript_to_dict(calls[1])
        assert {c.audio_sha256 for c in st.calls()} == {
            doc_key(transcript_to_dict(t)) for t in calls
        }


def test_kafka_dedupe_is_by_session_not_by_call_id(tmp_path: Path) -> None:
    """One call id in two sessions (a reused AudioSocket UUID) is two calls, not a
    duplicate: the second is read (the store keeps the later one, counted as
    superseded). The same session sent again (producer retry, replayed spool) is a
    duplicate by event id."""
    import random

    rng = random.Random(5)
    first = make_call(1, rng)
    second = replace(make_call(2, rng), call=struct_replace(first.call, agent_id="other"))
    second = replace(second, call=with_session(second.call))
    first = replace(first, call=with_session(first.call))
    assert first.call.call_id == second.call.call_id
    ev1 = EventFactory.for_call(first.call).transcript(first)
    ev2 = EventFactory.for_call(second.call).transcript(second)
    assert ev1.event_id != ev2.event_id and ev1.seq == ev2.seq == 0
    replayed = EventFactory.for_call(second.call).transcript(second)
    assert replayed.event_id == ev2.event_id  # a replay of the session keeps its ids
    records = [ev1.to_json(), ev2.to_json(), replayed.to_json(), ev2.to_json()]
    docs, counts = read_kafka_transcripts(
        "localhost:9092", "qa.transcripts",
        consumer_factory=lambda **kw: FakeConsumer(records, **kw),
    )  # fmt: skip
    assert counts["duplicates"] == 2 and counts["superseded"] == 1 and counts["kept"] == 1
    assert docs == [transcript_to_dict(second)]
    assert docs[0]["call"]["session_id"] == second.call.session_id


def test_an_edited_bias_list_is_said_not_retranscribed(
    calls_dir: Path, fake_pipeline: tuple[Pipeline, FakeEngine], tmp_path: Path, store_url: str
) -> None:
    """The decoder is biased to the pack's company name; renaming the company changes the
    bias list but must not re-transcribe the archive: rescore says which transcripts were
    decoded with the older list."""
    pipe, eng = fake_pipeline
    store = store_url
    first = rescore(
        RescoreOptions(inputs=[calls_dir], store=store, out=tmp_path / "o1", progress=False),
        pipeline=pipe,
    )
    assert first.transcribed == len(CALLS) and first.stale_bias == []
    renamed = load_config(overrides={"rules": {"settings": {"company_name": "华冠"}}})
    eng.calls = 0
    again = rescore(
        RescoreOptions(inputs=[calls_dir], store=store, out=tmp_path / "o2", progress=False),
        pipeline=Pipeline(renamed, engine=eng),  # type: ignore[arg-type]
        config=renamed,
    )
    assert eng.calls == 0 and again.transcribed == 0 and again.cached == len(CALLS)
    assert len(again.stale_bias) == len(CALLS) and again.bias_version != first.bias_version
    with Store(store) as st:
        versions = {
            v
            for (v,) in st.execute(
                f"SELECT {st.json_text('doc', 'asr', 'bias_version')} FROM transcripts"
            )
        }
    assert versions == {first.bias_version}
