"""``qa-pipeline asr-worker`` against the real broker (``scripts/kafka.sh``):

* two worker processes with the STUB decoder share a 4-partition segments topic in one
  consumer group; one is SIGKILLed mid-stream, the other takes over its partitions from
  the committed offsets. Afterwards every segment has a utterance message (exactly one
  after de-duplication by call, channel and seq; duplicates identical), each leg's stream
  keeps its order once duplicates are removed, no watermark or leg end comes before an
  utterance it covers, a record that is not a wire message is skipped; the broker is
  restarted once after the kill, and SIGTERM makes the survivor exit 0;
* (slow) the real decoder's utterances for a generated call, ingested by
  ``qa-pipeline ingest``, equal ``Pipeline.transcribe``'s for the same recording (text,
  raw text, confidence, entities; index aside: the worker's is the segment's seq).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaProducer
from test_ingest_kafka import create_topic, read_topic

from qa_pipeline.asr.stub import StubEngine
from qa_pipeline.asr_worker import wire_utterance
from qa_pipeline.messages import CallInfo, Role
from qa_pipeline.privacy import Redactor
from qa_pipeline.privacy.config import PrivacyConfig
from qa_pipeline.wire import (
    LegEnd,
    LegStart,
    Watermark,
    WireMessage,
    WireSegment,
    WireUtterance,
    decode,
    encode,
    headers,
)

ROOT = Path(__file__).resolve().parents[2]
CALLS, SEGMENTS = 12, 8


def call_messages(call: str) -> list[WireMessage]:
    """Two legs of ``SEGMENTS`` short segments (8 kHz μ-law and 16 kHz PCM), a watermark
    every 0.5 s after the segments that start before it, the leg ends last."""
    info = CallInfo(call_id=call, channels=(Role.AGENT, Role.CUSTOMER))
    out: list[WireMessage] = [
        LegStart(call_id=call, channel=ch, role=info.channels[ch], call=info) for ch in (0, 1)
    ]
    rng = np.random.default_rng(sum(call.encode()))
    timed: list[tuple[float, int, WireMessage]] = []
    for ch, rate in ((0, 8000), (1, 16000)):
        for seq in range(SEGMENTS):
            start = round(seq * 1.5 + 0.4 * ch, 3)
            pcm = rng.normal(0, 2000, int(0.8 * rate)).astype(np.int16)
            seg = WireSegment.from_pcm(
                call_id=call, channel=ch, role=info.channels[ch], seq=seq, start=start,
                end=round(start + 0.8, 3), pcm=pcm, sample_rate=rate,
                encoding="mulaw" if rate == 8000 else "pcm_s16le",
            )  # fmt: skip
            timed.append((start, 1, seg))
        end = SEGMENTS * 1.5 + 1
        for k in range(1, int(end / 0.5)):
            timed.append((k * 0.5, 0, Watermark(call_id=call, channel=ch, time=k * 0.5)))
        timed.append((end, 2, LegEnd(call_id=call, channel=ch, end=end)))
    timed.sort(key=lambda t: (t[0], t[1], t[2].channel))
    return out + [m for _, _, m in timed]


def start_worker(bootstrap: str, args: list[str], log: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "qa_pipeline.cli", "asr-worker", "--kafka", bootstrap, *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QA_LOG_LEVEL": "info"}
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=env, cwd=log.parent
    )


def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def assigned(log: Path) -> bool:
    """Whether the worker's log says it was given at least one partition."""
    return any(
        "assigned [" in line and "assigned []" not in line
        for line in log.read_text(errors="replace").splitlines()
    )


