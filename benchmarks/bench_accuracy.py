"""Verdict accuracy on the untuned corpus: every rule, from the audio and from the text.

Generates the corpus (``qa_pipeline/samples/corpus.py``: whole dual-channel calls with no
per-turn tuning, cached under ``.cache/corpus/seed-<seed>/``), then scores each call

* from the **audio**: ``Pipeline`` with the default config and nothing else but the call's
  company name (``rules.settings.company_name``), as a new user would run it;
* from its **reference transcript** (the script's words at the rendered times), through
  the same rule pack (rules-only scoring).

and compares every rule's verdict with the label the corpus derived from how the call was
built. Prints per rule TP/FP/FN/TN of "failed" with precision and recall from audio and
from text side by side and the gap, false passes (labelled failed, audio said passed),
overall verdict accuracy from audio and from text, and the share of ``uncertain``
verdicts (counted as wrong toward accuracy, and listed apart).

Report figures on a seed you did not look at while building or tuning (the corpus was
developed on seed 1; report on another, e.g. ``--seed 2``), so that the number says how
the pipeline does on calls nobody fitted it to.

Usage: .venv/bin/python benchmarks/bench_accuracy.py [--calls 40] [--seed 2] [--slice]
       [--json OUT] [--text-only]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qa_pipeline.config import load_config  # noqa: E402
from qa_pipeline.pipeline import Pipeline  # noqa: E402
from qa_pipeline.rules import load_pack, score_transcript  # noqa: E402
from qa_pipeline.samples.corpus import (  # noqa: E402
    DEFAULT_CALLS,
    generate_corpus,
    read_sidecar,
    select_slice,
)
from qa_pipeline.transcript import transcript_from_dict  # noqa: E402

UNCERTAIN = "uncertain"
SLICE_SIZE = 12


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Row:
    call_id: str
    rule_id: str
    want: str
    text: str
    audio: str | None = None


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    right: int = 0
    total: int = 0
    uncertain: int = 0
    false_pass: int = 0
    calls: list[str] = field(default_factory=list)

    def add(self, want: str, got: str, call_id: str) -> None:
        fired, should = got == "failed", want == "failed"
        if fired and should:
            self.tp += 1
        elif fired:
            self.fp += 1
        elif should:
            self.fn += 1
        else:
            self.tn += 1
        self.total += 1
        self.right += got == want
        self.uncertain += got == UNCERTAIN
        if should and got == "passed":
            self.false_pass += 1
            self.calls.append(call_id)

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else 0.0


def corpus_paths(calls: int, seed: int, root: Path, slice_only: bool) -> list[Path]:
    t0 = time.perf_counter()
    paths = generate_corpus(
        root, calls, seed, progress=lambda cid, k, n: log(f"corpus {k}/{n} {cid}")
    )
    log(f"corpus: {len(paths)} calls in {time.perf_counter() - t0:.0f} s ({root})")
    if slice_only:
        labels = {p.stem: read_sidecar(p)["expected"] for p in paths}
        keep = set(select_slice(labels, SLICE_SIZE))
        paths = [p for p in paths if p.stem in keep]
    return paths


def text_verdicts(side: Mapping[str, Any]) -> dict[str, str]:
    pack = load_pack(settings={"company_name": side["company"]})
    card = score_transcript(pack, transcript_from_dict(side["reference"]))
    return {v.rule_id: v.verdict.value for v in card.verdicts}


def audio_verdicts(paths: Iterable[Path]) -> dict[str, tuple[dict[str, str], dict[str, Any]]]:
    """Score each call from its audio, configured with its company name only. One
    pipeline per company (the configuration is all a deployment would set)."""
    by_company: dict[str, list[Path]] = defaultdict(list)
    for p in paths:
        by_company[read_sidecar(p)["company"]].append(p)
    out: dict[str, tuple[dict[str, str], dict[str, Any]]] = {}
    done = 0
    total = sum(len(v) for v in by_company.values())
    for company, group in sorted(by_company.items()):
        pipe = Pipeline(load_config(overrides={"rules": {"settings": {"company_name": company}}}))
        for p in group:
            t0 = time.perf_counter()
            res = pipe.score(p)
            assert res.scorecard is not None
            verdicts = {v.rule_id: v.verdict.value for v in res.scorecard.verdicts}
            done += 1
            log(f"audio {done}/{total} {p.stem} ({company}) {time.perf_counter() - t0:.1f} s")
            utts = [
                {"role": u.role.value, "start": u.start, "end": u.end, "text": u.text}
                for u in res.transcript.utterances
            ]
            out[p.stem] = (verdicts, {"score": res.scorecard.score, "utterances": utts})
    return out


def _f(x: float | None) -> str:
    return f"{x:.2f}" if x is not None else "-"


def _gap(a: float | None, t: float | None) -> str:
    return f"{a - t:+.2f}" if a is not None and t is not None else "-"


def report(rows: list[Row], with_audio: bool) -> dict[str, Any]:
    rules: list[str] = list(dict.fromkeys(r.rule_id for r in rows))
    audio: dict[str, Counts] = defaultdict(Counts)
    text: dict[str, Counts] = defaultdict(Counts)
    all_a, all_t = Counts(), Counts()
    for r in rows:
        text[r.rule_id].add(r.want, r.text, r.call_id)
        all_t.add(r.want, r.text, r.call_id)
        if r.audio is not None:
            audio[r.rule_id].add(r.want, r.audio, r.call_id)
            all_a.add(r.want, r.audio, r.call_id)
    head = f"{'rule':14} {'lab F/ok':>8} | {'text TP FP FN TN':>17} {'P':>5} {'R':>5}"
    if with_audio:
        head += f" | {'audio TP FP FN TN':>18} {'P':>5} {'R':>5} {'gapP':>6} {'gapR':>6} {'unc':>3} {'fpass':>5}"
    print("\nper rule, positive = 'failed' (P precision, R recall; gap = audio - text)")
    print(head)
    per_rule = {}
    for rule in rules:
        t = text[rule]
        pos = t.tp + t.fn
        line = (
            f"{rule:14} {pos:3d}/{t.total - pos:<4d} | {t.tp:4d} {t.fp:3d} {t.fn:3d} {t.tn:3d}"
            f"  {_f(t.precision):>5} {_f(t.recall):>5}"
        )
        entry: dict[str, Any] = {"text": vars(t) | {"precision": t.precision, "recall": t.recall}}
        if with_audio:
            a = audio[rule]
            line += (
                f" | {a.tp:5d} {a.fp:3d} {a.fn:3d} {a.tn:3d}  {_f(a.precision):>5} {_f(a.recall):>5}"
                f" {_gap(a.precision, t.precision):>6} {_gap(a.recall, t.recall):>6}"
                f" {a.uncertain:3d} {a.false_pass:5d}"
            )
            entry["audio"] = vars(a) | {"precision": a.precision, "recall": a.recall}
        per_rule[rule] = entry
        print(line)
    print(
        f"\nverdict accuracy from text:  {all_t.right}/{all_t.total} = {all_t.accuracy:.1%}"
        f" (uncertain {all_t.uncertain})"
    )
    summary: dict[str, Any] = {
        "text_accuracy": all_t.accuracy,
        "text_right": all_t.right,
        "verdicts": all_t.total,
    }
    if with_audio:
        share = all_a.uncertain / all_a.total if all_a.total else 0.0
        print(
            f"verdict accuracy from audio: {all_a.right}/{all_a.total} = {all_a.accuracy:.1%}"
            f" (uncertain {all_a.uncertain} = {share:.1%}, counted as wrong)"
        )
        fp = {r: audio[r].calls for r in rules if audio[r].false_pass}
        print(
            "false passes from audio (labelled failed, audio passed): "
            + (", ".join(f"{r} {len(c)}" for r, c in fp.items()) or "none")
        )
        summary |= {
            "audio_accuracy": all_a.accuracy,
            "audio_right": all_a.right,
            "uncertain": all_a.uncertain,
            "uncertain_share": share,
            "false_passes": fp,
        }
    wrong_text = [
        f"{r.call_id}:{r.rule_id} want {r.want} got {r.text}" for r in rows if r.text != r.want
    ]
    if wrong_text:
        print("wrong from text: " + "; ".join(wrong_text))
    return {"summary": summary, "rules": per_rule}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=DEFAULT_CALLS)
    ap.add_argument("--seed", type=int, default=2, help="report on a seed not used to build")
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "corpus")
    ap.add_argument("--slice", action="store_true", help=f"only the CI slice (~{SLICE_SIZE} calls)")
    ap.add_argument("--text-only", action="store_true", help="skip the audio (no Whisper)")
    ap.add_argument("--json", type=Path, help="write per-call verdicts and the tables here")
    args = ap.parse_args()

    paths = corpus_paths(args.calls, args.seed, args.out, args.slice)
    t0 = time.perf_counter()
    heard = {} if args.text_only else audio_verdicts(paths)
    seconds = time.perf_counter() - t0
    rows: list[Row] = []
    calls: list[dict[str, Any]] = []
    for p in paths:
        side = read_sidecar(p)
        tv = text_verdicts(side)
        av, extra = heard.get(p.stem, ({}, {}))
        for rule, want in side["expected"].items():
            rows.append(
                Row(p.stem, rule, want, tv.get(rule, "missing"), av.get(rule) if av else None)
            )
        calls.append({
            "call_id": p.stem, "company": side["company"], "faults": side["faults"],
            "audio": side["audio"], "expected": side["expected"], "text": tv,
            "heard": av, **extra,
        })  # fmt: skip
    print(
        f"\n{len(paths)} calls, seed {args.seed}"
        + ("" if args.text_only else f", audio scored in {seconds:.0f} s")
    )
    tables = report(rows, with_audio=not args.text_only)
    if args.json:
        doc = {"seed": args.seed, "calls": calls, **tables}
        args.json.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
