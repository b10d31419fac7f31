"""The live service: accepts calls from the sources, admits them, routes their audio to
their :class:`~.session.CallSession` and publishes what the sessions emit to the sinks.

Runs on one asyncio loop. Sources call the :class:`~qa_pipeline.sources.base.CallHandler`
methods of :class:`LiveService`. Each call's session owns the call end to end: its VAD, its
utterances at the shared :class:`~.asr_worker.AsrWorker` (which answers the session
directly), its rules (on the rule thread, :class:`~.evaluator.RuleLane`, so that a heavy
pack cannot stall the loop); findings are emitted as soon as decided (a critical one also
as an ``alert``), the scorecard when the call ends. The service holds what calls share:
the ASR worker, the rule lane, the sinks, the metrics, admission and the clock ticks.

Failure isolation: anything a call's processing raises is caught at the service boundary
(``_guard``), logged, counted (``qa_live_call_errors_total{source,reason}``) and that call is
closed and scored with what arrived; other calls never notice.

Fairness: each call has a bounded share of the shared ASR queue (see :mod:`.asr_worker`);
media from the network (WebSocket, AudioSocket) faster than real time beyond a burst, or
past the audio cap, cuts its call off with a clear error (``faster_than_real_time``,
``duration_cap``: the source closes the connection with that reason); ``live.max_calls``
refuses new calls at admission (``at_capacity``). Scorecards of calls that lost
utterances or were cut short say so (``complete: false``, ``incomplete_reasons``).

Recording (``live.record``, off by default; :mod:`.recorder`): each call's legs are written
to disk as they come; after its scorecard the call's personal data is beeped in the file
kept, the raw file deleted, a ``recordings`` row stored, the dashboard told.

Shutdown (:meth:`LiveService.shutdown`, on SIGTERM/SIGINT in ``serve``): stop accepting,
end every open call (flush its VAD), finish the queued ASR, score, flush the sinks; bounded
by ``shutdown_timeout_s`` (past it, utterances still at the ASR are dropped, counted
``reason=shutdown``, and the calls are scored without them). Calls ended by shutdown are
scored incomplete (``shutdown``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from ..asr.engine import AsrEngine
from ..dashboard.recordings import RecordingLookup
from ..logs import LOG_CALL, LOG_PEER
from ..messages import AudioChunk, CallInfo, Role, Scorecard, SpeechSegment
from ..privacy import Redactor, redact_call
from ..purge import PurgeReport, purge_loop, run_purge, spool_of
from ..rules import RulePack, load_pack
from ..rules.terms import pack_terms
from ..sinks import FanOut, build_sinks
from ..sinks.base import Event
from ..sources.base import EndReason, Source, SourceError
from ..store import transcript_settings
from ..store.writer import LiveRun, StoreWriter
from ..transcript import Transcript, transcript_to_dict
from .asr_worker import AsrWorker
from .config import (
    AudioSocketSourceConfig,
    DeviceSourceConfig,
    ReplaySourceConfig,
    ServeConfig,
    WebSocketSourceConfig,
)
from .decoder import DecodeOptions, LiveDecoder
from .evaluator import RuleLane
from .metrics import LiveMetrics
from .recorder import CallRecording, Kept, remove_partials, whisper_spans
from .session import CallSession
from .verifier import LiveVerifier

log = logging.getLogger("qa_pipeline.live")

TICK_S = 0.5
# sources whose media comes from the network, paced against the wall clock; their
# connection handlers close a call's connection on a SourceError from ``audio``
NETWORK_SOURCES = frozenset({"WebSocketSource", "AudioSocketSource"})


def build_source(cfg: Any) -> Source:
    """A source from its config entry (imports its transport only when configured)."""
    if isinstance(cfg, WebSocketSourceConfig):
        from ..sources.websocket import WebSocketSource

        return WebSocketSource(
            name=cfg.name,
            host=cfg.host,
            port=cfg.port,
            path=cfg.path,
            max_message_bytes=cfg.max_message_bytes,
            auth=cfg.auth,
            secret=cfg.secret(),
            public_url=cfg.public_url,
        )
    if isinstance(cfg, AudioSocketSourceConfig):
        from ..messages import Role
        from ..sources.audiosocket import AudioSocketSource

        return AudioSocketSource(
            name=cfg.name,
            host=cfg.host,
            port=cfg.port,
            first_role=Role(cfg.first_role),
            leg_wait_s=cfg.leg_wait_s,
            idle_timeout_s=cfg.idle_timeout_s,
            allow=cfg.allow,
        )
    if isinstance(cfg, ReplaySourceConfig):
        from ..sources.replay import ReplaySource

        return ReplaySource(
            cfg.files, name=cfg.name, speed=cfg.speed, chunk_ms=cfg.chunk_ms, loop=cfg.loop
        )
    if isinstance(cfg, DeviceSourceConfig):
        from ..sources.device import DeviceSource

        return DeviceSource(
            name=cfg.name,
            device=cfg.device,
            sample_rate=cfg.sample_rate,
            channels=cfg.channels,
            chunk_ms=cfg.chunk_ms,
        )
    raise TypeError(f"unknown source config {type(cfg).__name__}")


def decode_options(config: ServeConfig) -> DecodeOptions:
    live = config.live
    return DecodeOptions(
        window=live.window,
        min_window_s=live.min_window_s,
        pad_s=live.pad_s,
        beam_size=live.beam_size or config.asr.beam_size,
        timestamps_cut=live.timestamps_cut,
        no_repeat_ngram_size=live.no_repeat_ngram_size,
    )


def _warmup_segment() -> SpeechSegment:
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.01
    return SpeechSegment("warmup", 0, Role.UNKNOWN, 0.0, 1.0, noise)


class LiveService:
    """Many concurrent calls on one loaded model. Also the sources' ``CallHandler``."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        engine: AsrEngine | None = None,
        pack: RulePack | None = None,
        sinks: FanOut | None = None,
        sources: Sequence[Source] | None = None,
        metrics: LiveMetrics | None = None,
        store: StoreWriter | None = None,
    ) -> None:
        self.config = config
        # personal data masked in utterances and in the call metadata sources hand in (a
        # hash mode without its key fails here, before anything starts)
        self.redactor = Redactor(config.privacy)
        self.metrics = metrics or LiveMetrics(CollectorRegistry())
        self._engine = engine
        self.pack = pack or load_pack(config.rules.pack, config.rules.settings or None)
        self.sinks = sinks or build_sinks(config.sinks, self.metrics)
        self.sources: list[Source] = (
            list(sources) if sources is not None else [build_source(s) for s in config.sources]
        )
        self.sessions: dict[str, CallSession] = {}
        # memory: only open calls are kept per call (``sessions``, gone when the call is
        # scored); of finished ones the last ``live.recent_scorecards`` scorecards, oldest
        # out first (they all went to the sinks), and a count
        self.scorecards: collections.OrderedDict[str, Scorecard] = collections.OrderedDict()
        self.scored = 0
        self.pack.index.limit_cache(config.live.text_cache)  # bounded across calls
        self._finishing: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._purger: asyncio.Task[None] | None = None
        self.purges: list[PurgeReport] = []  # the last few retention purges (newest last)
        self.worker: AsrWorker | None = None
        self.decoder: LiveDecoder | None = None
        self._accepting = False
        self._listening: set[str] = set()  # sources started (readiness, see .health)
        self._peers: dict[str, str | None] = {}  # call id -> remote peer, for log lines
        self.call_errors = 0
        self._paced = {s.name for s in self.sources if type(s).__name__ in NETWORK_SOURCES}
        self.rules = RuleLane()  # every call's rule evaluation, off the loop, in order
        self.verifier: LiveVerifier | None = None  # asr.verify: set up at start
        # every ended call into the store (``store:``), off the loop: a bounded queue and
        # a writer thread with its own connection (qa_pipeline.store.writer)
        self.store = store
        if store is None and config.store:
            self.store = StoreWriter(
                config.store,
                LiveRun.for_pack(self.pack, "serve"),
                settings={
                    **transcript_settings(config),
                    "live": dataclasses.asdict(decode_options(config)),
                },
                queue_max=config.store_queue,
                registry=self.metrics.registry,
            )
        self.recordings: list[Kept] = []  # the last few recordings kept (newest last)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._engine is None:
            # the decoder is biased to the pack the calls are scored with (asr.bias)
            bias = tuple(pack_terms(self.pack, self.config.asr.bias))
            self._engine = await asyncio.to_thread(AsrEngine, self.config.asr, None, bias)
        self.decoder = LiveDecoder(self._engine, decode_options(self.config))
        live = self.config.live
        if live.warmup:  # first decodes of a shape are slow: pay it before the first call
            await asyncio.to_thread(self.decoder.decode, [_warmup_segment()])
        self.worker = AsrWorker(
            self.decoder,
            slots=self._engine.config.workers,
            max_batch=live.max_batch,
            queue_max=live.queue_max,
            per_call_max=live.per_call_queue_max,
            overflow=live.overflow,
            max_age_s=live.max_queue_age_s,
            metrics=self.metrics,
        )
        self.worker.start()
        asr = self.config.asr
        verifies = asr.verify and asr.language in ("zh", None) and live.verify_keep_s > 0
        if verifies and not isinstance(self._engine, AsrEngine):  # a test's stand-in
            log.info("no verification of required phrases: the ASR is not a Whisper engine")
        elif verifies:
            # required phrases missed are verified at each call's end (as recorded calls)
            self.verifier = LiveVerifier(
                self._engine,
                asr.verify_margin,
                self.worker,
                self.rules,
                self.pack,
                timeout_s=live.verify_timeout_s,
                metrics=self.metrics,
                heard_beam=self.decoder.opts.beam_size,
            )
        if self.store is not None:
            self.store.start()
            log.info("ended calls are written to the store %s", self.store.label)
        if live.record.enabled:  # raw audio of calls a crash cut off is never kept
            await asyncio.to_thread(remove_partials, live.record.dir)
        self._accepting = True
        self._ticker = asyncio.create_task(self._tick_loop(), name="live-ticker")
        if self.config.retention.interval_s is not None:
            self._purger = asyncio.create_task(
                purge_loop(self.config.retention, self.purge, self.metrics, self._purged),
                name="retention-purge",
            )
        for src in self.sources:
            await src.start(self)
            self._listening.add(src.name)
        log.info(
            "serving: %d source(s), ASR window=%s beam=%d batch<=%d, rule pack %s",
            len(self.sources),
            live.window,
            self.decoder.opts.beam_size,
            self.worker.max_batch,
            self.pack.name,
        )

    async def shutdown(self, drain_s: float | None = None) -> None:
        """Drain: stop sources, end open calls, finish the ASR, score, flush sinks."""
        limit = self.config.shutdown_timeout_s if drain_s is None else drain_s
        deadline = time.monotonic() + limit
        self._accepting = False
        self._listening.clear()
        if self.verifier is not None:  # calls' verification ends within the drain time
            self.verifier.until = deadline - min(5.0, limit / 4)
        for src in self.sources:
            try:
                await asyncio.wait_for(src.stop(), max(0.1, deadline - time.monotonic()))
            except (TimeoutError, Exception):  # a source that will not stop must not block
                log.exception("stopping source %s", getattr(src, "name", src))
        for call_id in list(self.sessions):
            self.call_ended(call_id, EndReason.SHUTDOWN)
        if self._finishing:
            _, pending = await asyncio.wait(
                self._finishing, timeout=max(0.1, deadline - time.monotonic())
            )
            if pending:
                log.warning("shutdown timeout: %d call(s) scored without pending ASR", len(pending))
                for s in list(self.sessions.values()):
                    s.abandon_pending("shutdown")
                await asyncio.wait(pending, timeout=5)
        for task in (self._ticker, self._purger):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.worker is not None:
            await self.worker.close()
        self.rules.close()
        await asyncio.to_thread(self.sinks.flush, max(1.0, deadline - time.monotonic()))
        self.sinks.close()
        if self.store is not None:  # what it cannot write in time is counted as dropped
            await asyncio.to_thread(self.store.close, max(1.0, deadline - time.monotonic()))

    @property
    def accepting(self) -> bool:
        """Whether new calls are taken (started, not shutting down)."""
        return self._accepting

    def source_listening(self, src: Source) -> bool:
        """Whether ``src`` has started and (a network source) its server still listens."""
        if src.name not in self._listening:
            return False
        server = getattr(src, "_server", None)  # asyncio / websockets server, if any
        is_serving = getattr(server, "is_serving", None)
        return bool(is_serving()) if callable(is_serving) else True

    # -- CallHandler (called by the sources, on the loop) -----------------------------------

    def call_started(self, call: CallInfo, sample_rate: int, *, source: str) -> bool:
        call = redact_call(call, self.redactor)  # a caller number from the platform, ...
        if not self._accepting:
            self._count_error(source, "shutting_down", call.call_id, "")
            return False
        if call.call_id in self.sessions:
            self._count_error(source, "duplicate_call_id", call.call_id, "")
            return False
        live = self.config.live
        if live.max_calls and len(self.sessions) >= live.max_calls:
            self._count_error(
                source, "at_capacity", call.call_id, f"{len(self.sessions)} calls open, refused"
            )
            return False
        try:
            session = CallSession(
                call,
                sample_rate,
                vad=self.config.vad,
                pack=self.pack,
                emit=self._emit,
                metrics=self.metrics,
                source=source,
                asr=self.worker,
                hold_s=self.config.vad.stop_ms / 1000 + 0.1,
                max_speed=live.max_speed if source in self._paced else 0.0,
                burst_s=live.burst_s,
                max_audio_s=live.max_audio_s,
                rules=self.rules,
                on_error=self._fail,
                redactor=self.redactor,
                verifier=self.verifier,
                verify_keep_s=live.verify_keep_s,
            )
        except Exception as exc:  # e.g. an unsupported rate: this call only
            self._count_error(source, type(exc).__name__, call.call_id, repr(exc))
            return False
        if live.record.enabled:
            try:
                session.recording = CallRecording(
                    live.record.dir, session.call, sample_rate, live.record.format
                )
            except Exception as exc:  # a full disk, a directory not writable: not recorded
                self._count_error(source, "recording_failed", call.call_id, repr(exc))
        self.sessions[call.call_id] = session
        peer = self._peers[call.call_id] = LOG_PEER.get()
        LOG_CALL.set(call.call_id)  # later lines of this connection's task name the call
        self.metrics.on_call_started(call)
        for _, sink in self.sinks.sinks:  # e.g. the dashboard: agent id for the call row
            if hasattr(sink, "call_started"):
                sink.call_started(call)
        log.info(
            "call %s started (%s, %d Hz)",
            call.call_id,
            source,
            sample_rate,
            extra={"call_id": call.call_id, "peer": peer, "source": source},
        )
        return True

    def audio(self, chunk: AudioChunk) -> None:
        s = self.sessions.get(chunk.call_id)
        if s is None or s.closing:
            return
        over = s.overrun(chunk)
        if over is not None:
            self._cut(s, *over)
            return
        try:
            s.push(chunk)
        except Exception as exc:
            self._fail(s, exc)

    def call_error(
        self, call_id: str | None, reason: str, detail: str = "", *, source: str
    ) -> None:
        self._count_error(source, reason, call_id, detail)
        s = self.sessions.get(call_id) if call_id else None
        if s is not None:
            s.errors[reason] += 1

    def call_ended(self, call_id: str, reason: EndReason) -> None:
        s = self.sessions.get(call_id)
        if s is None or s.closing:
            return
        s.closing = True
        self.metrics.on_call_closed(reason.value)
        t = asyncio.create_task(self._finish(s, reason), name=f"finish-{call_id}")
        self._finishing.add(t)
        t.add_done_callback(self._finishing.discard)

    # -- retention ------------------------------------------------------------------------

    def purge(self) -> PurgeReport:
        """One retention purge (worker thread): the configured store (``retention.store``,
        else the store this service writes its calls to) and audio directories, the JSONL
        directory, and the Kafka sink's spool through the open sink."""
        r, jsonl = self.config.retention, self.config.sinks.jsonl
        rec = self.config.live.record
        if rec.enabled and rec.dir not in r.audio_dirs:  # recordings age as audio
            r = r.model_copy(update={"audio_dirs": (*r.audio_dirs, rec.dir)})
        return run_purge(
            r,
            store=r.store or self.config.store or None,  # a SQLite path or postgresql:// URL
            spool=spool_of(self.sinks.sinks),
            jsonl_dir=Path(jsonl.directory) if jsonl is not None and jsonl.directory else None,
        )

    def _purged(self, report: PurgeReport) -> None:
        self.purges = [*self.purges[-9:], report]

    # -- internals ------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self.sinks.emit(event)

    def _count_error(self, source: str, reason: str, call_id: str | None, detail: str) -> None:
        self.call_errors += 1
        self.metrics.on_call_error(source, reason)
        extra: dict[str, str | None] = {"source": source}
        if call_id:
            extra["call_id"] = call_id
            if self._peers.get(call_id):
                extra["peer"] = self._peers[call_id]
        log.warning("call %s (%s): %s %s", call_id or "-", source, reason, detail, extra=extra)

    def _cut(self, s: CallSession, reason: str, detail: str) -> None:
        """Cut a call off (too fast, too long): it is scored incomplete with ``reason``. A
        network source gets a SourceError (it counts it, closes the connection with the
        reason and ends the call); any other source's call is ended here."""
        s.cut = reason
        if s.source in self._paced:
            raise SourceError(reason, detail)
        self._count_error(s.source, reason, s.call.call_id, detail)
        s.errors[reason] += 1
        self.call_ended(s.call.call_id, EndReason.ERROR)

    def _fail(self, s: CallSession, exc: Exception) -> None:
        """A call's processing raised: count it, close that call, score what arrived."""
        reason = type(exc).__name__
        log.error(
            "call %s failed: %r; closing it",
            s.call.call_id,
            exc,
            exc_info=exc,
            extra=self._log_extra(s),
        )
        self._count_error(s.source, reason, s.call.call_id, "")
        s.errors[reason] += 1
        self.call_ended(s.call.call_id, EndReason.ERROR)

    async def _finish(self, s: CallSession, reason: EndReason) -> None:
        call_id = s.call.call_id
        try:
            try:
                s.flush()
            except Exception as exc:
                self._count_error(s.source, type(exc).__name__, call_id, "flush")
            card = await s.finish(reason)
            self._keep(call_id, card)
            if self.store is not None:
                self.store.submit(self._stored_doc(s, card), card)
            if not card.complete:
                self.metrics.on_incomplete(card.incomplete_reasons)
            log.log(
                logging.INFO if card.complete else logging.WARNING,
                "call %s ended (%s): score %.1f %s, %d utterances, %d findings%s",
                call_id,
                reason.value,
                card.score,
                card.grade,
                s.utterances,
                len(card.findings),
                ""
                if card.complete
                else f"; INCOMPLETE ({', '.join(card.incomplete_reasons)}; "
                f"{s.lost} utterance(s) not transcribed)",
                extra=self._log_extra(s),
            )
        except Exception as exc:
            log.exception("scoring call %s", call_id, extra=self._log_extra(s))
            self._count_error(s.source, type(exc).__name__, call_id, "end")
        finally:
            try:
                if s.recording is not None:
                    await self._keep_recording(s)
            finally:
                self.sessions.pop(call_id, None)
            self._peers.pop(call_id, None)
            self.metrics.on_call_ended(call_id)

    @staticmethod
    def _stored_doc(s: CallSession, card: Scorecard) -> dict[str, Any]:
        """The call's transcript document as the store keeps it: its utterances as the
        rules saw them (redacted by the text step), the call's (redacted) metadata, its
        start when the source gave none (when it reached this service, UTC), the source it
        came through."""
        t = Transcript(call=s.call, utterances=tuple(s.transcript), ended=s.ended_message())
        doc = transcript_to_dict(t)
        if not doc["call"].get("started_at"):
            doc["call"]["started_at"] = s.wall_started
        if not doc["call"].get("source"):
            doc["call"]["source"] = s.source  # the serve source it came through
        return doc

    def recording_lookup(self) -> RecordingLookup | None:
        """Where the dashboard finds a call's kept recording: the store's row when a store
        is set, else the file in ``live.record.dir`` (None: recording is off)."""
        from ..dashboard.recordings import dir_recordings, first_of, store_recordings

        rec = self.config.live.record
        if not rec.enabled:
            return None
        in_dir = dir_recordings(rec.dir, rec.format)
        target = self.record_store()
        return first_of(store_recordings(target), in_dir) if target else in_dir

    def record_store(self) -> str | None:
        """The store that gets the rows of kept recordings (None: none): ``live.record.store``,
        else ``retention.store``, else the store the calls are written to."""
        return self.config.live.record.store or self.config.retention.store or self.config.store

    async def _keep_recording(self, s: CallSession) -> None:
        """The call's recording redacted and kept (its raw file deleted), its row stored,
        the dashboard told. On any failure the raw file is deleted, never kept."""
        rec = s.recording
        assert rec is not None
        cfg = self.config.live.record
        worker = self.worker
        try:
            kept = await rec.finish(
                worker.run if worker is not None else None,
                whisper_spans(self._engine),
                mode=cfg.mode,
                pad_s=cfg.pad_s,
            )
        except BaseException as exc:
            rec.discard()
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.exception("call %s: recording not kept", rec.call_id, extra=self._log_extra(s))
            self._count_error(s.source, "recording_failed", rec.call_id, repr(exc))
            return
        if kept is None:
            return
        self.recordings = [*self.recordings[-9:], kept]
        target = self.record_store()
        if target:
            try:
                await asyncio.to_thread(_store_recording, target, kept)
            except Exception as exc:
                log.exception("call %s: recording row not stored", kept.call_id)
                self._count_error(s.source, "recording_row_failed", kept.call_id, repr(exc))
        for _, sink in self.sinks.sinks:  # e.g. the dashboard: evidence becomes playable
            if hasattr(sink, "recording_kept"):
                sink.recording_kept(kept.call_id)
        log.info(
            "call %s: recording kept (%s, %.1f s, %d span(s) masked by %s)",
            kept.call_id,
            kept.path.name,
            kept.duration_s,
            len(kept.spans),
            kept.how,
            extra=self._log_extra(s),
        )

    def _log_extra(self, s: CallSession) -> dict[str, str | None]:
        return {
            "call_id": s.call.call_id,
            "peer": self._peers.get(s.call.call_id),
            "source": s.source,
        }

    def _keep(self, call_id: str, card: Scorecard) -> None:
        self.scored += 1
        keep = self.config.live.recent_scorecards
        if keep:
            self.scorecards.pop(call_id, None)  # a recurring call id moves to the end
            self.scorecards[call_id] = card
            while len(self.scorecards) > keep:
                self.scorecards.popitem(last=False)

    async def _tick_loop(self) -> None:
        limit = self.config.call_timeout_s
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            for s in list(self.sessions.values()):
                if s.closing:
                    continue
                try:
                    s.tick()
                except Exception as exc:
                    self._fail(s, exc)
                    continue
                if now - s.started > limit:
                    self._count_error(s.source, "call_timeout", s.call.call_id, "")
                    self.call_ended(s.call.call_id, EndReason.TIMEOUT)


def _store_recording(target: str, kept: Kept) -> None:
    from ..store import Store
    from ..store.recordings import put_recording

    with Store(target) as db:
        put_recording(
            db,
            kept.call_id,
            kept.path,
            sample_rate=kept.sample_rate,
            channels=kept.channels,
            duration_s=kept.duration_s,
            redacted=True,
        )
