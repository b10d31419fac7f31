"""The evaluator's join, release order, numbering, events and commit offsets, with no
broker: a call's utterance stream (as the ASR workers publish it) fed in interleaved and
duplicated orders gives the scorecard the recorded path gives for the same utterances."""

from __future__ import annotations

import random
from typing import Any

import pytest

from qa_pipeline.evaluate_stage import (
    CallJoin,
    Emitted,
    PartitionCalls,
    event_id,
    reference_scorecard,
)
from qa_pipeline.messages import Role, Scorecard, Utterance, to_dict
from qa_pipeline.rules import RulePack, load_pack
from qa_pipeline.sinks.base import Event, EventKind
from qa_pipeline.testing import make_call, transcript
from qa_pipeline.testing.utterance_streams import interleave, utterance_stream
from qa_pipeline.wire import LegEnd, LegStart, Watermark, WireMessage, WireUtterance, decode, encode


@pytest.fixture(scope="module")
def pack() -> RulePack:
    return load_pack()


def comparable(card: Scorecard) -> dict[str, Any]:
    """A scorecard without the evaluator's extras and the findings' ``decided_at`` (the
    watermark clock decides a clock rule when its time comes; the recorded path at the
    next utterance)."""
    d = to_dict(card)
    d.pop("extras")
    d.pop("complete")
    d.pop("incomplete_reasons")
    for f in d["findings"]:
        f.pop("decided_at")
    return d


def events_key(events: list[Event]) -> list[tuple[str, str, int, Any]]:
    return [(e.event_id, e.kind.value, e.seq, e.payload) for e in events]


def run(pack: RulePack, msgs: list[WireMessage]) -> CallJoin:
    join = CallJoin(msgs[0].call_id, pack)
    for m in msgs:
        join.take(m)
    return join


def test_interleaved_and_duplicated_streams_score_as_in_process(pack: RulePack) -> None:
    rng = random.Random(17)
    earlier = 0
    for i in range(25):
        t = make_call(i, rng, rng.randrange(3, 45))
        msgs = utterance_stream(t, session_id=f"session-{i}")
        runs = [run(pack, msgs)] + [
            run(pack, interleave(msgs, rng, duplicates=dup)) for dup in (0.0, 0.3, 0.3)
        ]
        first = runs[0]
        assert first.closed and first.scorecard is not None
        assert first.scorecard.complete
        ref = reference_scorecard(pack, t.call, t.utterances, first.ended())
        assert comparable(first.scorecard) == comparable(ref), t.call.call_id
        # a clock rule is decided on time from the watermarks, never later than in-process
        for a, b in zip(first.scorecard.findings, ref.findings, strict=True):
            assert a.decided_at <= b.decided_at
            earlier += a.decided_at < b.decided_at
        # numbered as the recorded path numbers them
        assert [
            (u.index, u.start, u.channel) for u in sorted(first.fed, key=lambda u: u.index)
        ] == [
            (k, u.start, u.channel)
            for k, u in enumerate(sorted(t.utterances, key=lambda u: (u.start, u.channel)))
        ]
        # sparse watermarks (or none but the leg ends): the clock moves later, the result
        # is the same
        for step in (7.0, 10_000.0):
            sparse = run(pack, interleave(utterance_stream(t, step_s=step), rng))
            assert sparse.scorecard is not None
            assert comparable(sparse.scorecard) == comparable(ref)
        # whatever order and duplicates the messages came in: the same events, same ids
        for other in runs[1:]:
            assert other.scorecard == first.scorecard
            assert events_key(other.outbox) == events_key(first.outbox)
    assert earlier > 0  # some clock rule was decided before the next utterance came


def test_events_and_ids(pack: RulePack) -> None:
    t = make_call(3, random.Random(3), 30)
    join = run(pack, utterance_stream(t, session_id="s-3"))
    ev = join.outbox
    kinds = [e.kind for e in ev]
    assert kinds[-2:] == [EventKind.SCORECARD, EventKind.TRANSCRIPT]
    assert [e.seq for e in ev] == list(range(len(ev)))
    assert len({e.event_id for e in ev}) == len(ev)
    assert ev[-2].event_id == event_id("s-3", "scorecard")
    utts = [e for e in ev if e.kind is EventKind.UTTERANCE]
    assert len(utts) == len(t.utterances)
    assert {e.event_id for e in utts} == {
        event_id("s-3", f"utterance/{k}") for k in range(len(t.utterances))
    }
    findings = [e for e in ev if e.kind is EventKind.FINDING]
    alerts = [e for e in ev if e.kind is EventKind.ALERT]
    card = join.scorecard
    assert card is not None and len(findings) == len(card.findings)
    assert len(alerts) == sum(f.severity.value == "critical" for f in card.findings)


