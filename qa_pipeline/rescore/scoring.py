"""Rules-only scoring of stored transcripts, in this process or in worker processes.

Work is split into chunks of call ids. A worker reads its chunk's transcript documents from
the store in one query (its own read-only SQLite connection), scores each call with every
pack that still needs it (the new pack, the baseline pack) and returns result rows; the
parent writes each chunk's rows in one transaction, so a killed run keeps whole chunks and
resumes after them. A call whose scoring raises is an ``error`` row, never a failed run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..rules import RulePack, batch_gc, load_pack, score_transcript
from ..store import Store, error_row, result_row
from ..transcript import transcript_from_dict


@dataclass(frozen=True, slots=True)
class PackSpec:
    """How a worker loads a pack (path None = the default pack)."""

    path: str | None
    settings: tuple[tuple[str, Any], ...] = ()

    def load(self) -> RulePack:
        return load_pack(self.path, dict(self.settings) or None)


@dataclass(frozen=True, slots=True)
class ScoreJob:
    """What every worker needs: the store and, per run, the run id and its pack."""

    store_path: str
    runs: tuple[tuple[str, PackSpec], ...]


# Per-process state: the loaded packs (set in the parent before forking, so forked workers
# inherit them; loaded by the initializer otherwise) and the read connection.
_STATE: dict[str, Any] = {}


def set_state(job: ScoreJob, packs: Sequence[RulePack] | None = None) -> None:
    if _STATE.get("job") == job and _STATE.get("packs"):
        return
    _STATE.clear()
    _STATE["job"] = job
    _STATE["packs"] = list(packs) if packs is not None else [s.load() for _, s in job.runs]


def init_worker(job: ScoreJob) -> None:
    set_state(job)
    _STATE.pop("store", None)  # never share the parent's connection across a fork


def _store() -> Store:
    st = _STATE.get("store")
    if st is None:
        st = Store(_STATE["job"].store_path, readonly=True)
        _STATE["store"] = st
    return st


def score_chunk(chunk: Sequence[tuple[str, tuple[int, ...]]]) -> list[tuple[Any, ...]]:
    """Score a chunk of ``(call_id, runs that need it)``; returns result rows."""
    job: ScoreJob = _STATE["job"]
    packs: list[RulePack] = _STATE["packs"]
    need = dict(chunk)
    rows: list[tuple[Any, ...]] = []
    now = time.time()
    seen: set[str] = set()
    with batch_gc():
        _score_docs(chunk, packs, job, need, rows, now, seen)
    for cid, runs in chunk:
        if cid not in seen:
            rows.extend(
                error_row(job.runs[i][0], cid, "", "no stored transcript", now) for i in runs
            )
    return rows


def _score_docs(
    chunk: Sequence[tuple[str, tuple[int, ...]]],
    packs: list[RulePack],
    job: ScoreJob,
    need: dict[str, tuple[int, ...]],
    rows: list[tuple[Any, ...]],
    now: float,
    seen: set[str],
) -> None:
    for cid, key, doc in _store().iter_docs([c for c, _ in chunk]):
        seen.add(cid)
        runs = need[cid]
        try:
            t = transcript_from_dict(doc)
        except Exception as e:  # a broken stored document is one bad call, not a bad run
            msg = f"stored transcript unreadable: {type(e).__name__}: {e}"
            rows.extend(error_row(job.runs[i][0], cid, key, msg, now) for i in runs)
            continue
        for i in runs:
            try:
                card = score_transcript(packs[i], t)
            except Exception as e:
                msg = f"rule engine error: {type(e).__name__}: {e}"
                rows.append(error_row(job.runs[i][0], cid, key, msg, now))
                continue
            rows.append(result_row(job.runs[i][0], cid, key, card, now))


def chunks(
    todo: Sequence[tuple[str, tuple[int, ...]]], size: int
) -> Iterator[list[tuple[str, tuple[int, ...]]]]:
    for i in range(0, len(todo), size):
        yield list(todo[i : i + size])


def load_json(text: str | None, default: Any) -> Any:
    return json.loads(text) if text else default


def pack_spec(path: str | Path | None, settings: dict[str, Any] | None) -> PackSpec:
    return PackSpec(
        str(path) if path is not None else None, tuple(sorted((settings or {}).items()))
    )
