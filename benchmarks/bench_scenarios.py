"""Rules on audio: score every generated scenario call and compare with its expectations.

Each scenario in ``qa_pipeline/samples/scenarios.yaml`` says which rules must fire
(``fire``) or must not (``ok``). This generates the calls (espeak-ng + sox, cached), runs
the whole path (VAD, Whisper, rules) on the audio, and prints per scenario the
expectations met, then per rule precision and recall of "fired" over all scenarios.

Usage: .venv/bin/python benchmarks/bench_scenarios.py [--out DIR] [--scenario ID ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qa_pipeline.config import load_config  # noqa: E402
from qa_pipeline.pipeline import Pipeline  # noqa: E402
from qa_pipeline.rules import load_pack  # noqa: E402
from qa_pipeline.samples.check import ExpectationResult, check_calls  # noqa: E402
from qa_pipeline.samples.generate import generate_samples  # noqa: E402


def evaluate(out: Path, ids: list[str] | None) -> tuple[list[ExpectationResult], float]:
    paths = generate_samples(out, ids or None)
    t0 = time.perf_counter()
    rows = list(check_calls(Pipeline(load_config()), load_pack(), paths))
    return rows, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "samples")
    ap.add_argument("--scenario", action="append", default=[])
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args()
    rows, seconds = evaluate(args.out, args.scenario)

    print(f"\n{'scenario':24} {'met':>7}  misses")
    by_scenario: dict[str, list[ExpectationResult]] = defaultdict(list)
    for r in rows:
        by_scenario[r.scenario].append(r)
    for sc, rs in by_scenario.items():
        misses = ", ".join(f"{r.rule_id} want {r.want} got {r.got}" for r in rs if not r.met)
        print(f"{sc:24} {sum(r.met for r in rs):3d}/{len(rs):<3d}  {misses}")

    print(f"\n{'rule':15} {'TP':>3} {'FP':>3} {'FN':>3} {'TN':>3} {'precision':>9} {'recall':>7}")
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in rows:
        fired = r.got == "failed"
        want = r.want == "fire"
        idx = 0 if fired and want else 1 if fired else 2 if want else 3
        stats[r.rule_id][idx] += 1
    for rule, (tp, fp, fn, tn) in sorted(stats.items()):
        prec = f"{tp / (tp + fp):.2f}" if tp + fp else "-"
        rec = f"{tp / (tp + fn):.2f}" if tp + fn else "-"
        print(f"{rule:15} {tp:3d} {fp:3d} {fn:3d} {tn:3d} {prec:>9} {rec:>7}")
    met = sum(r.met for r in rows)
    print(f"\nexpectations met: {met}/{len(rows)} ({met / len(rows):.0%}) in {seconds:.0f} s")
    if args.json:
        data = [dataclasses.asdict(r) | {"met": r.met} for r in rows]
        args.json.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
