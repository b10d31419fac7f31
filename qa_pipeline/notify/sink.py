"""``NotifierSink``: the notifiers as a :class:`~qa_pipeline.sinks.base.Sink` in the FanOut.

``emit`` looks at each event (``alert`` -> critical finding notification; ``scorecard`` with
a score below the threshold -> low score notification), builds the message and puts it on
each notifier's bounded queue with ``put_nowait``: it never waits for a network. Each
notifier has its own delivery thread, so a slow or failing channel delays nobody else.
A failed attempt is retried with bounded exponential back-off (``retry``) when the failure can
pass (connection, timeout, HTTP 5xx/429, rate-limit errcodes, SMTP 4xx).

Counted on the injected registry::

    qa_notify_sent_total{notifier}              notifications delivered
    qa_notify_failures_total{notifier,reason}   failed delivery attempts (each retry counts)
    qa_notify_queue_depth{notifier}             notifications waiting

and through the observer (``PipelineMetrics``) as ``qa_dropped_total{stage="notify",reason}``
for every notification given up: ``queue_full``, ``retries_exhausted``, ``not_retryable``,
``shutdown`` (still queued when ``close`` timed out).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..messages import CallInfo
from ..sinks.base import Event, EventKind, NullObserver, SinkObserver
from .config import NotifyConfig
from .message import Notification, from_alert, from_scorecard
from .notifiers import Notifier, NotifyError, build_notifier

log = logging.getLogger("qa_pipeline.notify")

STAGE = "notify"


class NotifyMetrics:
    """The notifier counters on an injected registry (nothing registered at import)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "qa_notify_sent",
            "Notifications delivered, by notifier",
            ["notifier"],
            registry=registry,
        )
        self.failures = Counter(
            "qa_notify_failures",
            "Failed notification delivery attempts, by notifier and reason",
            ["notifier", "reason"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "qa_notify_queue_depth",
            "Notifications waiting for delivery, by notifier",
            ["notifier"],
            registry=registry,
        )


class _Worker:
    def __init__(self, owner: NotifierSink, notifier: Notifier, queue_max: int) -> None:
        self.owner = owner
        self.notifier = notifier
        self.name = notifier.name
        self.queue: queue.Queue[Notification | None] = queue.Queue(queue_max)
        self.pending = 0
        self.thread = threading.Thread(target=self.run, name=f"qa-notify-{self.name}", daemon=True)

    def offer(self, n: Notification) -> bool:
        with self.owner._cond:
            try:
                self.queue.put_nowait(n)
            except queue.Full:
                return False
            self.pending += 1
        self.owner._depth(self)
        return True

    def run(self) -> None:
        o = self.owner
        while True:
            n = self.queue.get()
            if n is None:
                return
            try:
                if o._abort.is_set():
                    o._dropped(self.name, "shutdown")
                else:
                    self.deliver(n)
            finally:
                with o._cond:
                    self.pending -= 1
                    o._cond.notify_all()
                o._depth(self)

    def deliver(self, n: Notification) -> None:
        o = self.owner
        retry = o.config.retry
        for attempt in range(1, retry.max_attempts + 1):
            try:
                self.notifier.send(n)
            except NotifyError as e:
                o._failed(self.name, e.reason, e)
                if not e.retryable:
                    o._dropped(self.name, "not_retryable")
                    return
            except Exception as e:  # a bug in a notifier must not kill the thread
                o._failed(self.name, type(e).__name__, e)
            else:
                o._sent(self.name)
                return
            if attempt == retry.max_attempts:
                break
            delay = retry.delay(attempt) * (0.8 + 0.4 * o._rng.random())
            if o._abort.wait(delay):
                o._dropped(self.name, "shutdown")
                return
        o._dropped(self.name, "retries_exhausted")


class NotifierSink:
    """Supervisor notifications from the event stream; never blocks ``emit``.

    ``registry``: where the ``qa_notify_*`` metrics go (None = not exported). ``observer``:
    the pipeline's :class:`~qa_pipeline.metrics.PipelineMetrics` (drops). ``notifiers``:
    override the channels built from ``config`` (tests).
    """

    name = "notify"

    def __init__(
        self,
        config: NotifyConfig,
        *,
        registry: CollectorRegistry | None = None,
        observer: SinkObserver | None = None,
        notifiers: Sequence[Notifier] | None = None,
    ) -> None:
        self.config = config
        self._observer = observer or NullObserver()
        self._metrics = NotifyMetrics(registry) if registry is not None else None
        self._cond = threading.Condition()
        self._abort = threading.Event()
        self._rng = random.Random()
        self._agents: OrderedDict[str, str] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._closed = False
        self.sent: dict[str, int] = {}
        self.failures: dict[tuple[str, str], int] = {}
        self.dropped: dict[tuple[str, str], int] = {}
        chans = (
            list(notifiers)
            if notifiers is not None
            else [build_notifier(c) for c in config.notifiers]
        )
        self._workers = [_Worker(self, ch, config.queue_max) for ch in chans]
        for w in self._workers:
            if self._metrics is not None:
                self._metrics.sent.labels(w.name)
                self._metrics.queue_depth.labels(w.name).set(0)
            w.thread.start()

    # -- counting ----------------------------------------------------------------------------

    def _sent(self, name: str) -> None:
        self.sent[name] = self.sent.get(name, 0) + 1
        if self._metrics is not None:
            self._metrics.sent.labels(name).inc()

    def _failed(self, name: str, reason: str, exc: Exception) -> None:
        key = (name, reason)
        n = self.failures[key] = self.failures.get(key, 0) + 1
        if self._metrics is not None:
            self._metrics.failures.labels(name, reason).inc()
        if n == 1 or n % 100 == 0:
            log.warning("notifier %s: delivery failed (%s, %d so far): %s", name, reason, n, exc)

    def _dropped(self, name: str, reason: str) -> None:
        key = (name, reason)
        n = self.dropped[key] = self.dropped.get(key, 0) + 1
        self._observer.on_drop(STAGE, reason)
        if n == 1 or n % 100 == 0:
            log.error("notifier %s: notification dropped (%s, %d so far)", name, reason, n)

    def _depth(self, w: _Worker) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.labels(w.name).set(w.queue.qsize())

    # -- Sink --------------------------------------------------------------------------------

    def call_started(self, call: CallInfo) -> None:
        """Optional hook: lets messages name the agent (events do not carry it). Kept
        until the call's scorecard passes (at most 10,000, oldest out first)."""
        if call.agent_id:
            with self._cond:
                self._agents[call.call_id] = call.agent_id
                if len(self._agents) > 10_000:
                    self._agents.popitem(last=False)

    def notification_for(self, event: Event) -> Notification | None:
        t = self.config.triggers
        agent = self._agents.get(event.call_id)
        if event.kind is EventKind.ALERT and t.critical_findings:
            return from_alert(
                event,
                agent,
                include_evidence=self.config.include_evidence,
                dashboard_url=self.config.dashboard_url,
            )
        if event.kind is EventKind.SCORECARD and t.score_below is not None:
            score = event.payload.get("score")
            if isinstance(score, (int, float)) and score < t.score_below:
                return from_scorecard(
                    event, agent, t.score_below, dashboard_url=self.config.dashboard_url
                )
        return None

    def emit(self, event: Event) -> None:
        if self._closed or event.kind not in (EventKind.ALERT, EventKind.SCORECARD):
            return
        with self._cond:
            if event.event_id in self._seen:  # at-least-once upstream: page once
                return
            self._seen[event.event_id] = None
            if len(self._seen) > 10_000:
                self._seen.popitem(last=False)
        try:
            n = self.notification_for(event)
        except Exception as e:  # a malformed payload: count it, never raise into the pipeline
            for w in self._workers:
                self._failed(w.name, "format", e)
                self._dropped(w.name, "format")
            return
        finally:
            if event.kind is EventKind.SCORECARD:  # the call's last event: forget its agent
                with self._cond:
                    self._agents.pop(event.call_id, None)
        if n is None:
            return
        for w in self._workers:
            if not w.offer(n):
                self._failed(w.name, "queue_full", RuntimeError("queue full"))
                self._dropped(w.name, "queue_full")

    def flush(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds until every queued notification was handled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while any(w.pending for w in self._workers):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                self._cond.wait(left)

    def close(self) -> None:
        """Deliver what is queued for up to ``close_timeout_s``, then give up (counted)."""
        if self._closed:
            return
        self._closed = True
        self.flush(self.config.close_timeout_s)
        self._abort.set()
        for w in self._workers:
            while True:
                try:
                    w.queue.put(None, timeout=0.1)
                    break
                except queue.Full:
                    # drain what cannot be delivered any more (counted as shutdown drops)
                    self._drain_one(w)
        for w in self._workers:
            w.thread.join(timeout=2.0)

    def _drain_one(self, w: _Worker) -> None:
        try:
            n = w.queue.get_nowait()
        except queue.Empty:
            return
        if n is not None:
            self._dropped(w.name, "shutdown")
            with self._cond:
                w.pending -= 1
                self._cond.notify_all()

    @property
    def notifier_names(self) -> list[str]:
        return [w.name for w in self._workers]

    def stats(self) -> dict[str, Any]:
        return {
            "sent": dict(self.sent),
            "failures": dict(self.failures),
            "dropped": dict(self.dropped),
        }