def _utt(ch: int, seq: int, start: float, end: float, text: str) -> WireUtterance:
    role = Role.AGENT if ch == 0 else Role.CUSTOMER
    u = Utterance(call_id="c", index=seq, channel=ch, role=role, start=start, end=end, text=text)
    return WireUtterance(call_id="c", channel=ch, seq=seq, utterance=u)


def _legs() -> list[WireMessage]:
    t = transcript([], call_id="c")
    return [
        LegStart(call_id="c", channel=ch, role=r, call=t.call)
        for ch, r in enumerate(t.call.channels)
    ]


def test_release_waits_for_the_other_legs_watermark(pack: RulePack) -> None:
    join = CallJoin("c", pack)
    for m in _legs():
        join.take(m)
    join.take(_utt(0, 0, 1.0, 2.0, "您好"))
    join.take(Watermark(call_id="c", channel=0, time=2.5))
    join.take(Watermark(call_id="c", channel=1, time=1.5))
    assert join.fed == []  # the customer may still have said something before 2.0
    join.take(_utt(1, 0, 1.2, 1.8, "喂"))  # ...and did: it ends first, starts later
    join.take(Watermark(call_id="c", channel=1, time=2.0))
    assert [(u.channel, u.index) for u in join.fed] == [(1, 1), (0, 0)]  # end order, call order
    join.take(_utt(0, 0, 1.0, 2.0, "您好"))  # a duplicate: nothing new
    assert len(join.fed) == 2 and join.duplicates == 1


def test_clock_rules_fire_from_watermarks_before_the_call_ends(pack: RulePack) -> None:
    """Only the customer speaks; the watermarks move the call clock on: the rules that
    wait for the agent decide before any leg ends."""
    join = CallJoin("c", pack)
    for m in _legs():
        join.take(m)
    join.take(_utt(1, 0, 0.5, 1.5, "喂，你好"))
    for k in range(1, 121):
        for ch in (0, 1):
            join.take(Watermark(call_id="c", channel=ch, time=k * 0.5))
    found = [e for e in join.outbox if e.kind is EventKind.FINDING]
    assert found and not join.closed
    assert all(e.payload["decided_at"] <= 60.0 for e in found)
    join.take(LegEnd(call_id="c", channel=0, end=70.0))
    assert not join.closed
    join.take(LegEnd(call_id="c", channel=1, end=70.0))
    assert join.closed


def _records(msgs: list[WireMessage]) -> list[bytes]:
    return [encode(m) for m in msgs]


def _partition_log(pack: RulePack, n: int, seed: int) -> tuple[list[bytes], list[Any]]:
    """Several calls' streams interleaved in one partition (each call's order kept)."""
    rng = random.Random(seed)
    calls = [make_call(100 + i, rng, rng.randrange(4, 25)) for i in range(n)]
    streams = [_records(utterance_stream(t, session_id=f"p-{i}")) for i, t in enumerate(calls)]
    log: list[bytes] = []
    pos = [0] * n
    while any(pos[i] < len(streams[i]) for i in range(n)):
        i = rng.choice([i for i in range(n) if pos[i] < len(streams[i])])
        log.append(streams[i][pos[i]])
        pos[i] += 1
    return log, calls


def test_commit_offset_is_the_oldest_open_calls_first_record(pack: RulePack) -> None:
    log, calls = _partition_log(pack, 3, 5)
    part = PartitionCalls(0, pack)
    assert part.commit_offset() is None
    first: dict[str, int] = {}
    held_back = 0
    for off, value in enumerate(log):
        first.setdefault(decode(value).call_id, off)
        part.handle(off, value)
        still = list(part.calls)
        want = min(first[c] for c in still) if still else off + 1
        assert part.commit_offset() == want
        held_back += want < off + 1
    assert held_back > len(log) // 2  # the calls overlap: most of the time one is open
    assert set(part.closed) == {t.call.call_id for t in calls}
    assert part.commit_offset() == len(log)


