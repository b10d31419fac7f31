"""``rescore``: apply a (new) rule pack to every call already taken, and say what changed.

1. **Collect calls.** Recordings under the given directories (audio hashed; the transcript
   cache is looked up by audio hash + settings hash), transcript documents found there,
   the Kafka transcripts topic, or, with no input, every call in the store.
2. **ASR only for what is missing.** Uncached recordings go through
   :meth:`Pipeline.transcribe_paths` (two decodes kept busy across files); the model is
   loaded only if something is missing. Each transcript is committed as soon as it exists.
   A recording that cannot be read is an ``error`` result, never a failed run.
3. **Rules only for the rest.** Transcripts are read from the store in bulk and scored in
   chunks (in worker processes when there are many); each chunk's results are committed in
   one transaction under a run id derived from the inputs and the pack version, so a killed
   run resumes where it stopped and gives the same results as an uninterrupted one.
4. **Outputs.** ``results.jsonl``, ``results.csv``, ``report.html`` and, with a baseline
   pack, ``diff.jsonl``; the summary ends with the command that promotes the run (makes
   its results count: :mod:`qa_pipeline.store.promote`). A run promoted is never written
   again: the same inputs and pack re-scored later go to a new candidate run.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from ..callinfo import read_call_info
from ..config import PipelineConfig, load_config
from ..errors import QAError
from ..pipeline import Pipeline, audio_sha256
from ..privacy import Redactor, redact_call, redact_json
from ..rules import RulePack, load_pack
from ..store import (
    DEFAULT_STORE,
    Store,
    canonical_json,
    doc_key,
    error_row,
    settings_hash,
    transcript_settings,
)
from ..store.promote import candidate_run_id, promote_command, refusal
from ..transcript import call_to_dict, transcript_to_dict
from .outputs import write_outputs
from .scoring import PackSpec, ScoreJob, chunks, init_worker, score_chunk, set_state
from .sources import read_document, read_kafka_transcripts, scan_directories
from .summary import CallError, RescoreSummary

log = logging.getLogger("qa_pipeline.rescore")

PARALLEL_FROM = 2000  # calls; below this one process is faster than starting workers


@dataclass
class RescoreOptions:
    """The ``rescore`` command's options (see ``qa_pipeline.rescore.cli``)."""

    inputs: list[Path] = field(default_factory=list)
    store: str | Path = DEFAULT_STORE  # a SQLite path or a postgresql:// URL
    kafka: str | None = None
    topic: str = "qa.transcripts"
    rules: Path | None = None
    baseline: Path | None = None
    out: Path = Path("out") / "rescore"
    workers: int | None = None
    resume: bool = True
    config: Path | None = None
    batch_files: int = 8
    chunk_size: int = 200
    progress: bool = True
    #: also write results.xlsx (results and findings sheets)
    xlsx: bool = True
    kafka_idle_timeout_s: float = 10.0


@dataclass
class _Target:
    call_id: str
    source: str


