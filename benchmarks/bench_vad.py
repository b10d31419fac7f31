"""VAD segmentation against the script, on the untuned corpus: no ASR, so it is fast.

For every corpus call (``qa_pipeline/samples/corpus.py``, cached under
``.cache/corpus/seed-<seed>/``) runs the pipeline's segmentation (``Pipeline.prepare``:
per-channel VAD, the non-speech screen, same-channel turn merging) and compares each
channel's segments with the script's turns (their real rendered start/end, from the
sidecar):

* **onset**: the speech inside a segment (its ``vad.pad_ms`` padding excluded) starts at
  ``start + pad``; the error is that minus the start of the first turn under it (negative:
  the segment opens early, e.g. on line noise; positive: the turn's start is cut);
* **offset**: ``end - pad`` minus the end of the last turn under it;
* **false**: segments with no turn under them; **missed**: turns no segment touches;
* **split**: turns touched by two or more segments; **merged**: segments holding two or
  more turns (turn merging joins one side's turns across short pauses on purpose).

Prints one table, pooled and broken down by line noise kind, SNR, babble on the channel,
encoding and rate, and channel; progress goes to stderr. ``--vad KEY=VALUE`` overrides a
VAD setting (YAML value) to compare settings on the same calls.

Develop on seeds 1 and 3; report on a seed you did not look at while tuning (2).

Usage: .venv/bin/python benchmarks/bench_vad.py [--seed 1] [--calls 40] [--vad KEY=VALUE]
       [--json OUT] [--worst N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qa_pipeline.config import PipelineConfig, load_config  # noqa: E402
from qa_pipeline.pipeline import Pipeline  # noqa: E402
from qa_pipeline.samples.corpus import DEFAULT_CALLS, generate_corpus, read_sidecar  # noqa: E402

TOLERANCE_S = 0.15  # issue #13: speech within 0.15 s of the script
EARLY_S = 0.8  # an onset this early is a talk-over where there is none (NO-INTERRUPT)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Group:
    turns: int = 0
    segments: int = 0
    false: int = 0
    missed: int = 0
    split: int = 0
    merged: int = 0
    onsets: list[float] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)

    def add(self, other: Group) -> None:
        self.turns += other.turns
        self.segments += other.segments
        self.false += other.false
        self.missed += other.missed
        self.split += other.split
        self.merged += other.merged
        self.onsets += other.onsets
        self.offsets += other.offsets


@dataclass(frozen=True)
class Edge:
    error: float
    what: str


def channel_groups(doc: Mapping[str, Any], ch: int) -> list[str]:
    a = doc["audio"]
    enc = f"{a['encoding']}@{a['sample_rate'] // 1000}k"
    babble = "yes" if a.get("babble_channel") == ch else "no"
    return [
        "all",
        f"noise {a['noise']}",
        f"snr {a['snr_db']:g}",
        f"noise {a['noise']} snr {a['snr_db']:g}",
        f"babble {babble}",
        f"{a['noise']} babble {babble}",
        f"enc {enc}",
        f"channel {'agent' if ch == 0 else 'customer'}",
    ]


def compare_channel(
    segs: Sequence[tuple[float, float]],
    turns: Sequence[tuple[float, float]],
    pad: float,
    name: str,
) -> tuple[Group, list[Edge]]:
    """One channel: segments (start, end) with their padding vs the script's turns."""
    g = Group(turns=len(turns), segments=len(segs))
    edges: list[Edge] = []
    touched = [0] * len(turns)
    for s0, s1 in segs:
        mine = [k for k, (t0, t1) in enumerate(turns) if t0 < s1 and t1 > s0]
        if not mine:
            g.false += 1
            edges.append(Edge(-(s1 - s0), f"{name} false segment {s0:.2f}-{s1:.2f}"))
            continue
        for k in mine:
            touched[k] += 1
        g.merged += len(mine) > 1
        a = s0 + pad if s0 > 0 else 0.0
        b = s1 - pad
        on = a - turns[mine[0]][0]
        off = b - turns[mine[-1]][1]
        g.onsets.append(on)
        g.offsets.append(off)
        edges.append(Edge(on, f"{name} onset {a:.2f} vs {turns[mine[0]][0]:.2f}"))
        edges.append(Edge(off, f"{name} offset {b:.2f} vs {turns[mine[-1]][1]:.2f}"))
    g.missed = sum(1 for n in touched if n == 0)
    g.split = sum(1 for n in touched if n > 1)
    for k, n in enumerate(touched):
        if n == 0:
            t0, t1 = turns[k]
            edges.append(Edge(t1 - t0, f"{name} missed turn {t0:.2f}-{t1:.2f}"))
    return g, edges


