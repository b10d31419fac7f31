"""Sink benchmarks: events/s into a real Kafka, and the cost of metrics per utterance.

    .venv/bin/python benchmarks/bench_sinks.py            # starts Kafka via scripts/kafka.sh
    .venv/bin/python benchmarks/bench_sinks.py --bootstrap 127.0.0.1:9092 --events 50000

Kafka rows: ``producer`` is kafka-python alone (``send`` + ``flush``, no spool), the
ceiling; ``KafkaSink`` is the project's sink end to end (``emit`` of each event through the
durable spool, sender thread, ``acks=all``, idempotent; timed until the spool is empty).
Payloads are the real envelopes of the test calls (utterances, findings, scorecards,
transcripts), keyed by call id. Everything runs on this machine, broker included.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kafka_server import kafka_server  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from qa_pipeline.messages import Finding, Role, Severity, Utterance  # noqa: E402
from qa_pipeline.metrics import PipelineMetrics  # noqa: E402
from qa_pipeline.sinks import Event, Spool, events_for_call  # noqa: E402
from qa_pipeline.sinks.codec import finding_from_dict, scorecard_from_dict  # noqa: E402
from qa_pipeline.transcript import transcript_from_dict  # noqa: E402

CALLS = ROOT / "tests" / "sinks" / "data" / "calls"


def sample_events(n: int) -> list[Event]:
    """``n`` envelopes from the test calls, each round under fresh call ids."""
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(CALLS.glob("*.json"))]
    out: list[Event] = []
    rnd = 0
    while len(out) < n:
        for doc in docs:
            doc = json.loads(json.dumps(doc))
            doc["call"]["call_id"] = f"{doc['call']['call_id']}-{rnd}"
            t = transcript_from_dict(doc)
            fs = [finding_from_dict(f, t.call.call_id) for f in doc["findings"]]
            out.extend(events_for_call(t, fs, scorecard_from_dict(doc["scorecard"])))
        rnd += 1
    return out[:n]


def codecs() -> list[str | None]:
    out: list[str | None] = [None, "gzip"]
    if importlib.util.find_spec("lz4"):
        out.append("lz4")
    if importlib.util.find_spec("zstandard"):
        out.append("zstd")
    return out


def bench_producer(bootstrap: str, events: list[Event], codec: str | None, linger: int) -> float:
    from kafka import KafkaProducer

    topic = f"bench.raw.{codec or 'none'}.{linger}"
    p = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=linger,
        batch_size=64 * 1024,
        compression_type=codec,
    )
    p.send(topic, b"warm-up").get(timeout=30)  # topic created, metadata known
    payloads = [(e.call_id.encode(), e.to_json()) for e in events]
    t0 = time.perf_counter()
    for key, value in payloads:
        p.send(topic, key=key, value=value)
    p.flush(timeout=120)
    dt = time.perf_counter() - t0
    p.close()
    return len(events) / dt


def bench_sink(
    bootstrap: str, events: list[Event], codec: str | None, linger: int, sync: str
) -> float:
    from qa_pipeline.sinks.kafka import KafkaSink, KafkaSinkConfig, KafkaTopics, SpoolConfig

    prefix = f"bench.sink.{codec or 'none'}.{linger}.{sync}."
    with tempfile.TemporaryDirectory() as spool_dir:
        cfg = KafkaSinkConfig(
            bootstrap_servers=(bootstrap,),
            topics=KafkaTopics(
                findings=prefix + "findings",
                alerts=prefix + "alerts",
                scorecards=prefix + "scorecards",
                transcripts=prefix + "transcripts",
                utterances=prefix + "utterances",
            ),
            linger_ms=linger,
            compression_type=codec,  # type: ignore[arg-type]
            spool=SpoolConfig(directory=spool_dir, sync=sync),  # type: ignore[arg-type]
        )
        sink = KafkaSink(cfg)
        sink.emit_many(events[:50])  # warm-up: topics created, producer connected
        sink.flush(60)
        t0 = time.perf_counter()
        for e in events:
            sink.emit(e)
        emit_dt = time.perf_counter() - t0
        sink.flush(300)
        dt = time.perf_counter() - t0
        left = len(sink.spool)
        sink.close()
    if left:
        raise RuntimeError(f"{left} events not delivered")
    bench_sink.last_emit_us = emit_dt / len(events) * 1e6  # type: ignore[attr-defined]
    return len(events) / dt


def per_call_us(fn: Callable[[int], None], n: int, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times)


def bench_metrics(n: int) -> list[tuple[str, float]]:
    m = PipelineMetrics(CollectorRegistry(), stages=("vad", "asr", "rules", "sinks"))
    utts = [
        Utterance(f"c{i % 6}", i, i % 2, (Role.AGENT, Role.CUSTOMER)[i % 2], 0.0, 2.8, "您好")
        for i in range(64)
    ]
    rules = [f"RULE-{k}" for k in range(30)]
    sev = list(Severity)
    finds = [
        Finding(f"c{i % 6}", rules[i % 30], sev[i % 3], "x", decided_at=2.8) for i in range(64)
    ]

    def utterance(i: int) -> None:
        m.on_utterance(utts[i & 63], 0.7)

    def finding(i: int) -> None:
        m.on_finding(finds[i & 63], 0.02)

    def queue(i: int) -> None:
        m.on_queue_depth("asr", i & 7)

    def per_utterance(i: int) -> None:  # what the pipeline does per utterance
        m.on_queue_depth("asr", i & 7)
        m.on_queue_depth("rules", i & 3)
        m.on_utterance(utts[i & 63], 0.7)
        if i % 3 == 0:
            m.on_finding(finds[i & 63], 0.02)

    rows = [
        ("on_utterance (counter by role + RTF histogram)", per_call_us(utterance, n)),
        ("on_finding (labelled counter + latency histogram)", per_call_us(finding, n)),
        ("on_queue_depth (labelled gauge)", per_call_us(queue, n)),
        ("per utterance: 2 queue gauges + utterance + 1/3 finding", per_call_us(per_utterance, n)),
    ]
    t0 = time.perf_counter()
    for _ in range(20):
        body = generate_latest(m.registry)
    lines = body.count(b"\n")
    rows.append(
        (f"one scrape, generate_latest ({lines} lines)", (time.perf_counter() - t0) / 20 * 1e6)
    )
    return rows


def bench_spool(n: int) -> list[tuple[str, float]]:
    rows = []
    value = sample_events(1)[0].to_json()
    for sync in ("normal", "full"):
        with tempfile.TemporaryDirectory() as d:
            sp = Spool(d, sync=sync)
            count = n if sync == "normal" else max(200, n // 20)
            t0 = time.perf_counter()
            for i in range(count):
                sp.append("utterance", f"c{i % 6}", value)
            rows.append((f"spool append, sync={sync}", (time.perf_counter() - t0) / count * 1e6))
            sp.close()
    return rows


def bench_codecs(n: int) -> list[tuple[str, float]]:
    """Encode (``to_dict`` + JSON) and decode (JSON + ``*_from_dict``) of a test call's
    scorecard and utterances, and of its whole transcript document."""
    from qa_pipeline.messages import to_dict
    from qa_pipeline.transcript import transcript_to_dict

    doc = json.loads(sorted(CALLS.glob("*.json"))[0].read_text(encoding="utf-8"))
    t = transcript_from_dict(doc)
    card = scorecard_from_dict(doc["scorecard"], t.call.call_id)
    card_json = json.dumps(to_dict(card), ensure_ascii=False)
    utts = t.utterances
    tr_json = json.dumps(transcript_to_dict(t), ensure_ascii=False)

    def per(fn: Callable[[], object], count: int, items: int = 1) -> float:
        t0 = time.perf_counter()
        for _ in range(count):
            fn()
        return (time.perf_counter() - t0) / (count * items) * 1e6

    return [
        ("scorecard encode", per(lambda: json.dumps(to_dict(card), ensure_ascii=False), n)),
        ("scorecard decode", per(lambda: scorecard_from_dict(json.loads(card_json)), n)),
        (
            "utterance encode",
            per(lambda: [json.dumps(to_dict(u), ensure_ascii=False) for u in utts], n, len(utts)),
        ),
        (
            "transcript encode",
            per(lambda: json.dumps(transcript_to_dict(t), ensure_ascii=False), n),
        ),
        (
            f"transcript decode ({len(utts)} utterances)",
            per(lambda: transcript_from_dict(json.loads(tr_json)), n),
        ),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bootstrap", help="use this broker instead of starting one")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--full-sync-events", type=int, default=3_000)
    ap.add_argument("--metric-calls", type=int, default=100_000)
    ap.add_argument("--codec-rounds", type=int, default=5_000)
    ap.add_argument("--skip-kafka", action="store_true")
    args = ap.parse_args()

    print("## metrics per utterance (prometheus_client, injected registry)\n")
    print("| operation | µs per call |\n|---|---|")
    for name, us in bench_metrics(args.metric_calls):
        print(f"| {name} | {us:.2f} |")
    print("\n## message codecs (JSON text <-> messages, a test call)\n")
    print("| operation | µs each |\n|---|---|")
    for name, us in bench_codecs(args.codec_rounds):
        print(f"| {name} | {us:.1f} |")
    print("\n## durable spool (sqlite3 WAL)\n")
    print("| operation | µs per event |\n|---|---|")
    for name, us in bench_spool(5_000):
        print(f"| {name} | {us:.1f} |")
    if args.skip_kafka:
        return 0

    with kafka_server(args.bootstrap) as bootstrap:
        events = sample_events(args.events)
        avg = statistics.mean(len(e.to_json()) for e in events)
        print(f"\n## into Kafka at {bootstrap} ({len(events)} events, mean {avg:.0f} B)\n")
        print("| path | compression | linger_ms | spool sync | events/s | emit µs/event |")
        print("|---|---|---|---|---|---|")
        for codec in codecs():
            for linger in (0, 5):
                rate = bench_producer(bootstrap, events, codec, linger)
                print(f"| producer only | {codec or 'none'} | {linger} | - | {rate:,.0f} | - |")
                rate = bench_sink(bootstrap, events, codec, linger, "normal")
                emit = bench_sink.last_emit_us  # type: ignore[attr-defined]
                print(
                    f"| KafkaSink | {codec or 'none'} | {linger} | normal | {rate:,.0f} "
                    f"| {emit:.0f} |"
                )
        few = events[: args.full_sync_events]
        rate = bench_sink(bootstrap, few, "lz4" if "lz4" in codecs() else None, 5, "full")
        emit = bench_sink.last_emit_us  # type: ignore[attr-defined]
        print(f"| KafkaSink ({len(few)} events) | lz4 | 5 | full | {rate:,.0f} | {emit:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