def test_failover_replays_open_calls_and_emits_nothing_twice(pack: RulePack) -> None:
    log, calls = _partition_log(pack, 4, 9)
    whole = PartitionCalls(0, pack)
    for off, v in enumerate(log):
        whole.handle(off, v)
    reference = whole.drain()
    for cut in (len(log) // 4, len(log) // 2, 3 * len(log) // 4):
        # the first owner: up to ``cut``, checkpointed (events, changelog, offset), dies
        a = PartitionCalls(0, pack)
        for off in range(cut):
            a.handle(off, log[off])
        got = a.drain()
        changelog = a.changes()
        committed = a.commit_offset()
        assert committed is not None
        # ...and reads a little more it never checkpoints (lost with it)
        for off in range(cut, min(cut + 7, len(log))):
            a.handle(off, log[off])
        # the next owner: the changelog, then the records from the committed offset
        b = PartitionCalls(0, pack, emitted=changelog)
        for off in range(committed, len(log)):
            b.handle(off, log[off])
        got += b.drain()
        assert sorted(events_key(got)) == sorted(events_key(reference)), cut
        assert len({e.event_id for e in got}) == len(got)


def test_undecodable_records_are_counted_and_skipped(pack: RulePack, caplog: Any) -> None:
    part = PartitionCalls(3, pack)
    part.handle(0, b"\x00not msgpack")
    part.handle(1, None)
    assert part.undecodable == 2 and part.commit_offset() == 2
    assert "partition 3 offset 0" in caplog.text


def test_idle_call_is_scored_incomplete(pack: RulePack) -> None:
    now = [0.0]
    part = PartitionCalls(0, pack, idle_timeout_s=30, clock=lambda: now[0])
    msgs = [
        *_legs(),
        _utt(0, 0, 0.5, 2.0, "您好，请问有什么可以帮您"),
        LegEnd(call_id="c", channel=0, end=5.0),
    ]
    for off, m in enumerate(msgs):
        part.handle(off, encode(m))
    assert part.expire() == []
    now[0] = 31.0
    assert part.expire() == ["c"]
    events = part.drain()
    card = [e for e in events if e.kind is EventKind.SCORECARD][0].payload
    assert card["complete"] is False and card["incomplete_reasons"] == ["timeout"]
    assert part.changes()["c"] == Emitted(part.closed["c"], len(events), True)
    # a late record of the closed call is skipped
    part.handle(9, encode(Watermark(call_id="c", channel=1, time=9.0)))
    assert part.skipped_closed == 1 and part.drain() == []


def test_cli_broker_down_is_a_clear_error_and_nonzero_exit(tmp_path: Any) -> None:
    import socket
    import time

    from typer.testing import CliRunner

    from qa_pipeline.cli import app

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sinks:\n  jsonl: null\n  kafka:\n    bootstrap_servers: ['kafka.invalid:9092']\n"
        "    security_protocol: PLAINTEXT\n    max_block_ms: 1000\n"
        "    topics: {utterances: qa.events.utterances}\n",
        encoding="utf-8",
    )
    t0 = time.monotonic()
    res = CliRunner().invoke(
        app, ["evaluate", "--config", str(cfg), "--kafka", f"127.0.0.1:{port}"]
    )
    assert time.monotonic() - t0 < 6
    assert res.exit_code == 1, res.output
    assert f"error: Kafka at 127.0.0.1:{port} (PLAINTEXT): broker down or unreachable" in (
        res.output
    )


