"""The distributed path end to end on the local broker: per-hop latency (issue #17 (a)) and
scaling over ASR worker processes (issue #17 (b)), with the STUB decoder (it *sleeps* per
segment: no speech recognition; a stand-in for a decode time, so that processes scale on
any number of cores).

    .venv/bin/python benchmarks/bench_hops.py hops                 # (a): stub sleep 0, paced
    .venv/bin/python benchmarks/bench_hops.py scale --workers 1 2 4 8 16 --sleep 0.2 --repeat 2
    (--bootstrap 127.0.0.1:9092: an existing broker; default: one of our own, scripts/kafka.sh)

The bench publishes as ``qa-pipeline ingest`` does (wire messages keyed by call id, the
producer settings of ``sinks.kafka``: ``acks=all``, idempotent, ``linger_ms``) to a fresh
segments topic; N ``qa-pipeline asr-worker --decoder stub:sleep=S`` processes and one
``qa-pipeline evaluate`` process (the default pack plus two critical rules the stub's
sentences break; events to Kafka through its spooling sink) run as in production. Calls
are two legs of alternating 0.8 s segments, 0.2 s apart; after each segment both legs'
watermarks follow at once (as ingest sends them), so the evaluator can decide on an
utterance as soon as it has it. Every call id is picked so that each partition holds the
same number of calls (murmur2, as the producer partitions): the spread of real call ids is
a separate, stated effect.

Times per segment, all on this machine's clock:

    t0  the segment's record timestamp        ingest publishes (producer CreateTime)
    t1  its wire utterance's record timestamp   the ASR worker publishes
    t2  the utterance event's ``produced_at``   the evaluator has consumed and evaluated it
    t3  that event's record timestamp           the evaluator's sink has sent it to Kafka
    tf  a finding's record timestamp (findings decided on an utterance: the segment whose
        end is the finding's ``decided_at``)

With sleep 0, t1 - t0 is the segments hop (broker, the worker's fetch, its own work),
t2 - t1 the utterances hop (broker, the evaluator's fetch), t3 - t2 the evaluator's emission
(its checkpoint and the sink, which the in-process path has too). EoU -> finding = tf - t0
(the segment is published when it ends, as ingest publishes it).

``scale``: per worker count, (1) a burst: every call's messages at once, ~``--seconds`` of
ideal work per worker; throughput = segments / time to the last utterance event; ideal =
segments x sleep / N; efficiency = ideal / measured; (2) paced: the calls as live lines at
``--load`` of the workers' ideal capacity, EoU -> finding p50/p95.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402
from kafka.partitioner.default import murmur2  # noqa: E402
from kafka_server import kafka_server  # noqa: E402

from qa_pipeline.kafka_security import CLIENT_KEYS  # noqa: E402
from qa_pipeline.messages import CallInfo, Role  # noqa: E402
from qa_pipeline.sinks.kafka import KafkaSinkConfig  # noqa: E402
from qa_pipeline.wire import (  # noqa: E402
    LegEnd,
    LegStart,
    Watermark,
    WireMessage,
    WireSegment,
    decode,
    encode,
    headers,
)

SEG_S = 0.8  # each segment's length (call clock)
STEP_S = 1.0  # one segment every STEP_S, legs alternating
#: critical rules on two of the stub's sentences, so that findings come on utterances
EXTRA_RULES = """\
rules:
  - id: B-VAGUE-PROMISE
    description: (bench) 不说“会尽快处理”而不给时限
    severity: critical
    weight: 10
    scope: {role: agent}
    forbid:
      fuzzy: [我们会尽快处理]
  - id: B-SELF-BLAME
    description: (bench) 坐席不说“服务太差了”
    severity: critical
    weight: 10
    scope: {role: agent}
    forbid:
      fuzzy: [你们的服务太差了]
