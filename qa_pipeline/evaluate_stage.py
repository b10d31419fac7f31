"""``qa-pipeline evaluate``: the utterances topic → the rules per call → findings, alerts and
scorecards through the configured sinks (the last stage of the distributed pipeline).

A kafka-python consumer in group ``qa-eval`` reads ``qa.asr.utterances`` (keyed by call id, so a
call's messages are in one partition, in order: :mod:`qa_pipeline.wire`) and commits its
offsets by hand. Per call (:class:`CallJoin`):

* utterances are de-duplicated by ``(channel, seq)``, watermarks and leg ends are
  idempotent; the legs are joined by call id (their number: the ``channels`` of the call's
  :class:`~qa_pipeline.wire.LegStart`);
* an utterance goes to the rule engine only once every leg's watermark (or end) has passed
  its end: by then every utterance that starts before it is known, so it is numbered as the
  recorded path numbers them (``index``: call order, start time then channel) and fed in the
  recorded path's order (end, start, index: ``score_transcript``);
* the rules' clock moves on a grid of ``tick_s`` (0.5 s) of call clock, a grid point only
  when every leg's watermark passed it and no utterance that starts before it is still to
  be fed (silence, hold and response-gap rules fire on the call clock, never ahead of
  speech not yet seen). The sequence of feeds and clock steps is a function of the call's
  utterances alone, never of the order or the duplicates the messages came in;
* the call ends when all its legs ended (the scorecard), or after ``idle_timeout_s`` of wall
  clock without a message (scored with what arrived, ``complete: false``, reason
  ``timeout``).

Events (utterances, findings, alerts, the scorecard, the transcript) go through the sinks
``score`` and ``serve`` use (JSONL, the Kafka topics of ``sinks.kafka``, and the ``notify:``
section's notifiers) with deterministic ids: uuid5 of the call's session and the event's
place in the call (an utterance's index, a rule's n-th finding, the scorecard), so a replay
produces the same ids.

Failover (:class:`PartitionCalls`): offsets are committed per partition only up to the first
record of the oldest call still open on it, so a new owner re-reads every open call from its
first message and rebuilds its rule state by replaying it. What was already emitted is
recorded in a compacted changelog topic (``qa.eval.emitted``, the same partition number as
the call's utterances): per call, its session, how many events were emitted and whether the
call is closed. A new owner reads the changelog partitions it was assigned before it
processes anything; the replayed call emits the same events in the same order (the sequence
is deterministic), the first ``emitted`` of them are not emitted again, and records of
closed calls are skipped. The changelog entry is written after the sinks flushed the
events and before the offsets are committed: a crash between the two leaves at most that
one batch to be emitted again (same ids: consumers de-duplicate; the notifier de-duplicates
within a process).

The store (``store:`` / ``--store``; out/qa-store.sqlite when not said, a ``postgresql://``
URL for a database the evaluators share, null = none): every ended call's transcript and
scorecard go to :class:`~qa_pipeline.store.writer.StoreSink` in the fan-out, whose writer
thread upserts them (keyed by call id and the live run ``live:<pack>:<version>``) off the
consumer loop; the checkpoint's flush waits for it while the store is up, and while it still
has calls unwritten (down, or behind) the changelog entries and the offsets are held back,
so both are recorded only after the calls are stored (a process killed meanwhile leaves
them to the next owner, which re-reads and stores them). A call replayed by a new owner after a rebalance
is not emitted again (the changelog), and were it written again it would replace its rows,
never add a second result.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import json
import logging
import math
import sys
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field

from .cli_errors import fail
from .config import PipelineConfig
from .errors import QAError
from .kafka_security import KafkaConnectError, connect
from .messages import (
    SCHEMA_VERSION,
    CallEnded,
    CallInfo,
    Finding,
    Scorecard,
    Severity,
    Utterance,
    replace,
    to_dict,
)
from .notify import NotifyConfig
from .rules import CallEvaluator, RulePack, load_pack
from .sinks.base import EVENT_NAMESPACE, Event, EventKind, FanOut, utc_now_iso
from .sinks.kafka import KafkaSinkConfig, stage_kafka_config
from .stage_health import ConsumerLag, Heartbeat, serve_health, stop_on_signals
from .store.writer import LiveRun, StoreSink, StoreWriter
from .transcript import Transcript, transcript_to_dict
from .wire import LegEnd, LegStart, Watermark, WireError, WireSegment, WireUtterance, decode

log = logging.getLogger("qa_pipeline.evaluate")

DEFAULT_TOPIC = "qa.asr.utterances"
DEFAULT_GROUP = "qa-eval"
DEFAULT_CHANGELOG = "qa.eval.emitted"
#: the rules' clock grid (call-clock seconds): the watermarks' step
TICK_S = 0.5
#: records per poll; a poll that brings fewer means the evaluator has caught up
MAX_POLL_RECORDS = 500
IDLE_TIMEOUT_S = 300.0
#: the changelog topic as this stage creates it: one entry per call kept (compacted), and
#: none kept beyond 7 days (an evaluator re-reads a call only while it is open, and the
#: idle timeout closes every call long before that)
CHANGELOG_CONFIG = {"cleanup.policy": "compact,delete", "retention.ms": str(7 * 86_400_000)}
#: exit status when the broker cannot be reached
EXIT_BROKER = 1
INF = math.inf
# ASR drops that say the segment held nothing to transcribe (not a loss)
_GUARD = frozenset({"hallucination", "no_speech", "empty"})


class EvaluateConfig(PipelineConfig):
    """The pipeline config (rules, sinks, privacy) and, optionally, the ``notify:`` section
    (critical findings and low scores to a webhook, WeCom, DingTalk, e-mail)."""

    notify: NotifyConfig | None = None
    store: str | None = Field(
        default=None,
        description="where every ended call is written (a SQLite path or a postgresql:// "
        "URL shared by the evaluators); out/qa-store.sqlite when not said, null = none",
    )
    store_queue: int = Field(
        default=1000, ge=1, description="ended calls waiting for the store before drops"
    )


def session_of(call_id: str, info: CallInfo | None) -> str:
    """The call's session id: the one its leg start names, else one derived from the call id
    (deterministic, so a replay gives the same event ids)."""
    if info is not None and info.session_id:
        return info.session_id
    return uuid.uuid5(EVENT_NAMESPACE, f"call\x1f{call_id}").hex


def event_id(session: str, key: str) -> str:
    """uuid5 of the session and the event's place in the call (``utterance/3``,
    ``finding/RULE/0``, ``alert/RULE/0``, ``scorecard``, ``transcript``)."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{session}\x1f{key}").hex