def test_cli_refuses_sinks_writing_to_its_input_topic(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from qa_pipeline.cli import app

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sinks:\n  jsonl: null\n  kafka:\n    bootstrap_servers: ['127.0.0.1:9']\n"
        "    topics: {findings: qa.asr.utterances}\n",
        encoding="utf-8",
    )
    res = CliRunner().invoke(app, ["evaluate", "--config", str(cfg)])
    assert res.exit_code == 2
    assert "sends events to qa.asr.utterances, the topic this stage reads" in res.output
    # the default sinks do not: their utterance events are JSON on another topic
    from qa_pipeline.asr_worker import DEFAULT_OUTPUT
    from qa_pipeline.evaluate_stage import DEFAULT_TOPIC
    from qa_pipeline.sinks.kafka import KafkaSinkConfig

    topics = KafkaSinkConfig(bootstrap_servers=("127.0.0.1:9",)).topics.model_dump().values()
    assert DEFAULT_TOPIC == DEFAULT_OUTPUT and DEFAULT_TOPIC not in topics


def test_segments_without_words_are_not_fed_and_lost_ones_mark_the_card(pack: RulePack) -> None:
    t = make_call(8, random.Random(8), 20)
    msgs = utterance_stream(t, session_id="d", dropped=(2, 5))
    join = run(pack, msgs)
    kept = [u for u in t.utterances if u.index not in (2, 5)]
    assert join.scorecard is not None and join.scorecard.complete  # no_speech: not a loss
    assert len(join.fed) == len(kept)
    ref = reference_scorecard(pack, t.call, kept, join.ended())
    assert comparable(join.scorecard) == comparable(ref)
    # a segment the ASR lost (not a guard's drop) makes the scorecard incomplete
    lost = [
        WireUtterance(call_id=m.call_id, channel=m.channel, seq=m.seq, dropped="failed")
        if isinstance(m, WireUtterance) and m.utterance is not None and m.utterance.index == 0
        else m
        for m in msgs
    ]
    card = run(pack, lost).scorecard
    assert card is not None and not card.complete
    assert card.incomplete_reasons == ("asr_failed",)


def test_a_revoked_partition_stops_reporting_its_lag(pack: RulePack) -> None:
    """After a rebalance the partition's lag is its next owner's to report: a stale figure
    here would add to it in the lag alert and panel. The lag is the ASR workers' metric,
    with the same labels (group, topic, partition)."""
    from qa_pipeline.evaluate_stage import EvaluateCounts, EvaluateMetrics, EvaluateStage

    stage = EvaluateStage.__new__(EvaluateStage)  # the loop's state, without a broker
    stage.topic, stage._held = "utt", {}
    stage.parts = {3: PartitionCalls(3, pack), 5: PartitionCalls(5, pack)}
    stage.counts, stage.metrics = EvaluateCounts(), EvaluateMetrics(group="eval-a")
    stage.checkpoint = lambda *a, **k: None  # type: ignore[method-assign]
    for p, lag in ((3, 42), (5, 7)):
        stage.metrics.lag.set("utt", p, lag)

    def lags() -> dict[tuple[str, str, str], float]:
        (fam,) = [m for m in stage.metrics.registry.collect() if m.name == "qa_consumer_lag"]
        return {
            (s.labels["group"], s.labels["topic"], s.labels["partition"]): s.value
            for s in fam.samples
        }

    assert lags() == {("eval-a", "utt", "3"): 42, ("eval-a", "utt", "5"): 7}
    stage.revoked([3])
    assert lags() == {("eval-a", "utt", "5"): 7} and set(stage.parts) == {5}