"""


def balanced_calls(tag: str, partitions: int, count: int, workers: int) -> list[str]:
    """``count`` call ids spread evenly over ``workers`` (each holding a contiguous block of
    ``partitions / workers`` partitions, as the range assignor gives them) and over the
    partitions of each block (kafka-python's murmur2 partitioner decides the partition)."""
    block = partitions // workers
    targets = [(k % workers) * block + (k // workers) % block for k in range(count)]
    want: dict[int, int] = {}
    for p in targets:
        want[p] = want.get(p, 0) + 1
    out: list[str] = []
    i = 0
    while any(want.values()):
        cid = f"{tag}-c{i:05d}"
        p = (murmur2(cid.encode()) & 0x7FFFFFFF) % partitions
        if want.get(p):
            want[p] -= 1
            out.append(cid)
        i += 1
    return out


def call_plan(call: str, per_leg: int, offset: float) -> list[tuple[float, WireMessage]]:
    """(due wall offset in call-clock seconds, message) of one two-leg call."""
    info = CallInfo(call_id=call, channels=(Role.AGENT, Role.CUSTOMER))
    plan: list[tuple[float, WireMessage]] = [
        (offset, LegStart(call_id=call, channel=ch, role=info.channels[ch], call=info))
        for ch in (0, 1)
    ]
    rng = np.random.default_rng(abs(hash(call)) % 2**32)
    for k in range(2 * per_leg):
        ch, seq = k % 2, k // 2
        start = round(k * STEP_S, 3)
        end = round(start + SEG_S, 3)
        pcm = rng.normal(0, 2000, int(SEG_S * 8000)).astype(np.int16)
        seg = WireSegment.from_pcm(
            call_id=call, channel=ch, role=info.channels[ch], seq=seq, start=start, end=end,
            pcm=pcm, sample_rate=8000, encoding="mulaw",
        )  # fmt: skip
        plan.append((offset + end, seg))
        plan += [(offset + end, Watermark(call_id=call, channel=c, time=end)) for c in (0, 1)]
    last = round(2 * per_leg * STEP_S, 3)
    plan += [(offset + last, LegEnd(call_id=call, channel=c, end=last)) for c in (0, 1)]
    return plan


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    return float(np.percentile(np.asarray(xs), q))


@dataclass
class Observed:
    """What the bench's reader saw: the times of each segment's stages (ms epoch)."""

    t0: dict[tuple[str, int, int], int] = field(default_factory=dict)  # (call, ch, seq)
    t1: dict[tuple[str, int, int], int] = field(default_factory=dict)
    t2: dict[tuple[str, int, float], float] = field(default_factory=dict)  # (call, ch, start)
    t3: dict[tuple[str, int, float], int] = field(default_factory=dict)
    findings: list[tuple[str, float, int]] = field(default_factory=list)  # call, decided, ts
    scorecards: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Reader(threading.Thread):
    """Reads the stage topics from their ends (as of ``start``) and notes the times."""

    def __init__(self, bootstrap: str, topics: dict[str, str], partitions: int) -> None:
        super().__init__(daemon=True)
        self.topics = topics
        self.obs = Observed()
        self.stop = threading.Event()
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
        )
        tps = []
        for t in topics.values():
            n = partitions if t in (topics["segments"], topics["utterances"]) else 1
            tps += [TopicPartition(t, p) for p in range(n)]
        self.consumer.assign(tps)
        self.consumer.seek_to_end(*tps)
        for tp in tps:
            self.consumer.position(tp)
        self.kind = {v: k for k, v in topics.items()}

    def run(self) -> None:
        o = self.obs
        while not self.stop.is_set():
            for tp, recs in self.consumer.poll(timeout_ms=100).items():
                kind = self.kind[tp.topic]
                with o.lock:
                    for r in recs:
                        if kind in ("segments", "utterances"):
                            m = decode(r.value)
                            typ = type(m).__name__
                            if typ not in ("WireSegment", "WireUtterance"):
                                continue
                            key = (m.call_id, m.channel, m.seq)  # type: ignore[union-attr]
                            (o.t0 if kind == "segments" else o.t1)[key] = r.timestamp
                            continue
                        ev = json.loads(r.value)
                        p = ev["payload"]
                        if kind == "events":
                            k2 = (ev["call_id"], int(p["channel"]), round(float(p["start"]), 3))
                            made = datetime.fromisoformat(ev["produced_at"].replace("Z", "+00:00"))
                            o.t2[k2] = made.timestamp() * 1000
                            o.t3[k2] = r.timestamp
                        elif kind == "findings":
                            o.findings.append((ev["call_id"], float(p["decided_at"]), r.timestamp))
                        elif kind == "scorecards":
                            o.scorecards += 1
        self.consumer.close()

    def latencies(self, start_of: dict[tuple[str, int], float] | None = None) -> dict[str, Any]:
        """Per hop, ms lists; EoU -> finding from the segment ending at ``decided_at``."""
        o = self.obs
        with o.lock:
            seg_start = {}
            ends: dict[str, list[tuple[float, tuple[str, int, int]]]] = {}
            for key in o.t0:
                call, ch, seq = key
                start = round((2 * seq + ch) * STEP_S, 3)
                seg_start[key] = (call, ch, start)
                ends.setdefault(call, []).append((round(start + SEG_S, 3), key))
            h1, h2, h3, tot, kafka = [], [], [], [], []
            for key, t0 in o.t0.items():
                t1 = o.t1.get(key)
                if t1 is not None:
                    h1.append(t1 - t0)
                k2 = seg_start[key]
                if t1 is not None and k2 in o.t2:
                    h2.append(o.t2[k2] - t1)
                    h3.append(o.t3[k2] - o.t2[k2])
                    kafka.append(o.t2[k2] - t0)
                    tot.append(o.t3[k2] - t0)
            fl = []
            for call, decided, ts in o.findings:
                match = [k for e, k in ends.get(call, []) if abs(e - decided) < 1e-3]
                if match:
                    fl.append(ts - o.t0[match[0]])
            return {
                "segments": h1, "utterances": h2, "emit": h3, "total": tot, "finding": fl,
                "kafka": kafka,
            }  # fmt: skip


def create_topics(bootstrap: str, topics: dict[str, str], partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(
                    t,
                    num_partitions=partitions if k in ("segments", "utterances") else 1,
                    replication_factor=1,
                )  # fmt: skip
                for k, t in topics.items()
            ]
        )
    finally:
        admin.close()


@dataclass
class Stages:
    procs: list[subprocess.Popen[bytes]]
    logs: Path
    workers: int

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


def start_stages(
    bootstrap: str, topics: dict[str, str], tag: str, workers: int, sleep: float, args: Any
) -> Stages:
    logs = Path(tempfile.mkdtemp(prefix=f"bench-hops-{tag}-"))
    pack = logs / "rules"
    import shutil

    shutil.copytree(ROOT / "configs" / "rules", pack)
    (pack / "zz_bench_critical.yaml").write_text(EXTRA_RULES, encoding="utf-8")
    cfg = {
        "asr": {"verify": False},
        "rules": {"pack": str(pack)},
        "sinks": {
            "jsonl": None,
            "kafka": {
                "bootstrap_servers": [bootstrap],
                "topics": {
                    "utterances": topics["events"],
                    "findings": topics["findings"],
                    "scorecards": topics["scorecards"],
                    "alerts": None,
                    "transcripts": None,
                },  # fmt: skip
                "spool": {"directory": str(logs / "spool"), "sync": args.spool_sync},
                **kafka_overrides(args),
            },
        },
    }
    (logs / "eval.yaml").write_text(json.dumps(cfg), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "qa_pipeline.cli", "--log-level", "info"]
    procs = []
    for i in range(workers):
        cmd = [
            *base, "asr-worker", "--kafka", bootstrap, "--input", topics["segments"],
            "--output", topics["utterances"], "--group", f"{tag}-asr",
            "--decoder", f"stub:sleep={sleep}", "--session-timeout-ms", "10000",
            "--config", str(logs / "eval.yaml"),
            *(["--max-records", str(args.max_records)] if args.max_records else []),
        ]  # fmt: skip
        procs.append(
            subprocess.Popen(
                cmd,
                stdout=(logs / f"w{i}.out").open("w"),
                stderr=(logs / f"w{i}.log").open("w"),
                env=env,
                cwd=logs,
            )  # fmt: skip
        )
    ecmd = [
        *base, "evaluate", "--config", str(logs / "eval.yaml"), "--kafka", bootstrap,
        "--topic", topics["utterances"], "--group", f"{tag}-eval",
        "--changelog", f"{tag}.changelog", "--session-timeout", "10",
    ]  # fmt: skip
    procs.append(
        subprocess.Popen(
            ecmd,
            stdout=(logs / "e.out").open("w"),
            stderr=(logs / "e.log").open("w"),
            env=env,
            cwd=logs,
        )  # fmt: skip
    )
    st = Stages(procs, logs, workers)
    deadline = time.monotonic() + 240
    while True:
        held = [
            any(
                "assigned [" in ln and "assigned []" not in ln
                for ln in (logs / f"w{i}.log").read_text(errors="replace").splitlines()
            )
            for i in range(workers)
        ]
        ev = (logs / "e.out").read_text(errors="replace")
        if all(held) and "ready" in ev:
            break
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            st.stop()
            raise RuntimeError(f"stages did not start; logs in {logs}")
        time.sleep(0.3)
    time.sleep(3.0)  # the last rebalance settles
    return st


def kafka_overrides(args: Any) -> dict[str, Any]:
    """``sinks.kafka`` settings given on the command line (all stages and the bench's
    publisher use them)."""
    return {} if args.linger_ms is None else {"linger_ms": args.linger_ms}


def producer(bootstrap: str, args: Any) -> KafkaProducer:
    kw = KafkaSinkConfig(bootstrap_servers=(bootstrap,), **kafka_overrides(args)).producer_kwargs()
    for key in ("bootstrap_servers", *CLIENT_KEYS):
        kw.pop(key, None)
    kw["client_id"] = "bench-ingest"
    return KafkaProducer(bootstrap_servers=bootstrap, **kw)


def publish(
    prod: KafkaProducer, topic: str, plan: list[tuple[float, WireMessage]], pace: bool
) -> tuple[float, float]:
    """Send the messages (due order when ``pace``: at their due time from now)."""
    plan = sorted(plan, key=lambda x: x[0])
    encoded = [(due, m, encode(m)) for due, m in plan]
    wall0 = time.time()
    t0 = time.monotonic()
    for due, m, value in encoded:
        if pace:
            wait = t0 + due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        prod.send(topic, key=m.call_id.encode(), value=value, headers=headers(m))
    prod.flush()
    return wall0, time.time()


def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def topics_for(tag: str) -> dict[str, str]:
    return {
        "segments": f"{tag}.segments", "utterances": f"{tag}.utterances",
        "events": f"{tag}.events", "findings": f"{tag}.findings",
        "scorecards": f"{tag}.scorecards",
    }  # fmt: skip


@dataclass
class Run:
    bootstrap: str
    args: Any
    tag: str
    workers: int
    sleep: float
    topics: dict[str, str] = field(init=False)
    stages: Stages = field(init=False)
    prod: KafkaProducer = field(init=False)
    rounds: int = 0

    def __enter__(self) -> Run:
        self.topics = topics_for(self.tag)
        create_topics(self.bootstrap, self.topics, self.args.partitions)
        self.stages = start_stages(
            self.bootstrap, self.topics, self.tag, self.workers, self.sleep, self.args
        )
        self.prod = producer(self.bootstrap, self.args)
        return self

    def __exit__(self, *exc: object) -> None:
        self.prod.close()
        self.stages.stop()

    def round(
        self, ncalls: int, per_leg: int, spread_s: float, pace: bool
    ) -> tuple[Reader, dict[str, float], int]:
        """One round of fresh calls; returns (reader, seconds from the first send to: the
        end of publishing, the last wire utterance, the last utterance event; number of
        segments)."""
        self.rounds += 1
        calls = balanced_calls(
            f"{self.tag}-r{self.rounds}", self.args.partitions, ncalls, self.workers
        )
        rng = np.random.default_rng(self.rounds)
        plan: list[tuple[float, WireMessage]] = []
        for c in calls:
            plan += call_plan(c, per_leg, float(rng.uniform(0, spread_s)) if pace else 0.0)
        nseg = sum(isinstance(m, WireSegment) for _, m in plan)
        kept = sum(
            1
            for _, m in plan
            if isinstance(m, WireSegment) and _stub_kept(m)  # dropped ones make no event
        )
        reader = Reader(self.bootstrap, self.topics, self.args.partitions)
        reader.start()
        time.sleep(0.5)
        wall0, published = publish(self.prod, self.topics["segments"], plan, pace)
        wait_for(
            lambda: len(reader.obs.t3) >= kept and reader.obs.scorecards >= len(calls),
            600,
            f"{kept} utterance events and {len(calls)} scorecards (logs {self.stages.logs})",
        )
        with reader.obs.lock:
            times = {
                "published": published - wall0,
                "asr": max(reader.obs.t1.values()) / 1000 - wall0,
                "events": max(reader.obs.t3.values()) / 1000 - wall0,
            }
        time.sleep(0.3)
        reader.stop.set()
        reader.join()
        return reader, times, nseg


def _stub_kept(seg: WireSegment) -> bool:
    from qa_pipeline.asr.stub import DROP_EVERY, StubEngine

    return StubEngine.key(seg.to_segment()) % DROP_EVERY != 0


def fmt(xs: list[float]) -> str:
    return f"{pct(xs, 50):.1f} / {pct(xs, 95):.1f}"


def cmd_hops(bootstrap: str, args: Any) -> None:
    tag = f"hops-{int(time.time())}"
    print(
        f"## Per-hop latency, STUB decoder sleeping 0 s, {args.calls} calls paced in real time "
        f"({args.partitions} partitions, 1 ASR worker, 1 evaluator, spool sync "
        f"{args.spool_sync}, linger_ms {args.linger_ms if args.linger_ms is not None else 'default'}, "
        f"{os.cpu_count()} CPUs)\n"
    )
    print(
        "| round | segments | segments hop t1-t0 | utterances hop t2-t1 | both hops t2-t0 "
        "| evaluator emit t3-t2 | total t3-t0 | EoU -> finding |"
    )
    print("|---|---|---|---|---|---|---|---|")
    allv: dict[str, list[float]] = {}
    with Run(bootstrap, args, tag, 1, 0.0) as run:
        for r in range(args.repeat):
            reader, _, nseg = run.round(args.calls, args.per_leg, STEP_S * 2, pace=True)
            lat = reader.latencies()
            for k, v in lat.items():
                allv.setdefault(k, []).extend(v)
            print(
                f"| {r + 1} | {nseg} | {fmt(lat['segments'])} | {fmt(lat['utterances'])} "
                f"| {fmt(lat['kafka'])} | {fmt(lat['emit'])} | {fmt(lat['total'])} | {fmt(lat['finding'])} "
                f"(n={len(lat['finding'])}) |",
                flush=True,
            )
    print(
        f"| all | | {fmt(allv['segments'])} | {fmt(allv['utterances'])} | {fmt(allv['kafka'])} "
        f"| {fmt(allv['emit'])} "
        f"| {fmt(allv['total'])} | {fmt(allv['finding'])} |"
    )
    print("\n(ms, p50 / p95)")


def cmd_scale(bootstrap: str, args: Any) -> None:
    P = args.partitions
    print(
        f"## Scaling, STUB decoder sleeping {args.sleep * 1000:.0f} ms per segment, "
        f"{P} partitions, burst of {P * args.calls_per_partition} calls, 1 evaluator, "
        f"{os.cpu_count()} CPUs\n"
    )
    print(
        "| workers | round | segments | ideal s | published s | last utterance s "
        "| last event s | segments/s | efficiency (ASR / end to end) "
        "| paced: load | EoU -> finding p50 / p95 ms | utterance event p95 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.workers:
        tag = f"scale-{int(time.time())}-{n}"
        with Run(bootstrap, args, tag, n, args.sleep) as run:
            for r in range(args.repeat):
                # burst: ~args.seconds of ideal work per worker
                nseg_goal = args.seconds * n / args.sleep
                ncalls = args.calls_per_partition * P
                per_leg = max(1, round(nseg_goal / (2 * ncalls)))
                _, tm, nseg = run.round(ncalls, per_leg, 0, pace=False)
                secs = tm["events"]
                ideal = nseg * args.sleep / n
                # paced: live lines at args.load of the workers' ideal capacity (a call
                # makes one segment per STEP_S): calls = load * n / sleep * STEP_S
                live = max(1, round(args.load * n / args.sleep * STEP_S))
                reader, _, _ = run.round(live, args.paced_per_leg, 2 * STEP_S, pace=True)
                lat = reader.latencies()
                load = live * args.sleep / (STEP_S * n)
                print(
                    f"| {n} | {r + 1} | {nseg} | {ideal:.2f} | {tm['published']:.2f} "
                    f"| {tm['asr']:.2f} | {secs:.2f} | {nseg / secs:.1f} "
                    f"| {ideal / tm['asr']:.0%} / {ideal / secs:.0%} | {load:.0%} ({live} calls) "
                    f"| {fmt(lat['finding'])} (n={len(lat['finding'])}) "
                    f"| {pct(lat['total'], 95):.0f} |",
                    flush=True,
                )


def cmd_capacity(bootstrap: str, args: Any) -> None:
    """What one evaluator and one ingest process carry: call seconds handled per wall
    second when fed as fast as they go (a burst), i.e. live calls at real time."""
    import random
    import shutil

    from qa_pipeline.testing import make_call
    from qa_pipeline.testing.utterance_streams import utterance_stream

    print(f"## Capacity of one evaluator and one ingest process ({os.cpu_count()} CPUs)\n")
    print("| stage | calls | call seconds | messages | wall s | call s per wall s |")
    print("|---|---|---|---|---|---|")
    # the evaluator: the utterances topic of args.eval_calls synthetic calls, in a burst
    for r in range(args.repeat if args.eval_calls else 0):
        tag = f"cap-{int(time.time())}-{r}"
        topics = topics_for(tag)
        create_topics(bootstrap, topics, args.partitions)
        rng = random.Random(r)
        streams = []
        call_s = 0.0
        for i in range(args.eval_calls):
            t = make_call(10_000 * (r + 1) + i, rng, 36)
            call_s += t.ended.end
            streams.append(utterance_stream(t, session_id=f"{tag}-{i}"))
        nmsg = sum(map(len, streams))
        st = start_stages(bootstrap, topics, tag, 0, 0.0, args)
        try:
            reader = Reader(bootstrap, topics, args.partitions)
            reader.start()
            time.sleep(0.5)
            prod = producer(bootstrap, args)
            wall0 = time.time()
            for side in zip(*streams, strict=False):  # the calls side by side
                for m in side:
                    prod.send(
                        topics["utterances"], key=m.call_id.encode(), value=encode(m),
                        headers=headers(m),
                    )  # fmt: skip
            for msgs in streams:  # the rest of the longer ones
                for m in msgs[min(map(len, streams)) :]:
                    prod.send(
                        topics["utterances"], key=m.call_id.encode(), value=encode(m),
                        headers=headers(m),
                    )  # fmt: skip
            prod.flush()
            prod.close()
            wait_for(lambda rd=reader: rd.obs.scorecards >= args.eval_calls, 600, "scorecards")
            wall = time.time() - wall0
            reader.stop.set()
            reader.join()
        finally:
            st.stop()
        print(
            f"| evaluate | {args.eval_calls} | {call_s:.0f} | {nmsg} | {wall:.2f} "
            f"| {call_s / wall:.0f} |",
            flush=True,
        )
    # ingest: generated recordings (VAD, encode, publish with acks), pace 0
    from qa_pipeline.samples.generate import generate_call

    calls_dir = Path(tempfile.mkdtemp(prefix="bench-hops-ingest-"))
    src = calls_dir / "src"
    for sc, rate, enc in (
        ("no_closing", 8000, "ulaw"), ("i_dont_know", 16000, "pcm16"),
        ("missing_greeting", 8000, "ulaw"), ("over_promise", 8000, "ulaw"),
    ):  # fmt: skip
        generate_call(sc, src, rate=rate, encoding=enc)
    import soundfile as sf

    for r in range(args.repeat if args.ingest_copies else 0):
        run_dir = calls_dir / f"run{r}"
        run_dir.mkdir()
        call_s = 0.0
        n = 0
        for k in range(args.ingest_copies):
            for wav in sorted(src.glob("*.wav")):
                name = f"{wav.stem}-{r}-{k}"
                shutil.copy(wav, run_dir / f"{name}.wav")  # call id: the file's stem
                call_s += sf.info(str(wav)).duration
                n += 1
        tag = f"capi-{int(time.time())}-{r}"
        create_topics(bootstrap, {"segments": f"{tag}.segments"}, args.partitions)
        cmd = [
            sys.executable, "-m", "qa_pipeline.cli", "ingest", str(run_dir), "--kafka",
            bootstrap, "--topic", f"{tag}.segments",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        t0 = time.time()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        wall = time.time() - t0
        counts = json.loads(out.stdout.strip().splitlines()[-1])
        msgs = counts.get("ingest", counts).get("messages", "?")
        print(
            f"| ingest (process start included) | {n} | {call_s:.0f} | {msgs} | {wall:.2f} "
            f"| {call_s / wall:.0f} |",
            flush=True,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["hops", "scale", "capacity"])
    ap.add_argument("--bootstrap", help="an existing broker (default: start one)")
    ap.add_argument("--partitions", type=int, default=48)
    ap.add_argument("--max-records", type=int, default=0, help="asr-worker --max-records")
    ap.add_argument("--spool-sync", default="full", choices=["full", "normal"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--linger-ms", type=int, help="sinks.kafka.linger_ms of every producer")
    # hops
    ap.add_argument("--calls", type=int, default=48)
    ap.add_argument("--per-leg", type=int, default=10)
    # scale
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--sleep", type=float, default=0.2)
    ap.add_argument("--seconds", type=float, default=20.0, help="ideal burst s per worker")
    ap.add_argument("--calls-per-partition", type=int, default=1)
    ap.add_argument("--load", type=float, default=0.7)
    ap.add_argument("--paced-per-leg", type=int, default=6)
    # capacity
    ap.add_argument("--eval-calls", type=int, default=200, help="0: no evaluator run")
    ap.add_argument(
        "--ingest-copies", type=int, default=25, help="copies of 4 recordings (0: no ingest run)"
    )
    args = ap.parse_args()
    cmd = {"hops": cmd_hops, "scale": cmd_scale, "capacity": cmd_capacity}[args.mode]
    with kafka_server(args.bootstrap) as bootstrap:
        cmd(bootstrap, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
