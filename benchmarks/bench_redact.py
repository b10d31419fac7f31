"""Personal-data recognisers: recall and precision per kind, false masks, µs per utterance.

Scores :func:`qa_pipeline.privacy.find_entities` on the test set in ``tests/privacy/data``
(scoring: :mod:`qa_pipeline.testing.pii`; an expected number counts as recalled only if at
most its last four digits stay visible), each part on its own: ``typed`` (written
sentences, digits and spoken forms) and ``whisper`` (Whisper transcripts of generated
speech, the held-out part: written before the recognisers were tuned on ``typed``).

Speed: µs per call of ``find_entities`` on the sample scenarios' utterances (typical
call-centre turns, no digits) and on the test set's sentences (numbers in most), best of
``--repeat`` passes.

Usage: python benchmarks/bench_redact.py [--misses] [--repeat 5]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

from qa_pipeline.privacy import find_entities
from qa_pipeline.testing.pii import CORE, SETS, Score, load, score


def _pct(x: float) -> str:
    return "   -  " if math.isnan(x) else f"{100 * x:5.1f}%"


def table(name: str, s: Score, misses: bool) -> None:
    print(f"\n## {name}: {s.items} items, {s.negatives} hard negatives, "
          f"{s.lost} with the number lost by the ASR (not scored)")  # fmt: skip
    print(f"{'kind':12s} {'expected':>8s} {'recalled':>8s} {'recall':>7s} "
          f"{'kind ok':>7s} {'found':>6s} {'precision':>9s}")  # fmt: skip
    for k in sorted(s.kinds):
        ks = s.kinds[k]
        print(f"{k:12s} {ks.expected:8d} {ks.recalled:8d} {_pct(ks.recall):>7s} "
              f"{ks.kind_right:7d} {ks.found:6d} {_pct(ks.precision):>9s}")  # fmt: skip
    print(f"phone/ID/card recall: {_pct(s.recall_of(CORE))}   "
          f"false masks: {s.false_masks}/{s.negatives} = {_pct(s.false_mask_rate)}")  # fmt: skip
    if s.lost_core:
        print(f"numbers lost by the ASR that still show 5+ of their digits in a row: "
              f"{s.lost_leaks}/{s.lost_core}")  # fmt: skip
    if misses:
        for k, ks in sorted(s.kinds.items()):
            for m in ks.misses:
                print(f"  miss {k}: {m}")
        for m in s.false_mask_items:
            print(f"  false mask: {m}")
        for m in s.lost_leak_items:
            print(f"  lost, 5+ digits shown: {m}")


def us_per_call(texts: Sequence[str], repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for t in texts:
            find_entities(t)
        best = min(best, time.perf_counter() - t0)
    return best / len(texts) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--misses", action="store_true", help="list what was missed or falsely masked")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    sets = {name: load(name) for name in SETS}
    for name, items in sets.items():
        for f in SETS[name]:
            table(f"{name}: {f}", score(load(f)), args.misses)
        table(name, score(items), False)
    table("all", score([i for items in sets.values() for i in items]), False)

    from qa_pipeline.samples.generate import load_scenarios
    from qa_pipeline.text import normalise

    plain = [normalise(t.text) for sc in load_scenarios() for t in sc.turns]
    plain = [t for t in plain if not any(c.isdigit() for c in t)]
    numbers = [i["text"] for items in sets.values() for i in items]
    print(f"\nfind_entities: {us_per_call(plain, args.repeat):.1f} µs per utterance "
          f"({len(plain)} scenario turns, no digits); "
          f"{us_per_call(numbers, args.repeat):.1f} µs ({len(numbers)} test sentences)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