def test_the_oldest_open_call_age_comes_from_its_first_record(pack: RulePack) -> None:
    """``qa_eval_oldest_open_call_age_seconds``: from the Kafka timestamp of the oldest open
    call's first record (a new owner re-reading the call gets the same age), 0 once every
    call closed; a call that never ends keeps it growing (the alert QAEvalCallOpenTooLong)."""
    import time

    from qa_pipeline.evaluate_stage import EvaluateCounts, EvaluateMetrics, EvaluateStage

    log, calls = _partition_log(pack, 3, 5)
    now_ms = int(time.time() * 1000)
    part = PartitionCalls(0, pack)
    assert part.oldest_open() is None
    cut = len(log) // 2
    for off in range(cut):  # the first record 2 h old, then one second apart
        part.handle(off, log[off], now_ms - 7_200_000 + 1000 * off)
    assert part.calls and part.oldest_open() == pytest.approx(time.time() - 7200, abs=5)

    class Done:
        def get(self, timeout: float) -> None:
            pass

    class Broker:  # the consumer's end offsets, the sinks and the changelog producer
        def __init__(self) -> None:
            self.events: list[Event] = []
            self.changelog: list[tuple[str, bytes, bytes]] = []

        def highwater(self, tp: Any) -> int:
            return len(log)

        def emit_all(self, events: list[Event]) -> None:
            self.events += events

        def flush(self, timeout: float) -> None:
            pass

        def send(self, topic: str, *, key: bytes, value: bytes, partition: int) -> Done:
            self.changelog.append((topic, key, value))
            return Done()

    broker = Broker()
    stage = EvaluateStage.__new__(EvaluateStage)
    stage.topic, stage.changelog, stage.parts = "utt", "utt.emitted", {0: part}
    stage._held = {}
    stage.counts, stage.metrics = EvaluateCounts(), EvaluateMetrics(group="eval-a")
    stage.consumer = stage.sinks = stage.producer = broker  # type: ignore[assignment]
    stage.flush_timeout_s, stage._last_commit = 1.0, 0.0

    def sample(name: str, **labels: str) -> float:
        got = stage.metrics.registry.get_sample_value(name, labels)
        assert got is not None, name
        return got

    stage.checkpoint([0], commit=False)
    assert 7190 < sample("qa_eval_oldest_open_call_age_seconds", group="eval-a") < 7300
    assert sample("qa_consumer_lag", group="eval-a", topic="utt", partition="0") == len(log) - cut
    for off in range(cut, len(log)):  # the rest: every call ends
        part.handle(off, log[off], None)
    assert not part.calls and part.oldest_open() is None
    stage.checkpoint([0], commit=False)
    assert sample("qa_eval_oldest_open_call_age_seconds", group="eval-a") == 0
    assert sample("qa_consumer_lag", group="eval-a", topic="utt", partition="0") == 0
    assert sum(e.kind is EventKind.SCORECARD for e in broker.events) == len(calls)
    # without a record timestamp, the first sight of the call stands in for it
    fresh = PartitionCalls(1, pack)
    fresh.handle(0, log[0], -1)
    assert fresh.oldest_open() == pytest.approx(time.time(), abs=5)


