"""Re-score stored transcripts with the default rule pack (no ASR) and print calls/s.

    .venv/bin/python benchmarks/bench_rules.py [--calls 10000] [--utts 40] [--seed 7]

Synthetic calls come from ``qa_pipeline.testing.make_calls`` (a bank of realistic
call-centre sentences, deterministic seed; the tests build their calls with it too).
Timing runs on one core (the process is pinned to CPU 0 when the OS allows it). Figures:

* **warm** (the headline): the store of distinct calls scored once, in order, with the
  pack's caches on from empty (analyses per text; fuzzy-window results per stretch of
  syllables), as in production where scripted sentences recur across calls; texts with
  numbers, names and phone numbers are new (the variety line says how many distinct texts
  the calls hold);
* **cold**: the caches off, every utterance analysed from scratch (no per-text analysis
  cache, no fuzzy-window memo);
* with ``--processes N``: the warm run split over N worker processes (each with its own
  pack and cache), wall-clock for all of them.

Scoring runs under ``batch_gc()`` as ``qa-pipeline rescore`` does; the "rule engine" line
says whether the mypyc-compiled engine or the Python sources ran (see README).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qa_pipeline.rules import ENGINE, batch_gc, load_pack, score_transcript  # noqa: E402
from qa_pipeline.testing import make_calls  # noqa: E402
from qa_pipeline.transcript import Transcript  # noqa: E402

_CALLS: list[Transcript] = []
_PACK: Any = None


def _worker_init(pack_path: str | None) -> None:
    global _PACK
    if hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
    _PACK = load_pack(pack_path)


def _worker(bounds: tuple[int, int]) -> int:
    with batch_gc():
        return sum(score_transcript(_PACK, c).failed for c in _CALLS[bounds[0] : bounds[1]])


def _parallel(n: int, pack_path: str | None) -> tuple[float, int]:
    ctx = mp.get_context("fork")
    k = len(_CALLS)
    chunks = [(i * k // n, (i + 1) * k // n) for i in range(n)]
    with ctx.Pool(n, initializer=_worker_init, initargs=(pack_path,)) as pool:
        pool.map(abs, range(n))  # workers started and packs loaded before the clock starts
        t0 = time.perf_counter()
        fails = sum(pool.map(_worker, chunks, chunksize=1))
        return time.perf_counter() - t0, fails


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--utts", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--target", type=float, default=5000.0)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold (no cache) run")
    ap.add_argument("--pack", default=None, help="rule pack (default: configs/rules/)")
    ap.add_argument(
        "--processes", type=int, default=0, help="also run the warm case on N processes"
    )
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {0})
    pack = load_pack(args.pack)
    company = pack.settings.company_name
    calls = make_calls(args.calls, args.seed, args.utts, company)
    n_utts = sum(len(c.utterances) for c in calls)

    def run(label: str, cache: bool) -> tuple[str, float]:
        pack.index.caching = cache
        pack.index.clear_cache()
        t0 = time.perf_counter()
        fails = 0
        with batch_gc():  # as `qa-pipeline rescore` scores
            for c in calls:
                card = score_transcript(pack, c)
                fails += card.failed
        dt = time.perf_counter() - t0
        rows.append((label, dt, fails))
        return label, dt

    rows: list[tuple[str, float, int]] = []
    run("warm (headline)", True)
    if not args.no_cold:
        run("cold (caches off)", False)
    pack.index.caching = True
    if args.processes > 1:
        _CALLS[:] = calls
        dt, fails = _parallel(args.processes, args.pack)
        rows.append((f"warm, {args.processes} processes", dt, fails))
    seen: dict[str, int] = {}
    for c in calls:
        for u in c.utterances:
            seen[u.text] = seen.get(u.text, 0) + 1
    once = sum(1 for v in seen.values() if v == 1)
    print(
        f"rule pack {pack.name} {pack.version}: {len(pack.rules)} rules; "
        f"{args.calls} calls, {n_utts} utterances ({n_utts / args.calls:.1f} per call); one core; "
        f"company_name {company}"
    )
    print(f"rule engine: {ENGINE}")
    print(
        f"text variety: {len(seen)} distinct texts ({len(seen) / n_utts:.1%} of utterances, "
        f"{len(seen) / args.calls:.1f} per call), {once} said only once"
    )
    hdr = f"{'run':24} {'calls':>7} {'utts':>8} {'seconds':>8} {'calls/s':>9} {'µs/utt':>7} {'target':>7}  result"
    print(hdr)
    print("-" * len(hdr))
    ok_all = True
    for label, dt, _fails in rows:
        cps = args.calls / dt
        us = dt / n_utts * 1e6
        ok = cps >= args.target
        ok_all &= ok if label == "warm (headline)" else True
        print(
            f"{label:24} {args.calls:>7} {n_utts:>8} {dt:>8.2f} {cps:>9.0f} {us:>7.1f} "
            f"{args.target:>7.0f}  {'PASS' if ok else 'FAIL'}"
        )
    print(f"calls failed (critical): {rows[0][2]}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