def measure(
    paths: Sequence[Path], cfg: PipelineConfig
) -> tuple[dict[str, Group], list[Edge], dict[str, int]]:
    pipe = Pipeline(cfg)
    pad = cfg.vad.pad_ms / 1000
    groups: dict[str, Group] = defaultdict(Group)
    edges: list[Edge] = []
    rejected = 0
    t0 = time.perf_counter()
    for k, path in enumerate(paths, 1):
        doc = read_sidecar(path)
        prep = pipe.prepare(path)
        rejected += prep.nonspeech
        for ch in range(len(prep.audio.channels)):
            segs = [(s.start, s.end) for s in prep.segments if s.channel == ch]
            turns = [(t["start"], t["end"]) for t in doc["turns"] if t["channel"] == ch]
            g, e = compare_channel(segs, turns, pad, f"{path.stem} ch{ch}")
            edges += e
            for key in channel_groups(doc, ch):
                groups[key].add(g)
        log(f"[{k}/{len(paths)}] {path.stem} {time.perf_counter() - t0:.0f} s")
    return dict(groups), edges, {"nonspeech_rejected": rejected}


def pct(xs: Sequence[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def summary(g: Group) -> dict[str, Any]:
    on = np.asarray(g.onsets)
    off = np.asarray(g.offsets)
    return {
        "turns": g.turns,
        "segments": g.segments,
        "false": g.false,
        "missed": g.missed,
        "split": g.split,
        "merged": g.merged,
        "onset_median": pct(g.onsets, 50),
        "onset_abs_p90": pct(list(np.abs(on)), 90),
        "onset_early": int(np.sum(on < -TOLERANCE_S)),
        "onset_early_800ms": int(np.sum(on <= -EARLY_S)),
        "onset_late": int(np.sum(on > TOLERANCE_S)),
        "onset_min": float(on.min()) if on.size else float("nan"),
        "onset_max": float(on.max()) if on.size else float("nan"),
        "offset_median": pct(g.offsets, 50),
        "offset_abs_p90": pct(list(np.abs(off)), 90),
        "offset_early": int(np.sum(off < -TOLERANCE_S)),
        "offset_late": int(np.sum(off > TOLERANCE_S)),
        "within": int(np.sum(np.abs(on) <= TOLERANCE_S) + np.sum(np.abs(off) <= TOLERANCE_S)),
        "edges": int(on.size + off.size),
    }


def print_table(groups: Mapping[str, Group]) -> None:
    cols = (
        f"{'group':<26}{'turns':>6}{'segs':>6}{'false':>6}{'miss':>5}{'split':>6}{'merg':>5}"
        f"  {'on med':>7}{'|on|p90':>8}{'early':>6}{'≤-.8s':>6}{'late':>5}{'on min':>7}"
        f"  {'off med':>7}{'|off|p90':>9}{'cut':>5}{'late':>5}  {'±0.15s':>7}"
    )
    print(cols)
    print("-" * len(cols))
    for key in sorted(groups, key=lambda k: (k != "all", k.split()[0], k)):
        s = summary(groups[key])
        within = s["within"] / s["edges"] if s["edges"] else float("nan")
        print(
            f"{key:<26}{s['turns']:>6}{s['segments']:>6}{s['false']:>6}{s['missed']:>5}"
            f"{s['split']:>6}{s['merged']:>5}"
            f"  {s['onset_median']:>+7.2f}{s['onset_abs_p90']:>8.2f}{s['onset_early']:>6}"
            f"{s['onset_early_800ms']:>6}{s['onset_late']:>5}{s['onset_min']:>+7.2f}"
            f"  {s['offset_median']:>+7.2f}{s['offset_abs_p90']:>9.2f}{s['offset_early']:>5}"
            f"{s['offset_late']:>5}  {within:>7.1%}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--calls", type=int, default=DEFAULT_CALLS)
    ap.add_argument("--root", type=Path, default=REPO / ".cache" / "corpus")
    ap.add_argument(
        "--vad", action="append", default=[], metavar="KEY=VALUE", help="VAD setting override"
    )
    ap.add_argument("--worst", type=int, default=8, help="list the N worst edges")
    ap.add_argument("--json", type=Path, help="write the summary here")
    args = ap.parse_args(argv)

    vad = {k: yaml.safe_load(v) for k, _, v in (a.partition("=") for a in args.vad)}
    cfg = load_config(overrides={"vad": vad} if vad else None)
    log(f"corpus seed {args.seed}: {args.calls} calls (cached under {args.root})")
    paths = generate_corpus(args.root, args.calls, args.seed)
    groups, edges, extra = measure(paths, cfg)
    print(
        f"VAD vs script, seed {args.seed}, {len(paths)} calls"
        + (f", vad {vad}" if vad else "")
        + f"; onset/offset errors in s (speech = segment minus {cfg.vad.pad_ms} ms pad)"
    )
    print_table(groups)
    print(f"non-speech screen dropped {extra['nonspeech_rejected']} segments")
    if args.worst:
        print(f"worst {args.worst} edges:")
        for e in sorted(edges, key=lambda e: -abs(e.error))[: args.worst]:
            print(f"  {e.error:+7.2f}  {e.what}")
    if args.json:
        out = {
            "seed": args.seed,
            "calls": len(paths),
            "vad": cfg.vad.model_dump(),
            "groups": {k: summary(g) for k, g in groups.items()},
            **extra,
        }
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
