"""Replay stored transcripts through the sinks, with metrics: a small real process.

    python -m qa_pipeline.replay --transcripts DIR_OR_FILES... \\
        [--kafka HOST:PORT[,HOST:PORT] [--config FILE]] [--spool DIR] [--jsonl DIR] \\
        [--stdout] [--metrics-port N] [--pace SECONDS] [--hold SECONDS] [--drain-only]

``--config``: a pipeline config whose ``sinks.kafka`` gives the connection's TLS and SASL
settings (a broker off this machine is refused in clear unless it says so).

Each transcript document (``transcript.transcript_to_dict`` format) becomes the events of a
call's session (its ``call.session_id``, else one derived from the document's content:
replaying a document again gives the same event ids): utterances, findings (+ alerts for critical ones), the scorecard and the transcript.
Findings come from the document itself when it carries ``findings`` and/or ``scorecard``
(``score --json`` output, test data); otherwise from ``qa_pipeline.rules`` when that package
provides ``load_pack`` and ``score_transcript``; otherwise there are none.

Progress goes to stderr as lines ``replay-status {json}`` (``ready`` with the metrics port,
``call`` per call, ``done`` at the end) so a supervising process can follow it. SIGTERM and
SIGINT stop it cleanly: the sinks are flushed (bounded) and closed; whatever Kafka did not
acknowledge stays in the spool for the next run. ``--drain-only`` just delivers a spool.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from .config import load_config
from .messages import Finding, Scorecard, Utterance, replace
from .metrics import MetricsServer, PipelineMetrics, start_metrics_server
from .privacy import Redactor, default_redactor, redact_json
from .sinks.base import EventFactory, FanOut, call_timeline, events_for_message
from .sinks.codec import finding_from_dict, scorecard_from_dict
from .sinks.config import SinksConfig, build_sinks
from .sinks.jsonl import JsonlSinkConfig
from .sinks.kafka import KafkaSinkConfig, KafkaTopics, SpoolConfig
from .transcript import Transcript, transcript_from_dict

log = logging.getLogger("qa_pipeline.replay")


def status(kind: str, **fields: Any) -> None:
    print("replay-status " + json.dumps({"status": kind, **fields}), file=sys.stderr, flush=True)


def load_documents(paths: Sequence[str]) -> list[dict[str, Any]]:
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    return [json.loads(f.read_text(encoding="utf-8")) for f in files]


def document_session_id(doc: dict[str, Any]) -> str:
    """The session a stored transcript document replays: its own ``call.session_id``, or,
    for a document written before session ids, 32 hex digits of the SHA-256 of its
    content, so the same document replayed again (a re-run after a kill, ``--repeat``) is
    the same session with the same event ids, and downstream de-duplication works."""
    call = doc.get("call") if isinstance(doc.get("call"), dict) else {}
    if call and call.get("session_id"):
        return str(call["session_id"])
    raw = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def with_document_session(doc: dict[str, Any], transcript: Transcript) -> Transcript:
    """``transcript`` (read from ``doc``) with the session of :func:`document_session_id`."""
    call = replace(transcript.call, session_id=document_session_id(doc))
    return dataclasses.replace(transcript, call=call)


def score(
    doc: dict[str, Any], transcript: Transcript, mode: str, pack: str | None
) -> tuple[list[Finding], Scorecard | None]:
    """Findings and scorecard of one call (see the module docstring for the sources)."""
    call_id = transcript.call.call_id
    embedded = "findings" in doc or "scorecard" in doc
    if mode == "embedded" or (mode == "auto" and embedded):
        sc = scorecard_from_dict(doc["scorecard"], call_id) if doc.get("scorecard") else None
        raw = doc.get("findings")
        findings = (
            [finding_from_dict(f, call_id) for f in raw]
            if raw is not None
            else list(sc.findings if sc else ())
        )
        return findings, sc
    try:
        from .rules import load_pack, score_transcript
    except ImportError:
        if mode == "engine":
            raise
        return [], None
    scorecard = score_transcript(load_pack(pack), transcript)
    return list(scorecard.findings), scorecard


class Replayer:
    """Emits calls through a :class:`FanOut`, feeding :class:`PipelineMetrics` as it goes."""

    def __init__(
        self, sinks: FanOut, metrics: PipelineMetrics, stop: threading.Event, pace: float = 0.0
    ) -> None:
        self.sinks = sinks
        self.metrics = metrics
        self.stop = stop
        self.pace = pace
        self.emitted = 0

    def run_call(
        self, transcript: Transcript, findings: list[Finding], scorecard: Scorecard | None
    ) -> int:
        call = transcript.call
        factory = EventFactory.for_call(call)
        self.metrics.on_call_started(call)
        last_utt_emitted = time.monotonic()
        n = 0
        for msg in call_timeline(transcript, findings, scorecard):
            if self.stop.is_set():
                break
            if isinstance(msg, Utterance) and self.pace > 0 and self.stop.wait(self.pace):
                break
            events = events_for_message(factory, msg)
            self.sinks.emit_all(events)
            n += len(events)
            if isinstance(msg, Utterance):
                last_utt_emitted = time.monotonic()
                self.metrics.on_utterance(msg, None)
            elif isinstance(msg, Finding):
                self.metrics.on_finding(msg, time.monotonic() - last_utt_emitted)
            elif isinstance(msg, Scorecard):
                self.metrics.on_scorecard(msg)
        self.metrics.on_call_ended(call.call_id)
        self.emitted += n
        return n


def build_config(args: argparse.Namespace) -> SinksConfig:
    kafka = None
    if args.kafka:
        p = args.topic_prefix
        secure: dict[str, Any] = {}
        if args.config:  # the connection's TLS and SASL settings: the config's sinks.kafka
            written = load_config(args.config).sinks.kafka
            if written is not None:
                sec = written.security()
                secure = {k: getattr(sec, k) for k in sec.model_fields_set}
        kafka = KafkaSinkConfig(
            **secure,
            bootstrap_servers=tuple(s.strip() for s in args.kafka.split(",") if s.strip()),
            topics=KafkaTopics(
                findings=f"{p}findings",
                alerts=f"{p}alerts",
                scorecards=f"{p}scorecards",
                transcripts=f"{p}transcripts",
                utterances=f"{p}utterances",
            ),
            compression_type=args.compression,
            spool=SpoolConfig(
                directory=args.spool,
                max_events=args.spool_max_events,
                overflow=args.overflow,
                sync=args.spool_sync,
            ),
            close_timeout_s=args.flush_timeout,
            backoff_max_s=args.backoff_max,
            reconnect_backoff_max_ms=int(args.backoff_max * 1000),
        )
    jsonl = None
    if args.jsonl or args.stdout or kafka is None:
        jsonl = JsonlSinkConfig(
            directory=args.jsonl or (None if kafka else "out/events"), stdout=args.stdout
        )
    return SinksConfig(jsonl=jsonl, kafka=kafka)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m qa_pipeline.replay", description=__doc__)
    ap.add_argument("--transcripts", nargs="*", default=[], help="JSON files or directories")
    ap.add_argument("--kafka", help="bootstrap servers, comma separated (none = JSONL only)")
    ap.add_argument(
        "--config", help="pipeline config whose sinks.kafka gives TLS and SASL for --kafka"
    )
    ap.add_argument("--topic-prefix", default="qa.")
    ap.add_argument("--compression", choices=["gzip", "lz4", "snappy", "zstd"], default=None)
    ap.add_argument("--spool", default="out/spool/kafka")
    ap.add_argument("--spool-max-events", type=int, default=1_000_000)
    ap.add_argument("--overflow", choices=["drop_oldest", "reject_new"], default="drop_oldest")
    ap.add_argument("--spool-sync", choices=["full", "normal"], default="full")
    ap.add_argument("--jsonl", help="directory for JSONL event files")
    ap.add_argument("--stdout", action="store_true", help="also print events as JSON lines")
    ap.add_argument("--metrics-host", default="127.0.0.1")
    ap.add_argument("--metrics-port", type=int, help="serve /metrics (0 = any free port)")
    ap.add_argument("--rules", choices=["auto", "embedded", "engine"], default="auto")
    ap.add_argument("--pack", help="rule pack for --rules engine")
    ap.add_argument("--pace", type=float, default=0.0, help="seconds before each utterance")
    ap.add_argument("--repeat", type=int, default=1, help="replay the documents N times")
    ap.add_argument("--hold", type=float, default=0.0, help="stay up N s after (inf = forever)")
    ap.add_argument("--flush-timeout", type=float, default=30.0)
    ap.add_argument("--backoff-max", type=float, default=2.0, help="max retry delay (s)")
    ap.add_argument("--drain-only", action="store_true", help="deliver the spool and exit")
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--kafka-client-log", action="store_true", help="show kafka-python's logs")
    return ap.parse_args(argv)


def quiet_kafka(record: logging.LogRecord) -> bool:
    """A handler filter: kafka-python's own lines below CRITICAL are not shown."""
    name = record.name
    return record.levelno >= logging.CRITICAL or not (name == "kafka" or name.startswith("kafka."))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if not args.kafka_client_log:  # our sink logs one clear line per outage instead
        # at this handler, not by kafka's level: the connection's diagnosis still hears why
        # a broker refused (kafka_security.connect)
        handler.addFilter(quiet_kafka)
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry, stages=("sinks",))
    server: MetricsServer | None = None
    if args.metrics_port is not None:
        server = start_metrics_server(registry, args.metrics_host, args.metrics_port)
    sinks = build_sinks(build_config(args), metrics)
    status("ready", metrics_port=server.port if server else None, pid=_pid())
    replayer = Replayer(sinks, metrics, stop, pace=args.pace)
    try:
        if not args.drain_only:
            docs = load_documents(args.transcripts)
            redactor = (
                Redactor(load_config(args.config).privacy) if args.config else default_redactor()
            )
            for doc in docs:  # documents written before redaction: masked before they go out
                redact_json(doc, redactor)
            for _ in range(args.repeat):
                for doc in docs:
                    if stop.is_set():
                        break
                    transcript = with_document_session(doc, transcript_from_dict(doc))
                    findings, scorecard = score(doc, transcript, args.rules, args.pack)
                    n = replayer.run_call(transcript, findings, scorecard)
                    status("call", call_id=transcript.call.call_id, events=n)
        status("emitted", events=replayer.emitted)
        sinks.flush(args.flush_timeout)
        spooled = _spooled(sinks)
        status("done", events=replayer.emitted, spooled=spooled)
        if args.hold > 0:
            stop.wait(None if args.hold == float("inf") else args.hold)
    finally:
        sinks.close()
        if server is not None:
            server.stop()
    return 0


def _pid() -> int:
    import os

    return os.getpid()


def _spooled(sinks: FanOut) -> int:
    from .sinks.kafka import KafkaSink

    return sum(len(s.spool) for _, s in sinks.sinks if isinstance(s, KafkaSink))


if __name__ == "__main__":
    sys.exit(main())
