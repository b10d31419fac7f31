"""ASR worker stage alone: throughput of 1, 2, 4, ... ``qa-pipeline asr-worker`` processes
with the STUB decoder, which *sleeps* per segment (no speech recognition: a stand-in for a
decode time, so that processes scale on any number of cores).

    .venv/bin/python benchmarks/bench_asr_workers.py                # starts Kafka (scripts/kafka.sh)
    .venv/bin/python benchmarks/bench_asr_workers.py --bootstrap 127.0.0.1:9092 \\
        --workers 1 2 4 8 --segments 480 --sleep 0.05

For each worker count: a fresh segments topic (``--partitions``) and consumer group; the
workers are started and wait until each holds partitions; then ``--segments`` segments
(0.8 s of 8 kHz μ-law each, of ``--calls`` two-leg calls, with their watermarks) are
produced at once and the time until the last one's utterance message is on the utterances
topic is measured. Ideal time = segments x sleep / workers; efficiency = ideal / measured.
Not measured here: ingest, evaluators, end-of-utterance to finding latency (issue #17 (b)).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402
from kafka_server import kafka_server  # noqa: E402

from qa_pipeline.messages import CallInfo, Role  # noqa: E402
from qa_pipeline.wire import (  # noqa: E402
    LegEnd,
    LegStart,
    Watermark,
    WireMessage,
    WireSegment,
    encode,
    headers,
)


def call_messages(call: str, per_leg: int) -> list[WireMessage]:
    info = CallInfo(call_id=call, channels=(Role.AGENT, Role.CUSTOMER))
    out: list[WireMessage] = [
        LegStart(call_id=call, channel=ch, role=info.channels[ch], call=info) for ch in (0, 1)
    ]
    rng = np.random.default_rng(len(call))
    for seq in range(per_leg):
        for ch in (0, 1):
            start = round(seq * 1.5 + 0.4 * ch, 3)
            pcm = rng.normal(0, 2000, 6400).astype(np.int16)
            out.append(
                WireSegment.from_pcm(
                    call_id=call,
                    channel=ch,
                    role=info.channels[ch],
                    seq=seq,
                    start=start,
                    end=round(start + 0.8, 3),
                    pcm=pcm,
                    sample_rate=8000,
                    encoding="mulaw",
                )  # fmt: skip
            )
        for ch in (0, 1):
            out.append(Watermark(call_id=call, channel=ch, time=round((seq + 1) * 1.5, 3)))
    out += [LegEnd(call_id=call, channel=ch, end=per_leg * 1.5 + 1) for ch in (0, 1)]
    return out


def run(bootstrap: str, workers: int, args: argparse.Namespace, tag: str) -> tuple[float, float]:
    """Seconds until the last utterance, and the busiest worker's decode seconds (the
    time a perfect pipeline would need with this spread of calls over workers)."""
    src, dst = f"bench-{tag}.segments", f"bench-{tag}.utterances"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [NewTopic(t, num_partitions=args.partitions, replication_factor=1) for t in (src, dst)]
        )
    finally:
        admin.close()
    logs = Path(tempfile.mkdtemp(prefix=f"bench-asrw-{tag}-"))
    cmd = [
        sys.executable, "-m", "qa_pipeline.cli", "asr-worker", "--kafka", bootstrap,
        "--input", src, "--output", dst, "--group", f"bench-{tag}",
        "--decoder", f"stub:sleep={args.sleep}", "--max-records", str(args.max_records),
        "--session-timeout-ms", "6000",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QA_LOG_LEVEL": "info"}
    procs = [
        subprocess.Popen(
            cmd,
            stdout=(logs / f"w{i}.out").open("w"),
            stderr=(logs / f"w{i}.log").open("w"),
            env=env,
        )
        for i in range(workers)
    ]
    try:
        deadline = time.monotonic() + 120
        while True:  # every worker holds partitions, and no rebalance is pending
            held = [
                any(
                    "assigned [" in ln and "assigned []" not in ln
                    for ln in (logs / f"w{i}.log").read_text(errors="replace").splitlines()
                )
                for i in range(workers)
            ]
            if all(held):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not all assigned; logs in {logs}")
            time.sleep(0.2)
        time.sleep(2.0)
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        parts = [TopicPartition(dst, p) for p in range(args.partitions)]
        consumer.assign(parts)
        consumer.seek_to_end(*parts)
        for tp in parts:
            consumer.position(tp)
        per_leg = args.segments // (2 * args.calls)
        total = per_leg * 2 * args.calls
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        t0 = time.monotonic()
        for c in range(args.calls):
            call = f"{tag}-call-{c:03d}"
            for m in call_messages(call, per_leg):
                producer.send(src, key=call.encode(), value=encode(m), headers=headers(m))
        producer.flush()
        producer.close()
        seen = 0
        while seen < total:
            for recs in consumer.poll(timeout_ms=200).values():
                seen += sum(dict(r.headers).get("type") == b"utterance" for r in recs)
            if time.monotonic() - t0 > 600:
                raise RuntimeError(f"{seen}/{total} utterances after 600 s; logs in {logs}")
        elapsed = time.monotonic() - t0
        consumer.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    busiest = 0.0
    for i in range(workers):
        lines = (logs / f"w{i}.out").read_text().strip().splitlines()
        busiest = max(busiest, json.loads(lines[-1])["asr_worker"]["asr_seconds"])
    return elapsed, busiest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", help="an existing broker (default: start one)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--segments", type=int, default=480)
    ap.add_argument("--calls", type=int, default=24)
    ap.add_argument("--sleep", type=float, default=0.05, help="stub decode seconds per segment")
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--max-records", type=int, default=32)
    args = ap.parse_args()
    with kafka_server(args.bootstrap) as bootstrap:
        per_leg = args.segments // (2 * args.calls)
        total = per_leg * 2 * args.calls
        print(
            f"## ASR workers, STUB decoder sleeping {args.sleep * 1000:.0f} ms per segment "
            f"({total} segments of {args.calls} calls, {args.partitions} partitions, "
            f"{os.cpu_count()} CPUs)\n"
        )
        print(
            "| workers | seconds | segments/s | ideal s | efficiency | busiest worker's "
            "decode s |\n|---|---|---|---|---|---|"
        )
        for i, n in enumerate(args.workers):
            secs, busiest = run(bootstrap, n, args, f"{int(time.time())}-{i}-{n}")
            ideal = total * args.sleep / n
            print(
                f"| {n} | {secs:.2f} | {total / secs:.1f} | {ideal:.2f} | {ideal / secs:.0%} "
                f"| {busiest:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
