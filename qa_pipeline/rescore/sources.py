"""Where calls to re-score come from: directories of recordings, stored transcripts, Kafka."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..kafka_security import KafkaSecurity, connect, split_servers

log = logging.getLogger("qa_pipeline.rescore")

AUDIO_SUFFIXES = frozenset(
    {
        ".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".mp4",
        ".wma", ".webm", ".mka", ".aif", ".aiff", ".au", ".amr", ".caf", ".sph",
    }
)  # fmt: skip


@dataclass
class DirectoryScan:
    """What a directory holds: recordings (with the call id each will get) and transcript
    documents (``transcribe --json`` output without a recording next to it)."""

    audio: list[tuple[Path, str]] = field(default_factory=list)
    documents: list[Path] = field(default_factory=list)


def scan_directories(dirs: Iterable[Path]) -> DirectoryScan:
    """Recordings under the directories (recursively, sorted). The call id is the sidecar's
    ``call.call_id`` when given, else the file stem; stems that repeat across folders get
    their relative path instead (``2026-03-01/call-0001``) so calls never overwrite."""
    scan = DirectoryScan()
    found: list[tuple[Path, Path]] = []
    jsons: list[Path] = []
    for d in dirs:
        d = Path(d)
        if d.is_file():
            found.append((d.parent, d))
            continue
        for p in sorted(d.rglob("*")):
            if not p.is_file() or p.name.startswith("."):
                continue
            suffix = p.suffix.lower()
            if suffix in AUDIO_SUFFIXES:
                found.append((d, p))
            elif suffix == ".json":
                jsons.append(p)
    audio_stems = {p.with_suffix("") for _, p in found}
    scan.documents = [p for p in jsons if p.with_suffix("") not in audio_stems]
    stems: dict[str, int] = {}
    for _, p in found:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    for root, p in found:
        cid = p.stem
        if stems[cid] > 1:
            rel = p.relative_to(root) if p.is_relative_to(root) else p
            cid = rel.with_suffix("").as_posix()
        scan.audio.append((p, cid))
    return scan


def read_document(path: Path) -> dict[str, Any] | None:
    """A transcript document (``transcribe --json`` / ``score --json``), else None."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(doc, dict) and isinstance(doc.get("call"), dict) and "utterances" in doc:
        return transcript_document(doc)
    return None


def transcript_document(doc: dict[str, Any]) -> dict[str, Any]:
    """Only the transcript part of a document (a ``score --json`` one has more)."""
    keep = ("schema_version", "call", "asr", "channel_ends", "utterances")
    return {k: doc[k] for k in keep if k in doc}


ConsumerFactory = Callable[..., Any]


def read_kafka_transcripts(
    bootstrap: str,
    topic: str,
    *,
    consumer_factory: ConsumerFactory | None = None,
    idle_timeout_s: float = 10.0,
    security: KafkaSecurity | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Read the transcripts topic from the beginning until caught up (the end offsets seen
    when we started). Envelopes of ``kind == "transcript"`` are kept, de-duplicated by
    ``event_id`` (the same session delivered twice: a producer retry, a replayed spool)
    and then by call id (the last transcript of a call wins: the store holds one
    transcript per call id). A call id seen again in a *different* session (a reused
    AudioSocket UUID, a replayed test) is a different call that the store cannot hold
    beside the first: it is counted as ``superseded`` and logged, not hidden among the
    duplicates.

    Returns the transcript documents (by call id) and counts (messages, kept, duplicates,
    superseded, bad). ``consumer_factory`` is ``kafka.KafkaConsumer`` unless given (tests).

    ``security``: TLS and SASL settings (the pipeline config's ``sinks.kafka``); none means
    PLAINTEXT, which only a broker on this machine is spoken to with. A broker that cannot be
    reached or refuses the credentials raises
    :class:`~qa_pipeline.kafka_security.KafkaConnectError` naming it (bounded: 10 s).
    """
    if consumer_factory is None:
        try:
            from kafka import KafkaConsumer
        except ImportError as e:  # pragma: no cover - optional extra
            raise RuntimeError("reading Kafka needs: pip install 'qa-pipeline[kafka]'") from e
        consumer_factory = KafkaConsumer
    from kafka import TopicPartition

    consumer = connect(
        consumer_factory,
        split_servers(bootstrap),
        security or KafkaSecurity(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        value_deserializer=None,
        consumer_timeout_ms=int(idle_timeout_s * 1000),
    )
    counts = {
        "messages": 0,
        "kept": 0,
        "duplicates": 0,
        "superseded": 0,
        "bad": 0,
        "other_kinds": 0,
    }
    by_call: dict[str, dict[str, Any]] = {}
    seen_events: set[str] = set()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise RuntimeError(f"Kafka topic {topic!r} does not exist or has no partitions")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end.get(tp, 0) > 0}
        deadline = time.monotonic() + idle_timeout_s
        while remaining:
            batch = consumer.poll(timeout_ms=500, max_records=2000)
            if not batch:
                for tp in list(remaining):
                    if consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
                if time.monotonic() > deadline:
                    log.warning(
                        "Kafka: stopped waiting (idle %.0fs) before catching up", idle_timeout_s
                    )
                    break
                continue
            deadline = time.monotonic() + idle_timeout_s
            for tp, records in batch.items():
                for rec in records:
                    counts["messages"] += 1
                    _take(rec.value, by_call, seen_events, counts)
                    if rec.offset + 1 >= end.get(tp, 0):
                        remaining.discard(tp)
    finally:
        consumer.close()
    counts["kept"] = len(by_call)
    return [by_call[k] for k in sorted(by_call)], counts


def _take(
    value: bytes | str | None,
    by_call: dict[str, dict[str, Any]],
    seen: set[str],
    counts: dict[str, int],
) -> None:
    try:
        env = json.loads(value) if value is not None else None
    except ValueError:
        env = None
    if not isinstance(env, dict):
        counts["bad"] += 1
        return
    if env.get("kind") != "transcript":
        counts["other_kinds"] += 1
        return
    eid = str(env.get("event_id", ""))
    if eid and eid in seen:
        counts["duplicates"] += 1
        return
    seen.add(eid)
    payload = env.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("call"), dict):
        counts["bad"] += 1
        return
    cid = str(payload["call"].get("call_id") or env.get("call_id") or "")
    if not cid:
        counts["bad"] += 1
        return
    payload["call"]["call_id"] = cid
    session = str(payload["call"].get("session_id") or env.get("session_id") or "")
    if session:
        payload["call"]["session_id"] = session
    if cid in by_call:
        before = str(by_call[cid]["call"].get("session_id") or "")
        if session and before and session != before:
            counts["superseded"] += 1
            log.warning(
                "Kafka: call id %r recurs in session %s (was %s); the store keeps one "
                "transcript per call id: the later one",
                cid,
                session,
                before,
            )
        else:
            counts["duplicates"] += 1
    by_call[cid] = transcript_document(payload)
