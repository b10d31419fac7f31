"""``qa-pipeline evaluate`` through the real broker (``scripts/kafka.sh``): the utterance
streams of four generated calls on a topic of four partitions, read by TWO evaluate
processes (group ``qa-eval``-like, one per test); one is SIGKILLed mid-stream, the other
takes its partitions over. Checked: every call has exactly one scorecard after dedupe by
event id, equal to the in-process scorecard of the same utterances; the events after
dedupe are exactly those of one uninterrupted run (none lost, none extra); the webhook
receiver got exactly one notification per critical finding; the PostgreSQL store both write
holds each call exactly once (its scorecard, its utterances); SIGTERM ends the survivor
with exit status 0."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from qa_pipeline.evaluate_stage import CallJoin, reference_scorecard
from qa_pipeline.messages import Scorecard, to_dict
from qa_pipeline.rules import load_pack
from qa_pipeline.sinks.base import Event
from qa_pipeline.store import Store
from qa_pipeline.testing import make_call
from qa_pipeline.testing.utterance_streams import utterance_stream
from qa_pipeline.wire import WireMessage, encode, headers

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4


def _webhook() -> tuple[ThreadingHTTPServer, list[dict[str, Any]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, got


def _calls() -> list[tuple[Any, list[WireMessage]]]:
    """Four calls with critical findings among them, each a stream of the utterances
    topic (session ids fixed, as ingest derives them)."""
    rng = random.Random(40)  # three of the four calls have critical findings
    out = []
    for i in range(4):
        t = make_call(500 + i, rng, 36)
        out.append((t, utterance_stream(t, session_id=f"eval-kafka-{i}")))
    return out


def _expected(pack: Any, msgs: list[WireMessage]) -> CallJoin:
    join = CallJoin(msgs[0].call_id, pack)
    for m in msgs:
        join.take(m)
    assert join.closed
    return join


def _config(path: Path, bootstrap: str, tag: str, spool: Path, hook: str, store: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "store": store,
                "sinks": {
                    "jsonl": None,
                    "kafka": {
                        "bootstrap_servers": [bootstrap],
                        "topics": {
                            k: f"{tag}.{k}"
                            for k in ("findings", "alerts", "scorecards", "transcripts")
                        }
                        | {"utterances": f"{tag}.events"},
                        "spool": {"directory": str(spool), "sync": "normal"},
                    },
                },
                "notify": {
                    "triggers": {"critical_findings": True, "score_below": None},
                    "notifiers": [{"type": "webhook", "url": hook, "unsigned": True}],
                },
            }
        ),
        encoding="utf-8",
    )
    return path


def _evaluate(cfg: Path, tag: str, log: Path) -> subprocess.Popen[str]:
    args = ["--topic", f"{tag}.utterances", "--group", f"{tag}-eval"]
    args += ["--changelog", f"{tag}.emitted", "--idle-timeout", "120", "--session-timeout", "6"]
    args += ["--health-port", "0"]
    return subprocess.Popen(
        [sys.executable, "-m", "qa_pipeline.cli", "--log-level", "info", "evaluate",
         "--config", str(cfg), *args],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        cwd=cfg.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def _read_events(bootstrap: str, topics: list[str], done: Any, timeout: float) -> list[Event]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        parts: list[TopicPartition] = []
        for t in topics:
            ids = consumer.partitions_for_topic(t)
            while not ids and time.monotonic() < deadline:
                time.sleep(0.5)
                consumer._client.cluster.request_update()
                ids = consumer.partitions_for_topic(t)
            parts += [TopicPartition(t, p) for p in sorted(ids or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        events: list[Event] = []
        while time.monotonic() < deadline and not done(events):
            for batch in consumer.poll(timeout_ms=500).values():
                events += [Event.from_json(r.value) for r in batch]
        return events
    finally:
        consumer.close()


def _comparable(card: dict[str, Any] | Scorecard) -> dict[str, Any]:
    d = to_dict(card) if isinstance(card, Scorecard) else json.loads(json.dumps(card))
    for k in ("extras", "complete", "incomplete_reasons"):
        d.pop(k)
    for f in d["findings"]:
        f.pop("decided_at")
    return d


# heavy (scripts/test -m heavy): test_chain_kafka.py kills a worker and an evaluator and
# restarts the broker in the default run; this one takes the stage alone, at a larger size
@pytest.mark.heavy
def test_two_evaluators_one_killed_mid_stream(
    kafka_server: Any, pg_database: str, tmp_path: Path
) -> None:
    t_start = time.monotonic()
    bootstrap = kafka_server.bootstrap
    tag = f"evalt{os.getpid()}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics(
            [NewTopic(f"{tag}.utterances", num_partitions=PARTITIONS, replication_factor=1)]
        )
    finally:
        admin.close()
    pack = load_pack()
    calls = _calls()
    expected = {t.call.call_id: _expected(pack, msgs) for t, msgs in calls}
    crit = {e.event_id for j in expected.values() for e in j.outbox if e.kind.value == "alert"}
    assert crit, "the calls should hold critical findings"
    server, hooks = _webhook()
    hook = f"http://127.0.0.1:{server.server_port}/qa"
    procs = []
    for name in ("a", "b"):
        cfg = _config(
            tmp_path / f"{name}.yaml", bootstrap, tag, tmp_path / f"spool-{name}", hook, pg_database
        )
        procs.append(_evaluate(cfg, tag, tmp_path / f"{name}.log"))
    victim, survivor = procs
    try:
        ports = []
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().split()
            assert line[:1] == ["ready"], (tmp_path / "a.log").read_text()
            ports.append(int(line[1].removeprefix("health=")))
        time.sleep(6)  # both joined the group and were given partitions
        # the four calls side by side, one per partition, paced over about 8 s
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        rows = [
            (k / len(msgs), i, m) for i, (_, msgs) in enumerate(calls) for k, m in enumerate(msgs)
        ]
        rows.sort(key=lambda r: (r[0], r[1]))
        killed_at = len(rows) // 2
        for n, (_, i, m) in enumerate(rows):
            producer.send(
                f"{tag}.utterances", key=m.call_id.encode(), value=encode(m),
                headers=headers(m), partition=i,
            )  # fmt: skip
            if n % 40 == 0:
                producer.flush()
                time.sleep(0.05)
            if n == killed_at:
                producer.flush()
                time.sleep(1.5)  # the victim evaluates and checkpoints some of it
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=10)
        producer.flush()
        producer.close(timeout=10)
        victim_log = (tmp_path / "a.log").read_text()
        assert "assigned" in victim_log, victim_log

        topics = [f"{tag}.{k}" for k in ("findings", "alerts", "scorecards")]

        def done(events: list[Event]) -> bool:
            return {e.call_id for e in events if e.kind.value == "scorecard"} == set(expected)

        events = _read_events(bootstrap, topics, done, timeout=120)
        time.sleep(2)  # any late duplicate, then read everything once more
        events = _read_events(bootstrap, topics, lambda ev: len(ev) >= len(events), 30)
        base = f"http://127.0.0.1:{ports[1]}"
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            assert r.status == 200 and r.read() == b"ok\n"
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            text = r.read().decode()
        assert 'qa_eval_calls_closed_total{complete="true"}' in text
        lags = [
            sample.labels
            for fam in text_string_to_metric_families(text)
            if fam.name == "qa_consumer_lag"
            for sample in fam.samples
        ]
        assert lags and all(
            (lab["group"], lab["topic"]) == (f"{tag}-eval", f"{tag}.utterances") for lab in lags
        )
        # every call closed: no open call to age
        assert f'qa_eval_oldest_open_call_age_seconds{{group="{tag}-eval"}} 0.0' in text
        survivor.send_signal(signal.SIGTERM)
        out, _ = survivor.communicate(timeout=60)
        assert survivor.returncode == 0, (tmp_path / "b.log").read_text()
        summary = json.loads(out.strip().splitlines()[-1])["evaluate"]
        survivor_log = (tmp_path / "b.log").read_text()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        server.shutdown()

    by_id: dict[str, Event] = {}
    for e in events:
        by_id.setdefault(e.event_id, e)
        assert by_id[e.event_id].payload == e.payload  # a duplicate is the same event
    raw_dups = len(events) - len(by_id)
    # after dedupe: exactly the events of one uninterrupted run of each call
    want = {
        e.event_id: e
        for j in expected.values()
        for e in j.outbox
        if e.kind.value in ("finding", "alert", "scorecard")
    }
    assert set(by_id) == set(want)
    for eid, e in by_id.items():
        assert (e.kind, e.call_id, e.payload) == (
            want[eid].kind,
            want[eid].call_id,
            want[eid].payload,
        )
    # one scorecard per call, equal to the in-process scorecard of the same utterances
    cards = defaultdict(list)
    for e in by_id.values():
        if e.kind.value == "scorecard":
            cards[e.call_id].append(e.payload)
    assert {c: len(v) for c, v in cards.items()} == dict.fromkeys(expected, 1)
    for t, _ in calls:
        j = expected[t.call.call_id]
        ref = reference_scorecard(pack, t.call, t.utterances, j.ended())
        assert _comparable(cards[t.call.call_id][0]) == _comparable(ref)
    # the store both evaluators write (PostgreSQL): each call once, its scorecard and its
    # utterances, the victim's calls included
    with Store(pg_database, readonly=True) as st:
        stored = st.execute(
            "SELECT call_id, run_id, score, complete FROM results ORDER BY call_id"
        ).fetchall()
        utts = dict(
            st.execute("SELECT call_id, COUNT(*) FROM utterances GROUP BY call_id").fetchall()
        )
    run_id = f"live:{pack.name}:{pack.version}"
    assert [tuple(r) for r in stored] == [
        (c, run_id, round(cards[c][0]["score"], 2), 1) for c in sorted(expected)
    ]
    assert utts == {c: len(j.fed) for c, j in expected.items()}
    # the webhook: exactly one notification per critical finding
    notified = Counter(h["event"]["event_id"] for h in hooks if h["type"] == "critical_finding")
    assert set(notified) == crit
    assert all(n == 1 for n in notified.values()), notified
    assert summary["records"] > 0
    # the survivor took over a call the victim had left open, with events already emitted
    took = re.findall(r"assigned \(changelog: (\d+) call\(s\), (\d+) closed\)", survivor_log)
    assert any(int(n) > int(c) for n, c in took), survivor_log
    total = sum(len(j.outbox) for j in expected.values())
    assert summary["events"] < total  # the victim's part was not emitted again
    print(  # noqa: T201 - the figures of the run, for the report
        f"\nevaluate failover: {len(events)} events read, {raw_dups} duplicate(s) before "
        f"dedupe, {len(crit)} webhook notifications, survivor summary {summary}, "
        f"{time.monotonic() - t_start:.1f} s"
    )


def test_events_leave_after_the_poll_that_made_them_not_at_the_commit(
    kafka_server: Any, tmp_path: Path
) -> None:
    """With commits an hour apart, a call's first utterances reach the sinks within a few
    seconds (a poll) and nothing is committed meanwhile: emission (with the changelog entry)
    follows each poll that made events; the commit comes at its interval or at the end."""
    from qa_pipeline.evaluate_stage import EvaluateStage
    from qa_pipeline.sinks.base import FanOut
    from qa_pipeline.sinks.kafka import KafkaSinkConfig

    bootstrap = kafka_server.bootstrap
    tag = f"emit-now-{os.getpid()}-{int(time.time())}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(f"{tag}.utterances", num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    t = make_call(600, random.Random(41), 20)
    msgs = utterance_stream(t, session_id="emit-now")
    first = msgs[: len(msgs) // 2]  # the call goes on: no leg has ended
    assert not any(type(m).__name__ == "LegEnd" for m in first)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for m in first:
        producer.send(
            f"{tag}.utterances", key=m.call_id.encode(), value=encode(m), headers=headers(m)
        )
    producer.flush()
    producer.close()

    got: list[tuple[float, Event]] = []

    class Keep:
        def emit(self, event: Event) -> None:
            got.append((time.monotonic(), event))

        def flush(self, timeout: float | None = None) -> None:
            pass

        def close(self) -> None:
            pass

    stage = EvaluateStage(
        KafkaSinkConfig(bootstrap_servers=(bootstrap,)),
        load_pack(),
        FanOut([("keep", Keep())]),
        topic=f"{tag}.utterances",
        group=f"{tag}-eval",
        changelog=f"{tag}.emitted",
        commit_every_s=3600,
        session_timeout_s=6,
    )
    runner = threading.Thread(target=stage.run, daemon=True)
    runner.start()
    tp = TopicPartition(f"{tag}.utterances", 0)
    probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{tag}-eval")
    try:
        deadline = time.monotonic() + 30
        while not any(e.kind.value == "utterance" for _, e in got):
            assert time.monotonic() < deadline, "no event emitted before the commit interval"
            time.sleep(0.05)
        assert probe.committed(tp) is None  # emitted, not committed: the interval is an hour
    finally:
        stage.stop()
        runner.join(timeout=30)
    assert not runner.is_alive()
    try:
        # the last checkpoint commits: the first record of the call still open
        assert probe.committed(tp) == 0
    finally:
        probe.close()
    kinds = Counter(e.kind.value for _, e in got)
    assert kinds["utterance"] >= 3 and kinds["scorecard"] == 0
