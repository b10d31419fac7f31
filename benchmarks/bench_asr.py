"""ASR speed and accuracy: qa-pipeline's path against a plain faster-whisper loop.

For each set of audio, in the same run and on the same model:

* **qa-pipeline**: ``Pipeline.transcribe_paths`` over the set (decode, per-channel VAD,
  turns, guarded Whisper on two one-thread workers kept busy across files, normalisation).
* **plain loop**: ``WhisperModel(cpu_threads=2).transcribe(file)`` per file (per channel
  for stereo calls), faster-whisper's defaults (beam 5, temperature fallback,
  conditioning on previous text) with the language forced; sampling seeded
  (``ctranslate2.set_random_seed``) so a run is repeatable.

Besides the pooled error, each row counts the files where ours is worse than the plain
loop by more than max(5 % of the reference, one character/word): the issue's bar is
pooled error <= the plain loop's and no such file.

Sets: the real Mandarin clips (16 kHz as recorded), the same clips as 8 kHz mu-law
(simulated telephone audio), the English clips, and the generated dual-channel calls.
Prints a table of wall time, real-time factor (wall / audio seconds), speed-up and
CER/WER (traditional -> simplified before scoring, for both).

Usage: .venv/bin/python benchmarks/bench_asr.py [--sets zh,zh8k,en,calls] [--skip-plain]
       [--clips far_3,medical]  (only files whose name contains one of these)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"
sys.path.insert(0, str(REPO))

from qa_pipeline.audio import load_call  # noqa: E402
from qa_pipeline.config import load_config  # noqa: E402
from qa_pipeline.evaluation import cer_counts, pooled, wer_counts  # noqa: E402
from qa_pipeline.pipeline import Pipeline  # noqa: E402
from qa_pipeline.text import normalise  # noqa: E402


@dataclass
class Item:
    path: Path
    reference: str | None  # None: no reference (generated calls are scored on turn text)
    lang: str
    duration: float


def manifest_items(lang: str) -> list[Item]:
    out = []
    for line in (SPEECH / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        if d["lang"] == lang:
            out.append(Item(SPEECH / d["audio"], d["text"], lang, float(d["duration_s"])))
    return out


def telephone_items(items: list[Item], workdir: Path) -> list[Item]:
    """The same clips at 8 kHz mu-law (simulated telephone channel)."""
    out = []
    for it in items:
        audio = load_call(it.path).channels[0]
        import soxr

        narrow = soxr.resample(audio, 16000, 8000).astype(np.float32)
        dst = workdir / (it.path.stem + "-8k-ulaw.wav")
        sf.write(str(dst), narrow, 8000, subtype="ULAW")
        out.append(Item(dst, it.reference, it.lang, it.duration))
    return out


def generated_calls(workdir: Path) -> list[Item]:
    from qa_pipeline.samples.generate import generate_samples

    paths = generate_samples(workdir / "calls")
    items = []
    for p in paths:
        side = json.loads(p.with_suffix(".json").read_text(encoding="utf-8"))
        ref = "".join(t["text"] for t in sorted(side["turns"], key=lambda t: t["start"]))
        items.append(Item(p, ref, "zh", sf.info(str(p)).duration))
    return items


PLAIN_SEED = 1234


def counts(items: list[Item], hyps: list[str]) -> list[tuple[int, int]]:
    measure = wer_counts if items[0].lang == "en" else cer_counts
    return [measure(i.reference or "", h) for i, h in zip(items, hyps, strict=True)]


def score(items: list[Item], hyps: list[str]) -> float:
    return pooled(counts(items, hyps))


def worse_files(
    items: list[Item], ours: list[str], plain: list[str]
) -> list[tuple[str, int, int, int]]:
    """(file, reference length, our errors, plain errors) where ours is worse by more than
    max(5 % of the reference, one unit)."""
    out = []
    for it, (eo, n), (ep, _) in zip(items, counts(items, ours), counts(items, plain), strict=True):
        if eo - ep > max(0.05 * n, 1):
            out.append((it.path.name, n, eo, ep))
    return out


def run_ours(pipeline: Pipeline, items: list[Item]) -> tuple[float, list[str]]:
    lang = items[0].lang
    p = Pipeline(pipeline.config, engine=pipeline.engine.with_options(language=lang))
    hyps = []
    t0 = time.perf_counter()
    for _, r in p.transcribe_paths([it.path for it in items]):
        if isinstance(r, Exception):
            raise r
        sep = " " if lang == "en" else ""
        hyps.append(sep.join(u.text for u in r.transcript.utterances))
    return time.perf_counter() - t0, hyps


def run_plain(model: object, items: list[Item]) -> tuple[float, list[str]]:
    import ctranslate2
    from faster_whisper import decode_audio

    ctranslate2.set_random_seed(PLAIN_SEED)
    hyps = []
    t0 = time.perf_counter()
    for it in items:
        info = sf.info(str(it.path))
        channels = (
            decode_audio(str(it.path), split_stereo=True)
            if info.channels == 2
            else (decode_audio(str(it.path)),)
        )
        texts = []
        for ch in channels:
            segs, _ = model.transcribe(ch, language=it.lang, beam_size=5)  # type: ignore[attr-defined]
            texts.append("".join(s.text for s in segs))
        sep = " " if it.lang == "en" else ""
        hyps.append(normalise(sep.join(texts)))
    return time.perf_counter() - t0, hyps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="zh,zh8k,en,calls")
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument("--clips", default="", help="comma-separated parts of file names to keep")
    args = ap.parse_args()
    if not (SPEECH / "manifest.jsonl").is_file():
        sys.exit(f"shared speech clips not found at {SPEECH}")

    cfg = load_config()
    pipeline = Pipeline(cfg)
    _ = pipeline.engine  # load once, outside the timings
    plain = None
    if not args.skip_plain:
        from faster_whisper import WhisperModel

        plain = WhisperModel(
            str(pipeline.engine.model_info.path), device="cpu", compute_type="int8", cpu_threads=2
        )

    work = Path(tempfile.mkdtemp(prefix="qa-bench-"))
    sets: dict[str, list[Item]] = {}
    wanted = args.sets.split(",")
    if "zh" in wanted or "zh8k" in wanted:
        zh = manifest_items("zh")
        if "zh" in wanted:
            sets["zh clips 16 kHz"] = zh
        if "zh8k" in wanted:
            sets["zh clips 8 kHz mu-law"] = telephone_items(zh, work)
    if "en" in wanted:
        sets["en clips"] = manifest_items("en")
    if "calls" in wanted:
        sets["generated calls (2ch 8 kHz)"] = generated_calls(work)

    if args.clips:
        keep = args.clips.split(",")
        sets = {k: [i for i in v if any(c in i.path.name for c in keep)] for k, v in sets.items()}
        sets = {k: v for k, v in sets.items() if v}
    rows: list[dict[str, Any]] = []
    for name, items in sets.items():
        audio = sum(i.duration for i in items)
        print(f"… {name}: {len(items)} files, {audio:.0f} s", file=sys.stderr, flush=True)
        ours_s, ours_h = run_ours(pipeline, items)
        row = {
            "set": name,
            "files": len(items),
            "audio_s": audio,
            "ours_s": ours_s,
            "ours_err": score(items, ours_h),
        }
        if plain is not None:
            plain_s, plain_h = run_plain(plain, items)
            worse = worse_files(items, ours_h, plain_h)
            row.update(plain_s=plain_s, plain_err=score(items, plain_h), worse=len(worse))
            for name, n, eo, ep in worse:
                print(f"  worse than plain: {name}: {eo} vs {ep} errors of {n}", file=sys.stderr)
        rows.append(row)

    metric = {True: "WER", False: "CER"}
    print()
    print(
        f"{'set':30} {'files':>5} {'audio s':>8} | {'ours s':>7} {'RTF':>6} {'err':>11} | "
        f"{'plain s':>7} {'RTF':>6} {'err':>11} | {'speed-up':>8} {'worse':>5}"
    )
    print("-" * 124)
    for r in rows:
        m = metric[r["set"].startswith("en")]
        ours = f"{r['ours_s']:7.1f} {r['ours_s'] / r['audio_s']:6.3f} {m} {r['ours_err']:.3f}"
        if "plain_s" in r:
            plain_txt = (
                f"{r['plain_s']:7.1f} {r['plain_s'] / r['audio_s']:6.3f} {m} {r['plain_err']:.3f}"
            )
            speed = f"{r['plain_s'] / r['ours_s']:7.2f}x"
            n_worse = str(r["worse"])
        else:
            plain_txt, speed, n_worse = f"{'-':>30}", "-", "-"
        print(
            f"{r['set']:30} {r['files']:5d} {r['audio_s']:8.1f} | {ours} | {plain_txt} | "
            f"{speed:>8} {n_worse:>5}"
        )
    print(
        "\nRTF = wall seconds / audio seconds (lower is faster). ours: Pipeline.transcribe "
        f"(beam {cfg.asr.beam_size}, {cfg.asr.workers} workers x {cfg.asr.threads_per_worker} "
        f"thread, window {cfg.asr.window}"
        f"{f' >= {cfg.asr.min_window_seconds:g} s' if cfg.asr.window == 'fitted' else ''}, "
        f"bias {cfg.asr.bias}). plain: WhisperModel(cpu_threads=2).transcribe per file/channel, "
        "beam 5, default fallback, seeded. worse: files where ours has more errors than the "
        "plain loop by more than max(5 %, one character/word)."
    )


if __name__ == "__main__":
    main()