@dataclass
class _Leg:
    horizon: float = 0.0  # no utterance of this leg starting before it is still to come
    end: float | None = None  # LegEnd

    @property
    def through(self) -> float:
        return INF if self.end is not None else self.horizon


class CallJoin:
    """One call's legs joined and evaluated (see the module docstring). Feed it the call's
    wire messages in any order with any duplicates (:meth:`take`); events come out in a
    deterministic order on ``outbox``, the first ``skip`` of them withheld (a previous
    owner emitted them)."""

    def __init__(self, call_id: str, pack: RulePack, *, tick_s: float = TICK_S, skip: int = 0):
        if tick_s <= 0:
            raise ValueError("tick_s must be > 0")
        self.call_id = call_id
        self.pack = pack
        self.tick_s = tick_s
        self.skip = skip
        self.info: CallInfo | None = None
        self.session = ""
        self.legs: dict[int, _Leg] = {}
        self.seen: set[tuple[int, int]] = set()
        self.starts: list[tuple[float, int]] = []  # kept utterances known: (start, channel)
        self._heap: list[tuple[float, float, int, Utterance]] = []  # not yet fed, end order
        self.fed: list[Utterance] = []
        self.evaluator: CallEvaluator | None = None
        self._grid = 1
        self.emitted = 0  # events made so far (withheld ones included)
        self.outbox: list[Event] = []
        self.dropped: Counter[str] = Counter()
        self._rule_n: Counter[str] = Counter()
        self._found: list[Finding] = []
        self.scorecard: Scorecard | None = None
        self.duplicates = 0

    # -- messages in ----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.scorecard is not None

    @property
    def n_legs(self) -> int:
        return len(self.info.channels) if self.info is not None else 0

    def take(self, msg: Any) -> None:
        """One wire message of this call (a segment is not expected here: ignored)."""
        if self.closed or isinstance(msg, WireSegment):
            return
        if isinstance(msg, LegStart):
            if self.info is None:
                self.info = msg.call
                self.session = session_of(self.call_id, msg.call)
                self.evaluator = CallEvaluator(self.pack, msg.call)
            self.legs.setdefault(msg.channel, _Leg())
        elif isinstance(msg, Watermark):
            leg = self.legs.setdefault(msg.channel, _Leg())
            leg.horizon = max(leg.horizon, msg.time)
        elif isinstance(msg, LegEnd):
            leg = self.legs.setdefault(msg.channel, _Leg())
            if leg.end is None:
                leg.end = msg.end
        elif isinstance(msg, WireUtterance):
            key = (msg.channel, msg.seq)
            if key in self.seen:
                self.duplicates += 1
                return
            self.seen.add(key)
            u = msg.utterance
            if u is None:
                self.dropped[msg.dropped or "unknown"] += 1
            else:
                bisect.insort(self.starts, (u.start, u.channel))
                heapq.heappush(self._heap, (u.end, u.start, u.channel, u))
        self._run()

    @property
    def horizon(self) -> float:
        """No utterance of the call that starts before this is still to come."""
        n = self.n_legs
        if n == 0:
            return 0.0
        return min((self.legs[ch].through if ch in self.legs else 0.0) for ch in range(n))

    @property
    def all_ended(self) -> bool:
        n = self.n_legs
        return n > 0 and all(ch in self.legs and self.legs[ch].end is not None for ch in range(n))

    def call_end(self) -> float:
        return max((leg.end or 0.0 for leg in self.legs.values()), default=0.0)

    def _run(self) -> None:
        ev = self.evaluator
        if ev is None:
            return
        h = self.horizon
        done = self.all_ended
        end = self.call_end() if done else INF
        heap = self._heap
        while True:
            g = round(self._grid * self.tick_s, 6)
            # the next step of the call's one sequence: the next utterance in end order
            # when it ends by the next grid point or an utterance not yet fed starts before
            # it (the clock never passes speech not yet fed), else the grid point
            if heap and (heap[0][0] <= g or min(x[1] for x in heap) < g):
                u_end, u_start = heap[0][0], heap[0][1]
                if h >= u_end and h > u_start:
                    self._feed(heapq.heappop(heap)[3])
                    continue
                break
            if g <= h and g < end:
                self._findings(ev.advance(g))
                self._grid += 1
                continue
            if done and heap:  # past the last grid point before the end: the rest in order
                self._feed(heapq.heappop(heap)[3])
                continue
            break
        if done:
            self._end(())

    def _feed(self, u: Utterance) -> None:
        assert self.evaluator is not None
        index = bisect.bisect_left(self.starts, (u.start, u.channel))
        u = replace(u, index=index, call_id=self.call_id)
        self.fed.append(u)
        self._event(EventKind.UTTERANCE, f"utterance/{index}", to_dict(u))
        self._findings(self.evaluator.feed(u))

    def _findings(self, found: Iterable[Finding]) -> None:
        for f in found:
            n = self._rule_n[f.rule_id]
            self._rule_n[f.rule_id] = n + 1
            self._found.append(f)
            payload = to_dict(f)
            self._event(EventKind.FINDING, f"finding/{f.rule_id}/{n}", payload)
            if f.severity is Severity.CRITICAL:
                self._event(EventKind.ALERT, f"alert/{f.rule_id}/{n}", payload)

    def _event(self, kind: EventKind, key: str, payload: dict[str, Any]) -> None:
        pos = self.emitted
        self.emitted += 1
        if pos < self.skip:
            return
        self.outbox.append(
            Event(
                event_id=event_id(self.session, key),
                kind=kind,
                call_id=self.call_id,
                seq=pos,
                schema_version=SCHEMA_VERSION,
                produced_at=utc_now_iso(),
                payload=payload,
                session_id=self.session,
            )
        )

    # -- the end --------------------------------------------------------------------------

    def ended(self) -> CallEnded:
        n = max(self.n_legs, max(self.legs, default=-1) + 1)
        ends = tuple((self.legs[ch].end or 0.0) if ch in self.legs else 0.0 for ch in range(n))
        return CallEnded(call_id=self.call_id, end=self.call_end(), channel_ends=ends)

    def expire(self, reason: str = "timeout") -> Scorecard:
        """Score the call with what arrived (idle timeout): ``complete: false``."""
        if self.closed:
            assert self.scorecard is not None
            return self.scorecard
        if self.info is None:  # never saw a leg start (its records were before our offset)
            self.info = CallInfo(call_id=self.call_id)
            self.session = session_of(self.call_id, None)
            self.evaluator = CallEvaluator(self.pack, self.info)
        while self._heap:
            self._feed(heapq.heappop(self._heap)[3])
        for leg in self.legs.values():
            if leg.end is None:
                leg.end = max(leg.horizon, max((u.end for u in self.fed), default=0.0))
        self._end((reason,))
        assert self.scorecard is not None
        return self.scorecard

    def _end(self, reasons: tuple[str, ...]) -> None:
        ev = self.evaluator
        assert ev is not None
        ended = self.ended()
        card = ev.end(ended)
        emitted = set(self._found)
        self._findings([f for f in card.findings if f not in emitted])
        lost = {f"asr_{k}" for k, v in self.dropped.items() if v and k not in _GUARD}
        all_reasons = tuple(sorted(lost | set(reasons)))
        extras = dict(card.extras)
        extras.update(
            utterances=float(len(self.fed)),
            asr_dropped=float(sum(v for k, v in self.dropped.items() if k not in _GUARD)),
        )
        card = replace(
            card,
            extras=tuple(sorted(extras.items())),
            complete=not all_reasons,
            incomplete_reasons=all_reasons,
        )
        self.scorecard = card
        self._event(EventKind.SCORECARD, "scorecard", to_dict(card))
        assert self.info is not None
        transcript = self.transcript()
        payload = transcript_to_dict(transcript)
        payload["call"]["session_id"] = self.session
        self._event(EventKind.TRANSCRIPT, "transcript", payload)

    def transcript(self) -> Transcript:
        """The utterances fed, in index order, as a transcript (what ``score`` would
        score: :func:`reference_scorecard`)."""
        assert self.info is not None
        utts = tuple(sorted(self.fed, key=lambda u: u.index))
        return Transcript(call=self.info, utterances=utts, ended=self.ended())