def rescore(
    opts: RescoreOptions,
    *,
    pipeline: Pipeline | None = None,
    config: PipelineConfig | None = None,
    console: Console | None = None,
) -> RescoreSummary:
    """Run a re-score; see the module docstring. ``pipeline`` lets a caller (tests, a
    service) pass an already loaded model."""
    t_start = time.perf_counter()
    cfg = config or (pipeline.config if pipeline else load_config(opts.config))
    con = console or Console(stderr=True)
    pack_settings = cfg.rules.settings or None
    pack_path = opts.rules if opts.rules is not None else cfg.rules.pack
    pack = load_pack(pack_path, pack_settings)
    base = load_pack(opts.baseline, pack_settings) if opts.baseline is not None else None

    store = Store(opts.store)
    try:
        errors: dict[str, CallError] = {}
        targets: dict[str, _Target] = {}
        input_ids: list[Any] = []
        summary = RescoreSummary(
            run_id="",
            baseline_run_id=None,
            pack=f"{pack.name} {pack.version}",
            baseline_pack=f"{base.name} {base.version}" if base else None,
        )
        with _progress(con, opts.progress) as prog:
            if opts.inputs:
                _collect_directories(
                    opts, cfg, store, pipeline, pack, targets, errors, summary, prog
                )
                input_ids.append(
                    {
                        "dirs": sorted(str(Path(p).resolve()) for p in opts.inputs),
                        "settings": settings_hash(transcript_settings(cfg)),
                    }
                )
            if opts.kafka:
                docs, counts = read_kafka_transcripts(
                    opts.kafka,
                    opts.topic,
                    idle_timeout_s=opts.kafka_idle_timeout_s,
                    security=cfg.sinks.kafka.security() if cfg.sinks.kafka else None,
                )
                summary.kafka = counts
                _import_docs(store, docs, targets, f"kafka:{opts.topic}", Redactor(cfg.privacy))
                summary.imported += len(docs)
                input_ids.append({"kafka": opts.kafka, "topic": opts.topic})
            if not opts.inputs and not opts.kafka:
                for c in store.calls():
                    targets[c.call_id] = _Target(c.call_id, "store")
                input_ids.append({"store": "all"})

            runs: list[tuple[str, RulePack]] = []
            # a run promoted since (store promote) is the record: never written again
            new_id = run_id_for(input_ids, pack, pack_settings)
            summary.run_id = candidate_run_id(store, new_id)
            runs.append((summary.run_id, pack))
            if base is not None:
                base_id = run_id_for(input_ids, base, pack_settings)
                if base_id == new_id:
                    base_id += "-baseline"
                summary.baseline_run_id = candidate_run_id(store, base_id)
                runs.append((summary.baseline_run_id, base))
            args = {
                "inputs": [str(p) for p in opts.inputs],
                "kafka": opts.kafka,
                "topic": opts.topic if opts.kafka else None,
                "rules": str(opts.rules) if opts.rules else None,
                "baseline": str(opts.baseline) if opts.baseline else None,
            }
            for i, (rid, p) in enumerate(runs):
                store.start_run(
                    rid,
                    pack_name=p.name,
                    pack_version=p.version,
                    role="baseline" if i else "new",
                    inputs=canonical_json(input_ids),
                    args=args,
                    fresh=not opts.resume,
                )
            # Recordings that could not be read: an error result in every run.
            now = time.time()
            store.put_results(
                error_row(rid, e.call_id, "", f"{e.source}: {e.message}", now)
                for rid, _ in runs
                for e in errors.values()
            )
            summary.errors = sorted(errors.values(), key=lambda e: e.call_id)
            _stale_bias(store, cfg, pack, targets, summary)
            _score(opts, store, cfg, runs, pack_path, opts.baseline, targets, summary, prog)
            for rid, _ in runs:
                store.finish_run(rid)
            summary.promote_refused = refusal(store, summary.run_id)
            if summary.promote_refused is None:
                summary.promote = promote_command(summary.run_id, opts.store)

        wanted = set(targets) | set(errors)
        summary.calls = len(wanted)
        summary.outputs, summary.diff = write_outputs(
            store,
            opts.out,
            summary,
            pack,
            base,
            wanted,
            targets={k: v.source for k, v in targets.items()},
            xlsx=opts.xlsx,
        )
    finally:
        store.close()
    summary.seconds = time.perf_counter() - t_start
    return summary


