"""The dashboard's in-memory state, fed by :class:`~qa_pipeline.sinks.base.Event` envelopes.

:class:`DashboardState` is what both feeds write into (the in-process
:class:`~qa_pipeline.dashboard.sink.DashboardSink` of ``serve``, and the Kafka consumer of the
standalone dashboard) and what the web app reads. It is thread-safe and order-tolerant:
events of different kinds may arrive out of order (Kafka delivers each topic separately) and
more than once (at-least-once delivery; de-duplicated by ``event_id``).

Per call it keeps the utterances (by index), findings (by event seq), the alerts and, once
the scorecard arrives, the final score and grade, and its ``uncertain`` verdicts (rules that
would fail only on speech heard with low confidence, or on unknown roles: no finding, no
points, the call flagged ``review``), and whether the scorecard covers the whole call (an
incomplete one, ``complete: false``, counts in the agent's calls but not its average score).
Agent ids come from
:meth:`DashboardState.call_started` (the live service knows them when a call starts) or from
the call's transcript event (at its end).

**Live and ended.** A call summary's ``status`` is ``live`` until its scorecard arrives, then
``ended`` (or ``incomplete``: scored on part of the call). A live call has no score, grade or
``failed`` (all ``None``, ``final: false``): a rule may still pass, fail or be decided
``uncertain`` at the end, so anything that looks like a score would mislead a supervisor. It
carries its findings so far (``findings``, ``critical``) and ``provisional_deduction``, the
points those findings would take (each rule once, at most 100), to be shown labelled as
provisional; once ended that is ``None`` and ``score``/``grade``/``failed`` are the scorecard's.

**Findings shown once.** A finding view's ``placement`` says where the page shows it:
``utterance`` (its evidence is one utterance: at that utterance) or ``call`` (a card of its
own; a missing-phrase finding's evidence is every turn that was searched, and repeating the
finding under each of them read as many violations).

Subscribers (the event stream of each open page) get a push message for every change through
a bounded queue; a subscriber that does not keep up is disconnected (its page reconnects and
gets a fresh snapshot) so that a slow browser never slows the pipeline. Every change has a
version number and the last ``history`` changes are kept while anyone listens, so a new
subscriber can start from an earlier snapshot (the web app shares one encoded snapshot among
the pages that open in a while) plus the changes since, instead of a snapshot of its own.

Views are plain JSON-able dicts. ``full=False`` views (viewer role) carry no transcript text:
utterance text, finding evidence text and matched phrases are removed. A call summary carries
its ``team`` (call metadata ``team``, when the source sends one); ``snapshot``, ``stats`` and
``subscribe`` take an ``only`` filter over call summaries (a user's scope, see :mod:`.auth`).

**Acknowledgements.** An alert carries ``ack`` (``{"user", "at"}``, ``None`` until someone
acknowledges it); :meth:`DashboardState.acknowledge` sets it and pushes an ``ack`` message.
The state only mirrors them: the server keeps them (:mod:`.acks`) and loads them at start,
so an alert that arrives again (a Kafka feed read from the beginning) shows its ack.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..messages import CallInfo
from ..rules.runtime.scoring import grade_of
from ..sinks.base import Event, EventKind

#: Grade names (Chinese, as on scorecards), English labels and minimum scores: the default
#: rule pack's scale. ``DashboardState(grades=grades_from_pack(pack))`` uses another pack's.
DEFAULT_GRADES: tuple[tuple[str, str, float], ...] = (
    ("非常满意", "very satisfied", 90.0),
    ("满意", "satisfied", 80.0),
    ("基本满意", "basically satisfied", 60.0),
    ("不满意", "dissatisfied", 0.0),
)
DEFAULT_FAIL_GRADE = "不满意"

UNKNOWN_AGENT = ""

#: Violation statistics count findings in buckets of this many seconds (the last hour and
#: day are counted to within one bucket).
VIOLATION_BUCKET_S = 10

#: Message put on a subscriber queue when the state closes (the stream then ends).
CLOSED: dict[str, Any] = {"type": "closed"}


def grades_from_pack(pack: Any) -> tuple[tuple[tuple[str, str, float], ...], str | None]:
    """``(grades, fail_grade)`` of a loaded :class:`~qa_pipeline.rules.RulePack`."""
    settings = pack.settings
    grades = tuple((g.name, g.label, float(g.min_score)) for g in settings.grades)
    return grades, settings.fail_grade


def team_of(metadata: Any) -> str | None:
    """The ``team`` entry of call metadata (pairs, or a mapping as decoded JSON may give)."""
    team: Any = None
    if isinstance(metadata, Mapping):
        team = metadata.get("team")
    elif isinstance(metadata, (list, tuple)):
        for kv in metadata:
            if isinstance(kv, (list, tuple)) and len(kv) == 2 and kv[0] == "team":
                team = kv[1]
    return str(team) if team else None


def parse_time(value: Any, default: float) -> float:
    """Unix time of an ISO 8601 string (``Z`` accepted); ``default`` when unparsable."""
    if not isinstance(value, str) or not value:
        return default
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


@dataclass
class _Finding:
    seq: int
    payload: dict[str, Any]
    at: float
    alert: bool = False


@dataclass
class _Call:
    call_id: str
    first_at: float
    last_at: float
    agent_id: str | None = None
    team: str | None = None
    direction: str | None = None
    started_at: str | None = None
    utterances: dict[int, dict[str, Any]] = field(default_factory=dict)
    findings: dict[int, _Finding] = field(default_factory=dict)
    rule_weights: dict[str, float] = field(default_factory=dict)
    critical: int = 0
    score: float | None = None
    grade: str | None = None
    failed: bool | None = None
    review: bool = False
    complete: bool = True
    incomplete_reasons: tuple[str, ...] = ()
    uncertain: list[dict[str, Any]] = field(default_factory=list)
    duration: float | None = None
    ended_at: float | None = None
    transcript_seen: bool = False
    audio: bool = False  # a redacted recording is kept: evidence can be played

    @property
    def live(self) -> bool:
        return self.score is None

    @property
    def status(self) -> str:
        """``live`` until the scorecard; then ``ended``, or ``incomplete`` when it covers
        only part of the call."""
        if self.live:
            return "live"
        return "ended" if self.complete else "incomplete"


@dataclass
class _Subscriber:
    queue: queue.Queue[dict[str, Any]]
    full: bool
    dropped: bool = False
    #: called (in the publishing thread, under the state's lock) after each message put on
    #: ``queue`` and when the subscriber is dropped; must not block
    notify: Callable[[], None] | None = None
    #: the state's version when the subscription started
    version: int = 0

    def wake(self) -> None:
        if self.notify is not None:
            with contextlib.suppress(RuntimeError):  # its event loop is gone
                self.notify()


class DashboardState:
    """Calls, alerts and violation statistics, with push to subscribers. Thread-safe.

    ``max_calls``: calls kept (the oldest ended calls are forgotten first). ``max_alerts``:
    alerts in the feed. ``subscriber_queue``: push messages buffered per open page.
    ``history``: changes kept (while anyone subscribes) for a subscriber that starts from an
    earlier snapshot. ``clock``: wall time source (tests).
    """

    def __init__(
        self,
        *,
        grades: Sequence[tuple[str, str, float]] = DEFAULT_GRADES,
        fail_grade: str | None = DEFAULT_FAIL_GRADE,
        max_calls: int = 500,
        max_alerts: int = 200,
        dedupe_window: int = 100_000,
        subscriber_queue: int = 1000,
        history: int = 256,
        rule_descriptions: Mapping[str, str] | None = None,
        clock: Any = time.time,
    ) -> None:
        self.rule_descriptions: dict[str, str] = dict(rule_descriptions or {})
        self.grades = tuple(sorted(grades, key=lambda g: -g[2]))
        self.fail_grade = fail_grade
        self.max_calls = max_calls
        self.max_alerts = max_alerts
        self._dedupe_window = dedupe_window
        self._subscriber_queue = subscriber_queue
        self._clock = clock
        self._lock = threading.RLock()
        self._calls: OrderedDict[str, _Call] = OrderedDict()
        self._alerts: deque[dict[str, Any]] = deque(maxlen=max_alerts)
        # findings per rule in buckets of VIOLATION_BUCKET_S seconds over the last day: its
        # size is bounded by the day and the rules, however many calls go by
        self._violations: dict[int, dict[str, int]] = {}
        self._severity: dict[str, str] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._subscribers: list[_Subscriber] = []
        self._history: deque[tuple[int, dict[str, Any]]] = deque(
            maxlen=max(0, min(history, subscriber_queue - 1))
        )
        self.version = 0
        self._closed = False
        self._alert_ids = itertools.count(1)
        # acknowledgements by alert event id (mirrored from the server's AckStore; bounded
        # like the de-duplication window, an alert older than that does not come back)
        self._acks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.events_applied = 0
        self.events_duplicate = 0

    @classmethod
    def for_pack(cls, pack: Any, **kwargs: Any) -> DashboardState:
        """A state with a rule pack's grade scale and rule descriptions (the viewer role sees
        a finding's rule description instead of its message, which can quote the call)."""
        grades, fail_grade = grades_from_pack(pack)
        descriptions = {r.spec.id: r.spec.description for r in pack.rules}
        return cls(grades=grades, fail_grade=fail_grade, rule_descriptions=descriptions, **kwargs)

    # -- grades ------------------------------------------------------------------------------

    def grade_for(self, score: float, failed: bool) -> str:
        return grade_of(((n, m) for n, _label, m in self.grades), self.fail_grade, score, failed)

    def grade_labels(self) -> dict[str, str]:
        """Chinese grade name -> English label."""
        return {name: label for name, label, _ in self.grades}

    # -- feeding -----------------------------------------------------------------------------

    def call_started(self, call: CallInfo) -> None:
        """Optional: the call is known before its first event (agent id, direction)."""
        now = self._clock()
        with self._lock:
            c = self._call(call.call_id, now)
            if call.agent_id:
                c.agent_id = call.agent_id
            c.team = team_of(call.metadata) or c.team
            c.direction = call.direction.value
            if call.started_at is not None:
                c.started_at = call.started_at.isoformat()
            self._publish({"type": "call", "call": self._summary(c)}, stats=True)

    def recording_kept(self, call_id: str) -> None:
        """The call's redacted recording is kept: its evidence gets a play control."""
        with self._lock:
            c = self._calls.get(call_id)
            if c is None or c.audio:
                return
            c.audio = True
            self._publish({"type": "call", "call": self._summary(c)}, stats=False)

    def apply(self, event: Event) -> bool:
        """Take one event into the state and push the change. ``False``: a duplicate."""
        now = self._clock()
        at = parse_time(event.produced_at, now)
        with self._lock:
            if self._closed:
                return False
            if event.event_id in self._seen:
                self.events_duplicate += 1
                return False
            self._seen[event.event_id] = None
            if len(self._seen) > self._dedupe_window:
                self._seen.popitem(last=False)
            self.events_applied += 1
            c = self._call(event.call_id, at)
            c.last_at = max(c.last_at, at)
            p = event.payload
            msg: dict[str, Any] = {"type": event.kind.value}
            stats = False
            if event.kind is EventKind.UTTERANCE:
                idx = int(p.get("index", len(c.utterances)))
                u = dict(p)
                u["seq"] = event.seq
                c.utterances[idx] = u
                msg["utterance"] = u
            elif event.kind in (EventKind.FINDING, EventKind.ALERT):
                alert = event.kind is EventKind.ALERT
                # An alert duplicates the critical finding emitted just before it (seq - 1);
                # across Kafka topics it may arrive first: both land on the finding's seq.
                key = event.seq - 1 if alert else event.seq
                f = c.findings.get(key)
                if f is None:
                    f = _Finding(key, dict(p), at, alert=alert)
                    c.findings[key] = f
                    rule = str(p.get("rule_id", "?"))
                    c.rule_weights[rule] = max(
                        c.rule_weights.get(rule, 0.0), float(p.get("weight") or 0.0)
                    )
                    if p.get("severity") == "critical":
                        c.critical += 1
                    bucket = self._violations.setdefault(
                        int(at // VIOLATION_BUCKET_S) * VIOLATION_BUCKET_S, {}
                    )
                    bucket[rule] = bucket.get(rule, 0) + 1
                    self._severity[rule] = str(p.get("severity", ""))
                    stats = True
                elif alert:
                    f.alert = True
                msg["finding"] = self._finding_view(f, c)
                if alert:
                    a = self._alert_view(c, event, p, at, now)
                    self._alerts.appendleft(a)
                    msg["alert"] = a
            elif event.kind is EventKind.SCORECARD:
                c.score = float(p.get("score", 0.0))
                c.failed = bool(p.get("failed", False))
                c.grade = str(p.get("grade") or self.grade_for(c.score, c.failed))
                dur = p.get("duration")
                c.duration = float(dur) if dur else c.duration
                c.ended_at = at
                c.uncertain = []
                for v in p.get("verdicts") or ():
                    if v.get("rule_id") and v.get("description"):
                        self.rule_descriptions.setdefault(str(v["rule_id"]), str(v["description"]))
                    if v.get("verdict") == "uncertain":
                        c.uncertain.append(self._uncertain_view(v))
                c.review = bool(p.get("review", False)) or bool(c.uncertain)
                c.complete = bool(p.get("complete", True))
                c.incomplete_reasons = tuple(str(r) for r in p.get("incomplete_reasons") or ())
                msg["uncertain"] = c.uncertain
                stats = True
            elif event.kind is EventKind.TRANSCRIPT:
                call = p.get("call") or {}
                if call.get("agent_id"):
                    c.agent_id = str(call["agent_id"])
                c.team = team_of(call.get("metadata")) or c.team
                c.direction = call.get("direction") or c.direction
                c.started_at = call.get("started_at") or c.started_at
                if call.get("duration") is not None:
                    c.duration = float(call["duration"])
                for u in p.get("utterances") or ():
                    idx = int(u.get("index", 0))
                    if idx not in c.utterances:
                        c.utterances[idx] = dict(u)
                c.transcript_seen = True
                stats = True
            msg["call"] = self._summary(c)
            self._evict()
            self._publish(msg, stats=stats)
            return True

    def apply_all(self, events: Iterable[Event]) -> None:
        for e in events:
            self.apply(e)

    def _call(self, call_id: str, at: float) -> _Call:
        c = self._calls.get(call_id)
        if c is None:
            c = _Call(call_id=call_id, first_at=at, last_at=at)
            self._calls[call_id] = c
        return c

    def _evict(self) -> None:
        if len(self._calls) <= self.max_calls:
            return
        ended = [k for k, c in self._calls.items() if not c.live]
        for k in ended[: len(self._calls) - self.max_calls]:
            del self._calls[k]
        while len(self._calls) > self.max_calls:  # all live: forget the oldest
            self._calls.popitem(last=False)

    # -- views -------------------------------------------------------------------------------

    @staticmethod
    def _ident(c: _Call) -> dict[str, Any]:
        """What an ``only`` filter is given of a call: its id, agent id and team (the same
        keys as in its summary and in an alert)."""
        return {"call_id": c.call_id, "agent_id": c.agent_id, "team": c.team}

    @staticmethod
    def provisional_deduction(c: _Call) -> float:
        """Points the findings so far would take (each rule once, its largest weight; at most
        100). Provisional: the scorecard decides, and may add or take back deductions."""
        return round(min(max(sum(c.rule_weights.values()), 0.0), 100.0), 2)

    def _summary(self, c: _Call) -> dict[str, Any]:
        live = c.live
        grade = c.grade
        return {
            "call_id": c.call_id,
            "agent_id": c.agent_id,
            "team": c.team,
            "direction": c.direction,
            "started_at": c.started_at,
            "status": c.status,
            "final": not live,
            "score": c.score,
            "grade": grade,
            "grade_en": self.grade_labels().get(grade, grade) if grade is not None else None,
            "failed": c.failed,
            "provisional_deduction": self.provisional_deduction(c) if live else None,
            "review": c.review,
            "complete": c.complete,
            "incomplete_reasons": list(c.incomplete_reasons),
            "uncertain": len(c.uncertain),
            "utterances": len(c.utterances),
            "findings": len(c.findings),
            "critical": c.critical,
            "duration": c.duration,
            "audio": c.audio,
            "first_at": c.first_at,
            "last_at": c.last_at,
        }

    @staticmethod
    def _redact_evidence(ev: Iterable[dict[str, Any]], full: bool) -> list[dict[str, Any]]:
        out = []
        for e in ev:
            d = dict(e)
            if not full:
                d.pop("text", None)
                d.pop("matched", None)
            out.append(d)
        return out

    @staticmethod
    def placement(evidence: Iterable[dict[str, Any]]) -> str:
        """Where a finding is shown: at its utterance when its evidence is one utterance,
        else as a card of its own (no utterance: the whole call; several: the turns a
        missing phrase was looked for, listed inside the card)."""
        indexes = {e.get("utterance_index") for e in evidence} - {None}
        return "utterance" if len(indexes) == 1 else "call"

    def _finding_view(self, f: _Finding, c: _Call) -> dict[str, Any]:
        p = f.payload
        evidence = list(p.get("evidence") or ())
        return {
            "seq": f.seq,
            "call_id": c.call_id,
            "rule_id": p.get("rule_id"),
            "severity": p.get("severity"),
            "message": p.get("message"),
            "description": self.rule_descriptions.get(str(p.get("rule_id"))),
            "suggestion": p.get("suggestion"),
            "weight": p.get("weight"),
            "decided_at": p.get("decided_at"),
            "utterance_indexes": [
                e["utterance_index"] for e in evidence if e.get("utterance_index") is not None
            ],
            "placement": self.placement(evidence),
            "evidence": evidence,
            "alert": f.alert,
            "at": f.at,
        }

    @staticmethod
    def _uncertain_view(v: dict[str, Any]) -> dict[str, Any]:
        """An uncertain verdict as the page shows it: beside the utterances it rests on,
        with its pending (not taken) deduction."""
        evidence = list(v.get("evidence") or ())
        return {
            "rule_id": v.get("rule_id"),
            "severity": v.get("severity"),
            "description": v.get("description"),
            "detail": v.get("detail", ""),
            "pending_deduction": v.get("pending_deduction", 0.0),
            "utterance_indexes": [
                e["utterance_index"] for e in evidence if e.get("utterance_index") is not None
            ],
            "evidence": evidence,
        }

    def _alert_view(
        self, c: _Call, event: Event, p: dict[str, Any], at: float, now: float
    ) -> dict[str, Any]:
        evidence = list(p.get("evidence") or ())
        return {
            "id": next(self._alert_ids),
            "event_id": event.event_id,
            "call_id": c.call_id,
            "agent_id": c.agent_id,
            "team": c.team,
            "rule_id": p.get("rule_id"),
            "severity": p.get("severity"),
            "message": p.get("message"),
            "description": self.rule_descriptions.get(str(p.get("rule_id"))),
            "suggestion": p.get("suggestion"),
            "utterance_indexes": [
                e["utterance_index"] for e in evidence if e.get("utterance_index") is not None
            ],
            "evidence": evidence,
            "produced_at": event.produced_at,
            "at": at,
            "received_at": now,
            "ack": self._acks.get(event.event_id),
        }

    # -- acknowledgements --------------------------------------------------------------------

    def alert(self, event_id: str) -> dict[str, Any] | None:
        """The alert of ``event_id`` in the feed (``None``: not kept, or no such alert)."""
        with self._lock:
            return next((dict(a) for a in self._alerts if a["event_id"] == event_id), None)

    def acknowledge(self, event_id: str, user: str, at: float) -> dict[str, Any] | None:
        """Record that ``user`` acknowledged the alert ``event_id`` at ``at`` (Unix time) and
        push the alert with its ``ack`` to every page. The first acknowledgement stands (a
        second one of the same alert changes nothing). Returns the alert as now kept, or
        ``None`` when the feed does not hold it (the ack is still remembered for it)."""
        with self._lock:
            if event_id in self._acks:
                return self.alert(event_id)
            ack = {"user": user, "at": at}
            self._acks[event_id] = ack
            while len(self._acks) > self._dedupe_window:
                self._acks.popitem(last=False)
            i = next((i for i, a in enumerate(self._alerts) if a["event_id"] == event_id), None)
            if i is None:
                return None
            # a new dict, not an update in place: messages already queued share the old one
            alert = dict(self._alerts[i], ack=ack)
            self._alerts[i] = alert
            c = self._calls.get(alert["call_id"])
            # the call is for the server's per-viewer filter (a call no longer kept: its ids)
            call = self._summary(c) if c is not None else self._alert_ident(alert)
            self._publish({"type": "ack", "call": call, "alert": alert}, stats=False)
            return dict(alert)

    @staticmethod
    def _alert_ident(alert: dict[str, Any]) -> dict[str, Any]:
        return {k: alert.get(k) for k in ("call_id", "agent_id", "team")}

    @classmethod
    def redact(cls, msg: dict[str, Any], full: bool) -> dict[str, Any]:
        """A push message or view as a viewer without transcript rights may see it."""
        if full:
            return msg
        out = dict(msg)
        if "utterance" in out:
            u = dict(out["utterance"])
            u.pop("text", None)
            u.pop("raw_text", None)
            out["utterance"] = u
        for key in ("finding", "alert"):
            if key in out:
                out[key] = cls._redact_finding(out[key])
        if "alerts" in out:
            out["alerts"] = [cls.redact({"alert": a}, False)["alert"] for a in out["alerts"]]
        if "uncertain" in out:
            out["uncertain"] = [cls._redact_uncertain(v) for v in out["uncertain"]]
        if out.get("detail") is not None:
            out["detail"] = cls._redact_detail(out["detail"])
        if "details" in out:
            out["details"] = {
                k: (cls._redact_detail(d) if d is not None else None)
                for k, d in out["details"].items()
            }
        return out

    @classmethod
    def _redact_finding(cls, finding: dict[str, Any]) -> dict[str, Any]:
        """No transcript text: evidence text and matched phrases go; the message (rule
        description + detail, which may quote the call) becomes the rule's description when
        known, else the message with every quoted evidence string blanked out."""
        d = dict(finding)
        evidence = list(d.get("evidence") or ())
        if d.get("description"):
            d["message"] = d["description"]
        elif isinstance(d.get("message"), str):
            msg = d["message"]
            quoted = {str(e.get(k)) for e in evidence for k in ("text", "matched") if e.get(k)}
            for q in sorted(quoted, key=len, reverse=True):
                msg = msg.replace(q, "…")
            d["message"] = msg
        d["evidence"] = cls._redact_evidence(evidence, False)
        return d

    @classmethod
    def _redact_uncertain(cls, verdict: dict[str, Any]) -> dict[str, Any]:
        """No transcript text: the detail (which quotes the utterances) goes."""
        d = dict(verdict)
        d["detail"] = ""
        d["evidence"] = cls._redact_evidence(d.get("evidence") or (), False)
        return d

    @classmethod
    def _redact_detail(cls, detail: dict[str, Any]) -> dict[str, Any]:
        det = dict(detail)
        det["uncertain"] = [cls._redact_uncertain(v) for v in det.get("uncertain") or ()]
        det["utterances"] = [
            cls.redact({"utterance": u}, False)["utterance"] for u in det["utterances"]
        ]
        det["findings"] = [cls.redact({"finding": f}, False)["finding"] for f in det["findings"]]
        return det

    def stats(self, only: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """Violations by rule over the last hour and day, and the per-agent summary.

        ``only``: count only the calls it accepts (given ``call_id``, ``agent_id`` and
        ``team`` of each; a scoped user's view). Its
        violations are then counted from the findings of the calls kept in memory (an
        evicted call no longer counts), the unscoped ones from the day's buckets."""
        with self._lock:
            now = self._clock()
            for start in [b for b in self._violations if b + VIOLATION_BUCKET_S <= now - 86400]:
                del self._violations[start]
            hour: dict[str, int] = {}
            day: dict[str, int] = {}
            calls = list(self._calls.values())
            if only is not None:
                calls = [c for c in calls if only(self._ident(c))]
                buckets: dict[int, dict[str, int]] = {}
                for c in calls:
                    for f in c.findings.values():
                        b = buckets.setdefault(
                            int(f.at // VIOLATION_BUCKET_S) * VIOLATION_BUCKET_S, {}
                        )
                        rule = str(f.payload.get("rule_id", "?"))
                        b[rule] = b.get(rule, 0) + 1
            else:
                buckets = self._violations
            for start, counts in buckets.items():
                if start + VIOLATION_BUCKET_S <= now - 86400:
                    continue
                in_hour = start + VIOLATION_BUCKET_S > now - 3600
                for rule, n in counts.items():
                    day[rule] = day.get(rule, 0) + n
                    if in_hour:
                        hour[rule] = hour.get(rule, 0) + n
            severity = {rule: self._severity.get(rule, "") for rule in day}
            agents: dict[str, dict[str, Any]] = {}
            for c in calls:
                key = c.agent_id or UNKNOWN_AGENT
                a = agents.setdefault(
                    key,
                    {
                        "agent_id": c.agent_id,
                        "calls": 0,
                        "live": 0,
                        "ended": 0,
                        "findings": 0,
                        "critical": 0,
                        "failed": 0,
                        "review": 0,
                        "incomplete": 0,
                        "scored": 0,
                        "score_sum": 0.0,
                    },
                )
                a["calls"] += 1
                a["findings"] += len(c.findings)
                a["critical"] += c.critical
                if c.live:
                    a["live"] += 1
                else:
                    a["ended"] += 1
                    if c.complete:  # a score of part of a call stays out of the average
                        a["scored"] += 1
                        a["score_sum"] += c.score or 0.0
                    else:
                        a["incomplete"] += 1
                    a["failed"] += 1 if c.failed else 0
                    a["review"] += 1 if c.review else 0
            agent_rows = []
            for a in agents.values():
                a["avg_score"] = round(a["score_sum"] / a["scored"], 1) if a["scored"] else None
                del a["score_sum"], a["scored"]
                agent_rows.append(a)
            agent_rows.sort(key=lambda a: (a["agent_id"] is None, a["agent_id"] or ""))
            return {
                "violations": {"hour": hour, "day": day, "severity": severity},
                "agents": agent_rows,
                "now": now,
            }

    def detail(self, call_id: str) -> dict[str, Any] | None:
        """One call: summary, utterances in order, findings in order, uncertain verdicts
        (full view)."""
        with self._lock:
            c = self._calls.get(call_id)
            if c is None:
                return None
            return {
                "call": self._summary(c),
                "utterances": [c.utterances[i] for i in sorted(c.utterances)],
                "findings": [self._finding_view(c.findings[s], c) for s in sorted(c.findings)],
                "uncertain": list(c.uncertain),
            }

    def snapshot(
        self, *, details: bool = True, only: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        """Everything a freshly opened page needs (full view; redact with :meth:`redact`).

        ``only``: just the calls whose summary it accepts, their alerts (an alert carries
        ``agent_id`` and ``team`` like a summary) and statistics (see :meth:`stats`)."""
        with self._lock:
            calls = sorted(self._calls.values(), key=lambda c: (not c.live, -c.last_at))
            if only is not None:
                calls = [c for c in calls if only(self._ident(c))]
            out: dict[str, Any] = {
                "type": "snapshot",
                "calls": [self._summary(c) for c in calls],
                "alerts": [a for a in self._alerts if only is None or only(a)],
                "stats": self.stats(only),
                "grades": [{"name": n, "label": lbl, "min_score": m} for n, lbl, m in self.grades],
            }
            if details:
                out["details"] = {c.call_id: self.detail(c.call_id) for c in calls}
            return out

    def versioned_snapshot(
        self, only: Callable[[dict[str, Any]], bool] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """:meth:`snapshot` and the version it shows, taken together."""
        with self._lock:
            return self.version, self.snapshot(only=only)

    # -- subscribers -------------------------------------------------------------------------

    def subscribe(
        self,
        *,
        full: bool,
        notify: Callable[[], None] | None = None,
        since: int | None = None,
        only: Callable[[dict[str, Any]], bool] | None = None,
    ) -> tuple[_Subscriber, dict[str, Any] | None]:
        """Register a push subscriber; returns it and the snapshot taken atomically with it
        (nothing falls between the snapshot and the first push).

        ``since``: the version of a snapshot the caller already has. When every change after
        it is still in the history, those changes are queued for the subscriber and no
        snapshot is taken (``None`` is returned instead). ``notify`` is called after each
        message queued (see :class:`_Subscriber`). ``only``: the snapshot's calls (see
        :meth:`snapshot`); the queued messages are not filtered (the caller does)."""
        with self._lock:
            sub = _Subscriber(queue.Queue(self._subscriber_queue), full, notify=notify)
            sub.version = self.version
            if self._closed:
                sub.queue.put_nowait(CLOSED)
                return sub, self.snapshot(only=only)
            self._subscribers.append(sub)
            if since is not None and self._history_covers(since):
                for v, msg in self._history:
                    if v > since:
                        sub.queue.put_nowait(msg)
                return sub, None
            return sub, self.snapshot(only=only)

    def _history_covers(self, since: int) -> bool:
        if since == self.version:
            return True
        if since > self.version or not self._history:
            return False
        return self._history[0][0] <= since + 1 and self._history[-1][0] == self.version

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def _publish(self, msg: dict[str, Any], *, stats: bool) -> None:
        self.version += 1
        if not self._subscribers:
            self._history.clear()  # nobody listens: no snapshot to continue from
            return
        if stats:
            msg["stats"] = self.stats()
        self._history.append((self.version, msg))
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(msg)
            except queue.Full:  # a page that does not read: cut it off, it will reconnect
                sub.dropped = True
                self._subscribers.remove(sub)
            sub.wake()

    def close(self) -> None:
        """End every event stream (the pages show 'disconnected')."""
        with self._lock:
            self._closed = True
            for sub in self._subscribers:
                try:
                    sub.queue.put_nowait(CLOSED)
                except queue.Full:
                    sub.dropped = True
                sub.wake()
            self._subscribers.clear()
            self._history.clear()