def reference_scorecard(
    pack: RulePack, call: CallInfo, utterances: Iterable[Utterance], ended: CallEnded
) -> Scorecard:
    """The in-process scorecard of the same utterances: numbered in call order (start time,
    then channel) as the recorded path numbers them, scored by ``score_transcript``."""
    from .rules import score_transcript

    ordered = sorted(utterances, key=lambda u: (u.start, u.channel))
    utts = tuple(replace(u, index=i) for i, u in enumerate(ordered))
    return score_transcript(pack, Transcript(call=call, utterances=utts, ended=ended))


# -- one partition ------------------------------------------------------------------------


@dataclass(frozen=True)
class Emitted:
    """A changelog entry: how many of a call's events were emitted, and whether it closed."""

    session: str
    emitted: int
    closed: bool

    def to_json(self) -> bytes:
        d = {"session": self.session, "emitted": self.emitted, "closed": self.closed}
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Emitted:
        d = json.loads(data)
        return cls(str(d["session"]), int(d["emitted"]), bool(d["closed"]))


class PartitionCalls:
    """The calls of one utterances partition: records in (:meth:`handle`), events out
    (:meth:`drain`), the offset that is safe to commit (:meth:`commit_offset`) and the
    changelog entries to write (:meth:`changes`)."""

    MAX_CLOSED = 100_000

    def __init__(
        self,
        partition: int,
        pack: RulePack,
        *,
        tick_s: float = TICK_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        emitted: dict[str, Emitted] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.partition = partition
        self.pack = pack
        self.tick_s = tick_s
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock
        self.previous = dict(emitted or {})  # the changelog as read on assignment
        self.calls: dict[str, CallJoin] = {}
        self.first: dict[str, int] = {}
        #: when each open call's first record reached the topic (epoch seconds: the record's
        #: timestamp, the same for every owner that re-reads it)
        self.opened: dict[str, float] = {}
        self.last_seen: dict[str, float] = {}
        self.closed: OrderedDict[str, str] = OrderedDict(
            (k, e.session) for k, e in self.previous.items() if e.closed
        )
        self.next_offset: int | None = None
        self.undecodable = 0
        self.skipped_closed = 0
        self._changed: dict[str, Emitted] = {}
        self._recent: list[CallJoin] = []  # closed since the last drain

    def handle(self, offset: int, value: bytes | None, timestamp_ms: int | None = None) -> None:
        """One record; ``timestamp_ms``: its Kafka timestamp (None or < 0: unknown, the wall
        clock now stands in for it)."""
        self.next_offset = offset + 1
        try:
            if value is None:
                raise WireError("empty record")
            msg = decode(value)
        except WireError as e:
            self.undecodable += 1
            log.warning(
                "partition %d offset %d: undecodable record skipped (%s)", self.partition, offset, e
            )
            return
        cid = msg.call_id
        join = self.calls.get(cid)
        if join is None:
            if cid in self.closed:
                new_session = (
                    isinstance(msg, LegStart) and session_of(cid, msg.call) != self.closed[cid]
                )
                if not new_session:  # a replayed or late record of a finished call
                    self.skipped_closed += 1
                    return
                del self.closed[cid]  # the call id recurs: a new session
            join = self._open(cid, msg)
            self.first[cid] = offset
            ts = timestamp_ms if timestamp_ms is not None and timestamp_ms >= 0 else None
            self.opened[cid] = ts / 1000 if ts is not None else time.time()
        join.take(msg)
        self.last_seen[cid] = self.clock()
        if join.closed:
            self._close(cid)

    def _open(self, cid: str, msg: Any) -> CallJoin:
        skip = 0
        prev = self.previous.get(cid)
        if prev is not None and not prev.closed:
            info = msg.call if isinstance(msg, LegStart) else None
            if prev.session == session_of(cid, info):
                skip = prev.emitted
        join = CallJoin(cid, self.pack, tick_s=self.tick_s, skip=skip)
        self.calls[cid] = join
        return join

    def _close(self, cid: str) -> None:
        join = self.calls.pop(cid)
        self._recent.append(join)
        self.first.pop(cid, None)
        self.opened.pop(cid, None)
        self.last_seen.pop(cid, None)
        self.closed[cid] = join.session
        while len(self.closed) > self.MAX_CLOSED:
            self.closed.popitem(last=False)
        self._note(join)

    def _note(self, join: CallJoin) -> None:
        if join.emitted > join.skip or join.closed:
            self._changed[join.call_id] = Emitted(join.session, join.emitted, join.closed)

    def expire(self) -> list[str]:
        """Close the calls idle for ``idle_timeout_s`` (scorecards marked incomplete)."""
        now = self.clock()
        gone = [c for c, t in self.last_seen.items() if now - t >= self.idle_timeout_s]
        for cid in gone:
            join = self.calls[cid]
            log.warning(
                "call %s: no message for %.0f s; scored with what arrived (incomplete)",
                cid,
                self.idle_timeout_s,
            )
            join.expire("timeout")
            self._close(cid)
        return gone

    def drain(self) -> list[Event]:
        """The events made since the last drain, call by call (each call's in order)."""
        out: list[Event] = []
        for join in self.calls.values():
            if join.outbox:
                out += join.outbox
                join.outbox = []
                self._note(join)
        for join in self._recent:
            out += join.outbox
            join.outbox = []
        self._recent = []
        return out

    def has_events(self) -> bool:
        """Whether events were made since the last :meth:`drain`."""
        return bool(self._recent) or any(j.outbox for j in self.calls.values())

    def changes(self) -> dict[str, Emitted]:
        """Changelog entries to write (each call's latest), then forgotten."""
        out, self._changed = self._changed, {}
        return out

    def oldest_open(self) -> float | None:
        """When the oldest open call's first record reached the topic (epoch seconds);
        None when no call is open."""
        return min(self.opened.values(), default=None)

    def commit_offset(self) -> int | None:
        """The offset to commit: the first record of the oldest open call, else the next
        record (None: nothing read yet)."""
        if self.first:
            return min(self.first.values())
        return self.next_offset


# -- the Kafka stage ----------------------------------------------------------------------


@dataclass
class EvaluateCounts:
    records: int = 0
    undecodable: int = 0
    calls_closed: int = 0
    calls_timed_out: int = 0
    events: int = 0
    skipped_closed: int = 0
    rebalances: int = 0


#: /healthz answers 503 when the consumer loop has not turned for this long (seconds)
STALL_S = 60.0


class EvaluateMetrics:
    """The stage's Prometheus metrics (on an injected registry) and the heartbeat
    ``/healthz`` reports (:func:`~qa_pipeline.stage_health.serve_health`):

    ===============================================  ======= ===============================
    qa_eval_records_total                            counter utterances-topic records read
    qa_eval_undecodable_records_total                counter records skipped (not wire)
    qa_eval_events_total{kind}                       counter events emitted
    qa_eval_calls_closed_total{complete}             counter calls scored
    qa_eval_open_calls                               gauge   calls open on this evaluator
    qa_eval_oldest_open_call_age_seconds{group}      gauge   age of the oldest open call
                                                             (from its first record), 0 when
                                                             none: a call that never ends
    qa_consumer_lag{group,topic,partition}           gauge   records not yet read (as the
                                                             ASR workers report theirs)
    ===============================================  ======= ===============================
    """

    def __init__(self, registry: Any = None, group: str = DEFAULT_GROUP) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.group = group
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.records = Counter("qa_eval_records", "Utterances-topic records read", registry=r)
        self.undecodable = Counter(
            "qa_eval_undecodable_records", "Records skipped: not a wire message", registry=r
        )
        self.events = Counter("qa_eval_events", "Events emitted, by kind", ["kind"], registry=r)
        self.closed = Counter(
            "qa_eval_calls_closed", "Calls scored, by completeness", ["complete"], registry=r
        )
        self.open_calls = Gauge("qa_eval_open_calls", "Calls open on this evaluator", registry=r)
        #: records of the utterances topic not yet read, per partition held (the ASR
        #: workers' metric and labels: qa_consumer_lag{group,topic,partition})
        self.lag = ConsumerLag(r, group)
        self.oldest_open_age = Gauge(
            "qa_eval_oldest_open_call_age_seconds",
            "Age of the oldest call open on this evaluator, from its first record on the "
            "utterances topic (0: none open)",
            ["group"],
            registry=r,
        )
        #: ``/healthz``: 503 when the consumer loop has not turned for :data:`STALL_S`
        self.heartbeat = Heartbeat(STALL_S, "consumer loop")


class EvaluateStage:
    """The consumer loop: poll, evaluate, and at each checkpoint emit the new events to the
    sinks and flush them, write the changelog entries, then commit each partition's safe
    offset. A checkpoint follows each poll that made events (without the commit: findings
    leave within a poll) and comes every ``commit_every_s`` (with it), on a rebalance and at
    the end."""

    def __init__(
        self,
        kafka: KafkaSinkConfig,
        pack: RulePack,
        sinks: FanOut,
        *,
        topic: str = DEFAULT_TOPIC,
        group: str = DEFAULT_GROUP,
        changelog: str = DEFAULT_CHANGELOG,
        tick_s: float = TICK_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        commit_every_s: float = 0.5,
        flush_timeout_s: float = 30.0,
        session_timeout_s: float = 45.0,
        metrics: EvaluateMetrics | None = None,
    ) -> None:
        try:
            from kafka import KafkaConsumer, KafkaProducer
            from kafka.admin import KafkaAdminClient
        except ImportError as e:  # pragma: no cover - optional extra
            raise QAError("evaluate needs kafka-python: pip install 'qa-pipeline[kafka]'") from e
        self.kafka = kafka
        self.pack = pack
        self.sinks = sinks
        self.topic = topic
        self.group = group
        self.changelog = changelog
        self.tick_s = tick_s
        self.idle_timeout_s = idle_timeout_s
        self.commit_every_s = commit_every_s
        self.flush_timeout_s = flush_timeout_s
        self.servers = ", ".join(kafka.bootstrap_servers)
        self.parts: dict[int, PartitionCalls] = {}
        # where to resume the partitions revoked by the rebalance under way (their safe
        # offsets): a partition this consumer keeps is re-read from there (assigned)
        self._resume: dict[int, int] = {}
        # changelog entries held back, per partition, while the store had calls unwritten
        # (see checkpoint)
        self._held: dict[int, dict[str, Emitted]] = {}
        self.counts = EvaluateCounts()
        self.metrics = metrics if metrics is not None else EvaluateMetrics(group=group)
        self.stopping = False
        servers = list(kafka.bootstrap_servers)
        sec = kafka.security()
        cid = kafka.client_id
        self._timeouts = {
            "bootstrap_timeout_ms": kafka.max_block_ms,
            "request_timeout_ms": kafka.request_timeout_ms,
        }
        self._admin = connect(
            KafkaAdminClient, servers, sec, client_id=f"{cid}-evaluate-admin", **self._timeouts
        )
        self.consumer = connect(
            KafkaConsumer,
            servers,
            sec,
            group_id=group,
            client_id=f"{cid}-evaluate",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_POLL_RECORDS,
            session_timeout_ms=int(session_timeout_s * 1000),
            heartbeat_interval_ms=max(100, int(session_timeout_s * 1000) // 3),
            **self._timeouts,
        )
        self._ensure_changelog()
        self.producer = connect(
            KafkaProducer,
            servers,
            sec,
            client_id=f"{cid}-evaluate-changelog",
            acks="all",
            enable_idempotence=True,
            linger_ms=0,  # awaited at once (a checkpoint): a linger only holds up the loop
            **self._timeouts,
        )
        self._last_commit = time.monotonic()

    def _ensure_changelog(self) -> None:
        """The changelog topic: compacted, with at least the utterances topic's partitions
        (an entry goes to the partition number of its call's utterances)."""
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        wanted = self._partitions(self.topic, wait=True)
        if wanted == 0:
            raise QAError(
                f"topic {self.topic} does not exist at {self.servers}: create it (keyed by "
                "call id, as many partitions as evaluators you may run; deploy/README.md)"
            )
        have = self._partitions(self.changelog)
        if have == 0:
            with contextlib.suppress(TopicAlreadyExistsError):
                self._admin.create_topics(
                    [
                        NewTopic(
                            self.changelog,
                            num_partitions=wanted,
                            replication_factor=-1,
                            topic_configs=CHANGELOG_CONFIG,
                        )
                    ]
                )
            have = self._partitions(self.changelog, wait=True)
        if have < wanted:
            raise QAError(
                f"changelog topic {self.changelog} has {have} partition(s), fewer than "
                f"{self.topic}'s {wanted}: add partitions to it (kafka-topics --alter)"
            )

    def _partitions(self, topic: str, wait: bool = False) -> int:
        """The topic's partition count from the cluster metadata (0: no such topic)."""
        deadline = time.monotonic() + (10.0 if wait else 2.0)
        c = self.consumer
        while True:
            ids = c.partitions_for_topic(topic)
            if ids or time.monotonic() >= deadline:
                return len(ids or ())
            c._client.cluster.request_update()
            time.sleep(0.2)

    # -- rebalance --------------------------------------------------------------------------

    def _listener(self) -> Any:
        from kafka import ConsumerRebalanceListener

        stage = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                stage.revoked([tp.partition for tp in revoked if tp.topic == stage.topic])

            def on_partitions_assigned(self, assigned: Any) -> None:
                stage.assigned([tp.partition for tp in assigned if tp.topic == stage.topic])

        return Listener()

    def revoked(self, partitions: list[int]) -> None:
        """Emit, record and commit what these partitions did, then forget their calls (the
        next owner rebuilds the open ones)."""
        self.counts.rebalances += 1
        mine = [p for p in partitions if p in self.parts]
        if mine:
            # no commit here: kafka-python (3.x) cannot commit from inside a rebalance
            # callback; the changelog is written, so the next owner re-reads from the last
            # periodic commit and emits nothing twice
            self.checkpoint(mine, commit=False)
        for p in mine:
            held = self._held.pop(p, {})
            if held:  # the next owner replays these calls from the last commit
                log.info("partition %d revoked with %d changelog entries held", p, len(held))
        self._resume = {}
        for p in mine:
            open_calls = len(self.parts[p].calls)
            off = self.parts[p].commit_offset()
            if off is not None:
                self._resume[p] = off
            del self.parts[p]
            # its lag is the next owner's to report (a stale figure would add to it)
            self.metrics.lag.forget(self.topic, p)
            log.info("partition %d revoked (%d open call(s) handed on)", p, open_calls)

    def assigned(self, partitions: list[int]) -> None:
        """Read the changelog of these partitions, then take them. A partition this
        consumer had before the rebalance is re-read from its safe offset: kafka-python
        keeps the fetch position of a partition that stays with the same member, but the
        calls open on it were forgotten at the revocation (and their first records lie
        before that position), so without the seek they would never close."""
        resume, self._resume = self._resume, {}
        if not partitions:
            return
        emitted = self._read_changelog(partitions)
        self._seek(resume, partitions)
        for p in partitions:
            mine = emitted.get(p, {})
            self.parts[p] = PartitionCalls(
                p,
                self.pack,
                tick_s=self.tick_s,
                idle_timeout_s=self.idle_timeout_s,
                emitted=mine,
            )
            log.info(
                "partition %d assigned (changelog: %d call(s), %d closed)",
                p,
                len(mine),
                sum(e.closed for e in mine.values()),
            )

    def _seek(self, resume: dict[int, int], partitions: list[int]) -> None:
        from kafka import TopicPartition

        for p in partitions:
            if p in resume:
                self.consumer.seek(TopicPartition(self.topic, p), resume[p])

    def _read_changelog(self, partitions: list[int]) -> dict[int, dict[str, Emitted]]:
        """The changelog entries of ``partitions`` (latest per call), read to their end by a
        consumer of its own (no group)."""
        from kafka import KafkaConsumer, TopicPartition

        r = connect(
            KafkaConsumer,
            list(self.kafka.bootstrap_servers),
            self.kafka.security(),
            group_id=None,
            client_id=f"{self.kafka.client_id}-evaluate-changelog",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self._timeouts,
        )
        out: dict[int, dict[str, Emitted]] = {p: {} for p in partitions}
        try:
            deadline = time.monotonic() + 60
            while not r.partitions_for_topic(self.changelog):  # a new topic: metadata
                if time.monotonic() > deadline:
                    raise QAError(f"changelog topic {self.changelog} not found in 60 s")
                r._client.cluster.request_update()
                time.sleep(0.2)
            tps = [TopicPartition(self.changelog, p) for p in partitions]
            r.assign(tps)
            r.seek_to_beginning(*tps)
            ends = self._end_offsets(r, tps, deadline)
            while any(r.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise QAError(f"changelog {self.changelog} {partitions} not read in 60 s")
                for tp, recs in r.poll(timeout_ms=500).items():
                    for rec in recs:
                        self._changelog_record(out[tp.partition], tp, rec)
        finally:
            r.close(autocommit=False)
        return out

    def _end_offsets(self, r: Any, tps: list[Any], deadline: float) -> dict[Any, int]:
        """The partitions' end offsets; asked again while a new topic's leaders are not
        known yet (kafka-python then leaves partitions out or times out)."""
        while True:
            try:
                ends = r.end_offsets(tps)
                if all(tp in ends for tp in tps):
                    return {tp: int(ends[tp]) for tp in tps}
            except (KeyError, Exception) as e:
                if not type(e).__module__.startswith("kafka") and not isinstance(e, KeyError):
                    raise
                log.info("changelog end offsets not known yet (%s); asking again", e)
            if time.monotonic() > deadline:
                raise QAError(f"changelog {self.changelog}: end offsets not known in 60 s")
            r._client.cluster.request_update()
            time.sleep(0.5)

    @staticmethod
    def _changelog_record(into: dict[str, Emitted], tp: Any, rec: Any) -> None:
        if rec.key is None:
            return
        key = rec.key.decode("utf-8", "replace")
        if rec.value is None:
            into.pop(key, None)
            return
        try:
            into[key] = Emitted.from_json(rec.value)
        except (ValueError, KeyError, TypeError) as e:
            log.warning("changelog %s offset %d: unreadable (%s)", tp, rec.offset, e)

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> EvaluateCounts:
        """Until :meth:`stop`: poll, evaluate, checkpoint; a last checkpoint at the end."""
        self.consumer.subscribe([self.topic], listener=self._listener())
        try:
            while not self.stopping:
                self.metrics.heartbeat.beat()
                batch = self.consumer.poll(timeout_ms=200)
                for tp, records in batch.items():
                    part = self.parts.get(tp.partition)
                    if part is None:  # revoked during this poll
                        continue
                    bad = part.undecodable
                    for rec in records:
                        part.handle(rec.offset, rec.value, rec.timestamp)
                    self.counts.records += len(records)
                    self.metrics.records.inc(len(records))
                    self.metrics.undecodable.inc(part.undecodable - bad)
                for part in self.parts.values():
                    self.counts.calls_timed_out += len(part.expire())
                if time.monotonic() - self._last_commit >= self.commit_every_s:
                    self.checkpoint(list(self.parts))
                elif sum(map(len, batch.values())) < MAX_POLL_RECORDS and any(
                    part.has_events() for part in self.parts.values()
                ):
                    # caught up (a poll short of the maximum): the events go out (with their
                    # changelog entries) now, not at the next commit, up to commit_every_s
                    # sooner; while behind, at the commit as before (a checkpoint per poll
                    # would slow the catching up)
                    self.checkpoint(list(self.parts), commit=False)
            self.checkpoint(list(self.parts))
        finally:
            self.close()
        return self.counts

    def stop(self) -> None:
        self.stopping = True

    _holding = False  # changelog entries and offsets held back (store behind); logged once

    def _store_unwritten(self) -> int:
        """Calls the fan-out's store sinks accepted and have not written yet."""
        return sum(
            sink.writer.pending
            for _, sink in getattr(self.sinks, "sinks", ())
            if isinstance(sink, StoreSink)
        )

    def checkpoint(self, partitions: list[int], commit: bool = True) -> None:
        """Events to the sinks (flushed), changelog entries (acknowledged), offsets
        (``commit``)."""
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        events: list[Event] = []
        changes: list[tuple[int, str, Emitted]] = []
        offsets: dict[Any, Any] = {}
        for p in partitions:
            part = self.parts[p]
            events += part.drain()
            mine = part.changes()
            self.counts.calls_closed += sum(e.closed for e in mine.values())
            self._held.setdefault(p, {}).update(mine)
            off = part.commit_offset()
            if off is not None:
                offsets[TopicPartition(self.topic, p)] = OffsetAndMetadata(off, "", -1)
        m = self.metrics
        for e in events:
            m.events.labels(e.kind.value).inc()
            if e.kind is EventKind.SCORECARD:
                m.closed.labels(str(bool(e.payload.get("complete", True))).lower()).inc()
        m.open_calls.set(sum(len(pc.calls) for pc in self.parts.values()))
        since = [t for pc in self.parts.values() if (t := pc.oldest_open()) is not None]
        m.oldest_open_age.labels(m.group).set(max(0.0, time.time() - min(since)) if since else 0)
        for p in partitions:
            high = self.consumer.highwater(TopicPartition(self.topic, p))
            done = self.parts[p].next_offset
            if high is not None and done is not None:
                m.lag.set(self.topic, p, high - done)
        if events:
            self.sinks.emit_all(events)
            self.sinks.flush(timeout=self.flush_timeout_s)
            self.counts.events += len(events)
        unstored = self._store_unwritten()
        if unstored:
            # the store has calls it has not written (it is down, or slow): their changelog
            # entries and the offsets wait, so that if this process dies now the next owner
            # re-reads those calls and emits (same ids) and stores them again, instead of
            # finding them in the changelog and skipping them (rows lost, uncounted)
            if not self._holding:
                log.warning(
                    "store has %d call(s) unwritten: changelog entries and offsets held "
                    "until it has written them",
                    unstored,
                )
            self._holding = True
            if commit:
                self._last_commit = time.monotonic()  # the next try at the usual cadence
            return
        if self._holding:
            log.info("store caught up: held changelog entries and offsets go out")
        self._holding = False
        for p in partitions:
            changes += [(p, k, e) for k, e in self._held.pop(p, {}).items()]
        if changes:
            futs = [
                self.producer.send(self.changelog, key=k.encode(), value=e.to_json(), partition=p)
                for p, k, e in changes
            ]
            for f in futs:
                f.get(timeout=self.flush_timeout_s)
        if offsets and commit:
            try:
                self.consumer.commit(offsets)
            except Exception as e:  # a rebalance under way: the next owner re-reads (no loss)
                log.warning("offsets not committed (%s: %s)", type(e).__name__, e)
        if commit:
            self._last_commit = time.monotonic()

    def close(self) -> None:
        for p in self.parts.values():
            self.counts.undecodable += p.undecodable
            self.counts.skipped_closed += p.skipped_closed
        for client in (self.consumer,):
            try:
                client.close(autocommit=False)
            except Exception as e:  # closing a broken client: nothing left to lose
                log.debug("closing kafka consumer: %r", e)
        for c in (self.producer, self._admin):
            try:
                c.close()
            except Exception as e:
                log.debug("closing kafka client: %r", e)


def _event_topics(k: KafkaSinkConfig) -> set[str]:
    t = k.topics
    return {x for x in (t.findings, t.alerts, t.scorecards, t.transcripts, t.utterances) if x}


def build_fanout(cfg: EvaluateConfig) -> FanOut:
    """The sinks ``score`` and ``serve`` build from the config, and the notifiers."""
    from .notify import NotifierSink
    from .sinks import build_sinks

    fan = build_sinks(cfg.sinks)
    if cfg.notify is not None and cfg.notify.notifiers:
        from prometheus_client import CollectorRegistry

        fan.sinks.append(("notify", NotifierSink(cfg.notify, registry=CollectorRegistry())))
    return fan


def _configured_store(cfg: EvaluateConfig) -> str | None:
    """``store:`` of the config; out/qa-store.sqlite when the config does not say."""
    from .store import DEFAULT_STORE

    return cfg.store if "store" in cfg.model_fields_set else str(DEFAULT_STORE)


def store_writer(cfg: EvaluateConfig, target: str, pack: RulePack, registry: Any) -> StoreWriter:
    """The store writer of this evaluator: every ended call (its transcript, as the
    privacy settings redact it, and its scorecard) as a result of the pack's live run,
    which every evaluator and ``serve`` with that pack version share; the ASR settings
    are the workers', unknown here (``{"asr": {}}``, as an imported document's)."""
    from .privacy import Redactor

    return StoreWriter(
        target,
        LiveRun.for_pack(pack, "evaluate"),
        settings={"asr": {}},
        redactor=Redactor(cfg.privacy),
        queue_max=cfg.store_queue,
        registry=registry,
    )


def evaluate_command(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML config (rules, sinks: JSONL / Kafka topics, brokers, TLS, SASL; "
            "notify: supervisor notifications)",
        ),
    ] = None,
    kafka: Annotated[
        str | None,
        typer.Option("--kafka", help="bootstrap servers (host:port,...): overrides sinks.kafka"),
    ] = None,
    topic: Annotated[str, typer.Option("--topic", help="utterances topic")] = DEFAULT_TOPIC,
    group: Annotated[str, typer.Option("--group", help="consumer group")] = DEFAULT_GROUP,
    changelog: Annotated[
        str, typer.Option("--changelog", help="compacted topic of what was emitted per call")
    ] = DEFAULT_CHANGELOG,
    rules: Annotated[
        Path | None, typer.Option("--rules", "-r", help="rule pack (default: rules.pack)")
    ] = None,
    idle_timeout: Annotated[
        float,
        typer.Option(
            "--idle-timeout",
            min=1.0,
            help="seconds without a message before an open call is scored as incomplete",
        ),
    ] = IDLE_TIMEOUT_S,
    tick: Annotated[
        float, typer.Option("--tick", min=0.05, help="the rules' clock step (call-clock s)")
    ] = TICK_S,
    session_timeout: Annotated[
        float,
        typer.Option(
            "--session-timeout",
            min=3.0,
            max=1800.0,
            help="seconds without a heartbeat before the group gives a dead evaluator's "
            "partitions (its open calls) to the others (the broker's group.min/max."
            "session.timeout.ms bound it)",
        ),
    ] = 45.0,
    health_port: Annotated[
        int | None,
        typer.Option(
            "--health-port",
            min=0,
            max=65535,
            help="serve /metrics (Prometheus) and /healthz on this port (0: any free one)",
        ),
    ] = None,
    health_host: Annotated[
        str, typer.Option("--health-host", help="address of the health/metrics listener")
    ] = "127.0.0.1",
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="write every ended call here (overrides store:): a SQLite path or a "
            "postgresql:// URL; default out/qa-store.sqlite unless the config says null",
        ),
    ] = None,
) -> None:
    """Read utterances from Kafka, run the rules per call, and send findings, alerts and
    scorecards to the configured sinks (the last stage of the distributed pipeline)."""
    from .config import load_config_as

    try:
        cfg = load_config_as(EvaluateConfig, config)
        kcfg = stage_kafka_config(cfg.sinks.kafka, kafka)
        sinks_kafka = cfg.sinks.kafka
        if sinks_kafka is not None and topic in _event_topics(sinks_kafka):
            raise QAError(
                f"sinks.kafka.topics sends events to {topic}, the topic this stage reads "
                "(the wire utterances): give the sinks' utterance events another topic "
                "(sinks.kafka.topics.utterances: qa.events.utterances) or null"
            )
        pack = load_pack(rules or cfg.rules.pack, cfg.rules.settings or None)
        metrics = EvaluateMetrics(group=group)
        target = store if store is not None else _configured_store(cfg)
        writer = None if target is None else store_writer(cfg, target, pack, metrics.registry)
        fan = build_fanout(cfg)
        if writer is not None:
            fan.sinks.append(("store", StoreSink(writer)))
    except (QAError, ValueError, OSError) as e:
        fail(e)
    try:
        stage = EvaluateStage(
            kcfg,
            pack,
            fan,
            topic=topic,
            group=group,
            changelog=changelog,
            tick_s=tick,
            idle_timeout_s=idle_timeout,
            session_timeout_s=session_timeout,
            metrics=metrics,
        )
    except KafkaConnectError as e:
        fan.close()
        fail(e, EXIT_BROKER)
    except QAError as e:
        fan.close()
        fail(e, EXIT_BROKER)
    server = None
    if health_port is not None:
        try:
            server = serve_health(
                stage.metrics.registry, stage.metrics.heartbeat, health_host, health_port
            )
        except OSError as e:
            stage.close()
            fan.close()
            fail(QAError(f"--health-port {health_port}: {e}"))
        log.info("health and metrics on %s", server.url)
    stop_on_signals(stage.stop, "emitting, committing and leaving the group")
    ready = ["ready"] if server is None else ["ready", f"health={server.port}"]
    print(*ready, flush=True)  # noqa: T201 - for supervisors and tests
    try:
        counts = stage.run()
    except Exception as e:
        if not type(e).__module__.startswith("kafka"):
            raise
        fail(QAError(f"Kafka at {stage.servers}: {type(e).__name__}: {e}"), EXIT_BROKER)
    finally:
        fan.close()
        if server is not None:
            server.stop()
    sys.stdout.write(json.dumps({"evaluate": counts.__dict__}) + "\n")