# heavy (scripts/test -m heavy): test_chain_kafka.py kills a worker and an evaluator and
# restarts the broker in the default run; this one takes the stage alone, at a larger size
@pytest.mark.heavy
def test_two_workers_one_killed_every_segment_decoded_in_order(
    kafka_server: Any, tmp_path: Path
) -> None:
    bootstrap = kafka_server.bootstrap
    src, dst = "asrw.segments", "asrw.utterances"
    create_topic(bootstrap, src)
    create_topic(bootstrap, dst)
    calls = {f"call-{i:02d}": call_messages(f"call-{i:02d}") for i in range(CALLS)}
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for i, (call, msgs) in enumerate(calls.items()):
            for m in msgs:
                producer.send(src, key=call.encode(), value=encode(m), headers=headers(m))
            if i == 3:  # not a wire message: skipped, never blocks its partition
                producer.send(src, key=call.encode(), value=b"\xc1garbage")
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    segments = {
        (m.call_id, m.channel, m.seq): m
        for msgs in calls.values()
        for m in msgs
        if isinstance(m, WireSegment)
    }
    args = ["--input", src, "--output", dst, "--group", "asrw-test", "--max-records", "10"]
    args += ["--decoder", "stub:sleep=0.05", "--session-timeout-ms", "6000", "--health-port", "0"]
    logs = [tmp_path / "a" / "worker.log", tmp_path / "b" / "worker.log"]
    for log in logs:
        log.parent.mkdir()
    t0 = time.monotonic()
    a = start_worker(bootstrap, args, logs[0])
    b = start_worker(bootstrap, args, logs[1])
    try:
        wait_for(lambda: assigned(logs[0]) and assigned(logs[1]), 60, "both workers assigned")

        def utterances(records: list[Any]) -> int:
            return sum(dict(r.headers).get("type") == b"utterance" for r in records)

        read_topic(bootstrap, dst, lambda r: utterances(r) >= len(segments) // 4, timeout=60)
        a.send_signal(signal.SIGKILL)  # mid-stream: the other takes its partitions over
        a.wait(timeout=10)
        kafka_server.stop()  # and the broker restarts once under the survivor
        time.sleep(1.0)
        kafka_server.start()

        def complete(records: list[Any]) -> bool:
            keys = {
                (m.call_id, m.channel, m.seq)
                for m in (decode(r.value) for r in records)
                if isinstance(m, WireUtterance)
            }
            return keys >= segments.keys() and (
                sum(dict(r.headers).get("type") == b"leg_end" for r in records) >= 2 * CALLS
            )

        records = read_topic(bootstrap, dst, complete, timeout=120)
        elapsed = time.monotonic() - t0
        b.send_signal(signal.SIGTERM)
        out, _ = b.communicate(timeout=60)
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert b.returncode == 0, logs[1].read_text()[-3000:]
    counts = json.loads(out.strip().splitlines()[-1])["asr_worker"]
    assert counts["segments"] > 0 and counts["commit_failures"] >= 0
    bad_logged = "\n".join(p.read_text() for p in logs)
    assert "skipped record at asrw.segments-" in bad_logged

    redactor = Redactor(PrivacyConfig())
    stub = StubEngine()
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_partition[r.partition].append(r)
    got: dict[tuple[str, int, int], WireUtterance] = {}
    duplicates = 0
    for part in by_partition.values():
        seen: set[tuple[str, int, int]] = set()
        next_seq: dict[tuple[str, int], int] = defaultdict(int)
        ended: set[tuple[str, int]] = set()
        for r in part:
            m = decode(r.value)
            assert r.key == m.call_id.encode()
            leg = (m.call_id, m.channel)
            if isinstance(m, WireUtterance):
                key = (m.call_id, m.channel, m.seq)
                if key in seen:  # a re-decode after the kill: the very same utterance
                    duplicates += 1
                    assert m.utterance == got[key].utterance and m.dropped == got[key].dropped
                    continue
                seen.add(key)
                assert m.seq == next_seq[leg], f"{leg}: seq {m.seq} out of order"
                next_seq[leg] += 1
                got[key] = m
            elif isinstance(m, Watermark | LegEnd):
                # every segment it covers has been published before it
                t = m.time if isinstance(m, Watermark) else math.inf
                covered = [s for k, s in segments.items() if k[:2] == leg and s.start < t]
                assert len(covered) <= next_seq[leg], f"{leg}: {m} before a segment it covers"
                if isinstance(m, LegEnd):
                    ended.add(leg)
            else:
                assert isinstance(m, LegStart)
    assert got.keys() == segments.keys(), "every segment decoded, none lost"
    for key, seg in segments.items():
        want = wire_utterance(seg, stub.transcribe_segment(seg.to_segment()), redactor)
        assert (got[key].utterance, got[key].dropped) == (want.utterance, want.dropped)
    print(
        f"\n{len(segments)} segments, {duplicates} duplicate(s) after the kill, "
        f"{elapsed:.1f} s to complete; survivor counts {counts}"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("batch", "rate", "encoding"),
    # batched and not (the same texts either way: tests/test_asr_worker.py), each rate once
    [("on", 16000, "pcm16"), ("off", 8000, "ulaw")],
)
def test_real_decoder_matches_the_in_process_pipeline(
    kafka_server: Any, tmp_path: Path, batch: str, rate: int, encoding: str
) -> None:
    """16 kHz PCM and 8 kHz μ-law, on the engine's parallel workers and decoded as
    batches: the in-process transcript's utterances (a worker decodes the very samples
    ``score`` decodes: below 16 kHz both resample a segment with the source around it)."""
    from qa_pipeline.config import load_config
    from qa_pipeline.pipeline import Pipeline
    from qa_pipeline.samples.generate import generate_call

    bootstrap = kafka_server.bootstrap
    src, dst = f"asrw-real-{batch}-{rate}.segments", f"asrw-real-{batch}-{rate}.utterances"
    create_topic(bootstrap, src)
    create_topic(bootstrap, dst)
    wav = generate_call("perfect", tmp_path / "call", rate=rate, encoding=encoding)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "qa_pipeline.cli", "ingest", str(wav), "--kafka", bootstrap,
         "--topic", src],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])["ingest"]
    log = tmp_path / "w" / "worker.log"
    log.parent.mkdir()
    worker = start_worker(
        bootstrap,
        ["--input", src, "--output", dst, "--group", f"asrw-real-{batch}-{rate}", "--batch", batch],
        log,
    )
    try:
        pipe = Pipeline(load_config(None))
        expected = pipe.transcribe(wav).transcript.utterances

        def done(records: list[Any]) -> bool:
            return (
                sum(dict(r.headers).get("type") == b"utterance" for r in records)
                >= summary["segments"]
            )

        records = read_topic(bootstrap, dst, done, timeout=300)
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, log.read_text()[-3000:]
    msgs = [decode(r.value) for r in records]
    kept = sorted(
        (m.utterance for m in msgs if isinstance(m, WireUtterance) and m.utterance),
        key=lambda u: (u.start, u.channel),
    )
    assert len(kept) == len(expected) > 0

    def fields(u: Any) -> tuple[Any, ...]:
        return (
            u.channel, u.role, u.start, u.end, u.text, u.raw_text, u.confidence, u.entities,
            u.level_dbfs, u.no_speech_prob, u.language,
        )  # fmt: skip

    assert [fields(u) for u in kept] == [fields(u) for u in expected]