def run_id_for(inputs: list[Any], pack: RulePack, settings: dict[str, Any] | None = None) -> str:
    """Same inputs + same pack (version = files' hash) + same setting overrides = same run."""
    key = canonical_json(
        {"inputs": inputs, "pack": pack.name, "version": pack.version, "settings": settings or {}}
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


# -- inputs -------------------------------------------------------------------------------


def _import_docs(
    store: Store,
    docs: list[dict[str, Any]],
    targets: dict[str, _Target],
    source: str,
    redactor: Redactor,
) -> None:
    for doc in docs:
        redact_json(doc, redactor)  # a document written before redaction, or by others
        sh = store.put_settings({"asr": doc.get("asr") or {}})
        stored = store.put_transcript(doc, audio_sha=doc_key(doc), settings_hash_=sh, commit=False)
        targets[stored.call_id] = _Target(stored.call_id, source)
    store.commit()


def _collect_directories(
    opts: RescoreOptions,
    cfg: PipelineConfig,
    store: Store,
    pipeline: Pipeline | None,
    pack: RulePack,
    targets: dict[str, _Target],
    errors: dict[str, CallError],
    summary: RescoreSummary,
    prog: Any,
) -> None:
    scan = scan_directories(opts.inputs)
    redactor = Redactor(cfg.privacy)
    docs = [d for d in (read_document(p) for p in scan.documents) if d is not None]
    if docs:
        _import_docs(store, docs, targets, "document", redactor)
        summary.imported += len(docs)

    settings = transcript_settings(cfg)
    h = store.put_settings(settings)
    store.commit()
    cached = store.cached_keys(h)
    missing: list[tuple[Path, dict[str, Any], str]] = []
    task = prog.add_task("hashing recordings", total=len(scan.audio)) if prog else None
    owner: dict[str, Path] = {}
    for path, cid in scan.audio:
        if prog:
            prog.advance(task)
        try:
            info = redact_call(read_call_info(path), redactor)
            call = call_to_dict(info)
            if info.call_id == path.stem and cid != path.stem:
                call["call_id"] = cid
            cid = call["call_id"]
            if cid in owner:
                raise QAError(f"call id {cid!r} already used by {owner[cid]}")
            owner[cid] = path
            sha = audio_sha256(path)
        except (QAError, OSError) as e:
            errors[cid] = CallError(cid, redactor.text(str(path)), redactor.text(_message(e)))
            continue
        if sha in cached:
            doc_call = store.cached_doc(sha, h)["call"]  # type: ignore[index]
            call["channels"] = doc_call.get("channels", call["channels"])
            call["duration"] = doc_call.get("duration")
            store.put_call(call, audio_sha=sha, settings_hash_=h)
            targets[cid] = _Target(cid, redactor.text(str(path)))
            summary.cached += 1
        else:
            missing.append((path, call, sha))
    store.commit()
    if prog:
        prog.remove_task(task)
    if not missing:
        return

    pipe = (pipeline or Pipeline(cfg)).for_pack(pack)  # decoder biased to the pack scored
    t0 = time.perf_counter()
    task = prog.add_task("transcribing (ASR)", total=len(missing)) if prog else None
    actual_h: str | None = None
    results = pipe.transcribe_paths([p for p, _, _ in missing], batch_files=opts.batch_files)
    for (path, call, sha), (_, res) in zip(missing, results, strict=True):
        if prog:
            prog.advance(task)
        cid = call["call_id"]
        if isinstance(res, QAError):
            errors[cid] = CallError(cid, redactor.text(str(path)), redactor.text(_message(res)))
            continue
        if actual_h is None:
            actual = transcript_settings(cfg, pipe.engine.settings)
            actual_h = store.put_settings(actual)
            if actual_h != h:
                log.warning(
                    "the loaded model's settings differ from the configured ones (%s); "
                    "transcripts are stored under the model's settings",
                    canonical_json(actual["asr"]),
                )
        doc = transcript_to_dict(res.transcript)
        doc["call"]["call_id"] = cid
        for k in ("started_at", "direction", "agent_id", "metadata", "source"):
            doc["call"][k] = call[k]
        store.put_transcript(doc, audio_sha=sha, settings_hash_=actual_h)
        targets[cid] = _Target(cid, redactor.text(str(path)))
        summary.transcribed += 1
        summary.audio_seconds += res.stats.audio_seconds
    summary.asr_seconds = time.perf_counter() - t0
    if prog:
        prog.remove_task(task)


def _message(e: BaseException) -> str:
    return str(e) or type(e).__name__


# -- scoring -------------------------------------------------------------------------------


def _stale_bias(
    store: Store,
    cfg: PipelineConfig,
    pack: RulePack,
    targets: dict[str, _Target],
    summary: RescoreSummary,
) -> None:
    """Which targets' transcripts were decoded with another bias list than this pack and
    config give (an edited company name or required phrase): said, not re-transcribed."""
    from ..asr.bias import bias_version, told_terms
    from ..rules.terms import pack_terms
    from ..verify import verify_version

    now = bias_version(told_terms(cfg.asr, pack_terms(pack, cfg.asr.bias)))
    summary.bias_version = now
    verify_now = verify_version(pack, cfg.asr.verify_margin) if cfg.asr.verify else None
    summary.verify_version = verify_now
    bias_sql = store.json_text("t.doc", "asr", "bias_version")
    verify_sql = store.json_text("t.doc", "asr", "verify_version")
    rows = store.execute(
        f"SELECT c.call_id, {bias_sql}, {verify_sql} FROM calls c "
        "JOIN transcripts t ON t.audio_sha256 = c.audio_sha256 "
        "AND t.settings_hash = c.settings_hash WHERE c.audio_sha256 NOT LIKE 'doc:%'"
    ).fetchall()
    summary.stale_bias = sorted(cid for cid, v, _ in rows if cid in targets and v != now)
    summary.stale_verify = sorted(cid for cid, _, v in rows if cid in targets and v != verify_now)


def _score(
    opts: RescoreOptions,
    store: Store,
    cfg: PipelineConfig,
    runs: list[tuple[str, RulePack]],
    pack_path: Path | str | None,
    base_path: Path | None,
    targets: dict[str, _Target],
    summary: RescoreSummary,
    prog: Any,
) -> None:
    keys = dict(
        store.execute("SELECT call_id, audio_sha256 || ':' || settings_hash FROM calls").fetchall()
    )
    done = [store.done(rid) for rid, _ in runs]
    todo: list[tuple[str, tuple[int, ...]]] = []
    for cid in sorted(targets):
        key = keys.get(cid)
        need = tuple(i for i, d in enumerate(done) if key is None or d.get(cid) != key)
        summary.reused += len(runs) - len(need)
        if need:
            todo.append((cid, need))
        else:
            summary.resumed += 1
    summary.scored = len(todo)
    if not todo:
        return
    settings = cfg.rules.settings or None
    specs = [
        PackSpec(str(pack_path) if pack_path is not None else None, _items(settings)),
        PackSpec(str(base_path), _items(settings)),
    ]
    job = ScoreJob(str(opts.store), tuple((rid, specs[i]) for i, (rid, _) in enumerate(runs)))
    set_state(job, [p for _, p in runs])
    workers = opts.workers or (1 if len(todo) < PARALLEL_FROM else min(2, os.cpu_count() or 1))
    size = opts.chunk_size
    if workers > 1:  # keep every worker busy until the end
        size = max(20, min(size, len(todo) // (workers * 4) or 1))
    parts = list(chunks(todo, size))
    workers = max(1, min(workers, len(parts)))
    summary.workers = workers
    task = prog.add_task("re-scoring (rules)", total=len(todo)) if prog else None
    t0 = time.perf_counter()
    for rows in _map(workers, job, parts):
        store.put_results(rows)
        if prog:
            prog.advance(task, len({r[1] for r in rows}))
    summary.score_seconds = time.perf_counter() - t0


def _items(settings: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((settings or {}).items()))


def _map(
    workers: int, job: ScoreJob, parts: list[list[tuple[str, tuple[int, ...]]]]
) -> Iterator[list[tuple[Any, ...]]]:
    if workers <= 1:
        init_worker(job)
        for part in parts:
            yield score_chunk(part)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(workers, initializer=init_worker, initargs=(job,)) as pool:
        yield from pool.imap_unordered(score_chunk, parts)


# -- progress -----------------------------------------------------------------------------


@contextmanager
def _progress(console: Console, enabled: bool) -> Iterator[Any]:
    """A progress bar with rate and ETA on stderr (None when disabled)."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        refresh_per_second=4,
    ) as prog:
        yield prog


def _rate_column_cls() -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f}/s" if speed else "", style="dim")

    return RateColumn


def _RateColumn() -> Any:  # noqa: N802 - reads like the column class it builds
    return _rate_column_cls()()