class _SeekingConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[Any, int]] = []

    def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_a_partition_kept_across_a_rebalance_is_re_read_from_its_safe_offset(
    pack: RulePack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kafka-python keeps the fetch position of a partition that stays with the same member
    through a rebalance; the stage forgets the partition's open calls at the revocation, so
    it must seek back to their first records (found by the chain test: a call open across a
    rebalance after a broker restart never closed)."""
    from kafka import TopicPartition

    from qa_pipeline.evaluate_stage import EvaluateCounts, EvaluateMetrics, EvaluateStage

    log, _ = _partition_log(pack, 4, 9)
    whole = PartitionCalls(0, pack)
    for off, v in enumerate(log):
        whole.handle(off, v)
    reference = whole.drain()

    stage = object.__new__(EvaluateStage)
    stage.topic, stage.pack, stage.tick_s, stage.idle_timeout_s = "utt", pack, 0.5, 300.0
    stage.parts, stage._resume, stage.counts = {}, {}, EvaluateCounts()
    stage._held = {}
    stage.metrics = EvaluateMetrics()
    stage.consumer = consumer = _SeekingConsumer()
    emitted: list[Event] = []
    changelog: dict[int, dict[str, Emitted]] = {}

    def checkpoint(partitions: list[int], commit: bool = True) -> None:
        for p in partitions:
            emitted.extend(stage.parts[p].drain())
            changelog.setdefault(p, {}).update(stage.parts[p].changes())

    monkeypatch.setattr(stage, "checkpoint", checkpoint)
    monkeypatch.setattr(stage, "_read_changelog", lambda ps: {p: changelog.get(p, {}) for p in ps})

    stage.assigned([0, 1])
    assert consumer.seeks == []  # new partitions: kafka-python's committed offsets
    cut = len(log) // 2
    for off in range(cut):
        stage.parts[0].handle(off, log[off])
    safe = stage.parts[0].commit_offset()
    assert safe is not None and safe < cut and stage.parts[0].calls  # a call is open
    stage.revoked([0, 1])
    stage.assigned([0])  # kept: back to the first record of its oldest open call
    assert consumer.seeks == [(TopicPartition("utt", 0), safe)]
    for off in range(safe, len(log)):
        stage.parts[0].handle(off, log[off])
    checkpoint([0])
    assert sorted(events_key(emitted)) == sorted(events_key(reference))
    assert len({e.event_id for e in emitted}) == len(emitted)
    # a partition revoked, then not this member's for a generation: no seek of ours
    stage.revoked([0])
    stage.assigned([])
    stage.assigned([0])
    assert len(consumer.seeks) == 1


def test_changelog_and_offsets_wait_while_the_store_has_calls_unwritten(pack: RulePack) -> None:
    """While the store has not written the calls it was given (down, or slow), a checkpoint
    emits the events but holds their changelog entries and the offsets: were the process
    killed then, the next owner would re-read those calls, emit them again (same ids) and
    store them, instead of finding them in the changelog and skipping them (their rows lost,
    uncounted). Once the store has written them, everything held goes out; a partition
    revoked meanwhile drops its held entries (its next owner replays the calls)."""
    from qa_pipeline.evaluate_stage import EvaluateCounts, EvaluateMetrics, EvaluateStage
    from qa_pipeline.store.writer import StoreSink

    log, calls = _partition_log(pack, 3, 7)

    class Done:
        def get(self, timeout: float) -> None:
            pass

    class Writer:  # what StoreSink needs of a StoreWriter, with a settable backlog
        unwritten = 0

        @property
        def pending(self) -> int:
            return self.unwritten

    class Broker:  # the sinks (with a store sink), the consumer and the changelog producer
        def __init__(self, writer: Writer) -> None:
            sink = StoreSink.__new__(StoreSink)
            sink.writer = writer  # type: ignore[assignment]
            self.sinks = [("store", sink)]
            self.events: list[Event] = []
            self.changelog: list[bytes] = []
            self.commits: list[Any] = []

        def highwater(self, tp: Any) -> int:
            return len(log)

        def emit_all(self, events: list[Event]) -> None:
            self.events += events

        def flush(self, timeout: float) -> None:
            pass

        def send(self, topic: str, *, key: bytes, value: bytes, partition: int) -> Done:
            self.changelog.append(key)
            return Done()

        def commit(self, offsets: Any) -> None:
            self.commits.append(offsets)

    writer = Writer()
    broker = Broker(writer)
    stage = EvaluateStage.__new__(EvaluateStage)
    stage.topic, stage.changelog, stage._held = "utt", "utt.emitted", {}
    stage.parts = {0: PartitionCalls(0, pack), 1: PartitionCalls(1, pack)}
    stage.counts, stage.metrics = EvaluateCounts(), EvaluateMetrics(group="eval-a")
    stage.consumer = stage.sinks = stage.producer = broker  # type: ignore[assignment]
    stage.flush_timeout_s, stage._last_commit = 1.0, 0.0
    for off, v in enumerate(log):  # every call of partition 0 ends
        stage.parts[0].handle(off, v)

    writer.unwritten = 2  # the store is behind
    stage.checkpoint([0, 1])
    cards = [e for e in broker.events if e.kind is EventKind.SCORECARD]
    assert len(cards) == len(calls)  # the events went out
    assert broker.changelog == [] and broker.commits == []  # nothing recorded as done
    held = dict(stage._held[0])
    assert len(held) == len(calls)
    sent = len(broker.events)
    stage.checkpoint([0, 1])  # still behind: still held, nothing emitted twice
    assert broker.changelog == [] and broker.commits == [] and len(broker.events) == sent
    writer.unwritten = 0  # written: the held entries and the offsets go out
    stage.checkpoint([0, 1])
    assert sorted(broker.changelog) == sorted(k.encode() for k in held)
    assert len(broker.commits) == 1 and stage._held.get(0, {}) == {}
    assert [e for e in broker.events if e.kind is EventKind.SCORECARD] == cards

    # a revocation while held: the entries are dropped, not sent by this process
    for off, v in enumerate(log):
        stage.parts[1].handle(off, v)
    writer.unwritten = 1
    stage.revoked([1])
    assert 1 not in stage._held and 1 not in stage.parts
    assert len(broker.changelog) == len(calls)
