"""Archive re-scoring speed: rules-only over 10,000 stored calls; full re-transcription.

    .venv/bin/python benchmarks/bench_rescore.py [--calls 10000] [--utts 40] [--seed 7]
        [--asr-calls 4] [--skip-asr] [--skip-plain]

1. **Rules only.** 10,000 synthetic stored calls (~40 utterances each, the realistic
   Mandarin call-centre sentences of ``bench_rules.py``, deterministic seed) are written to
   a fresh store; then the whole ``rescore`` command is timed (no resume, so every call is
   scored and written): in-process (``rescore()``) and as a subprocess
   (``python -m qa_pipeline.rescore``, i.e. ``qa-pipeline rescore`` with its start-up).
   Also the rule engine alone on one core (transcripts in memory, no I/O) for reference.
   Targets: the whole command ≤ 10 s; the rule engine ≥ 5,000 calls/s on one core.
2. **Full re-transcription.** The real Mandarin clips (``../shared/data/speech/zh``) plus
   dual-channel calls built from them (turns alternating between the channels with
   silence in between, ~40 % speech per channel), into an empty store: ``rescore`` over
   the directory (hashing, VAD, ``Pipeline.transcribe_paths`` on two one-thread decodes,
   storing, scoring) against a plain per-file faster-whisper loop in the same run
   (``WhisperModel(..., cpu_threads=2).transcribe(audio, language="zh", beam_size=5)``, per
   channel for stereo files). × real time = audio seconds / wall seconds. Target ≥ 3×.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_rules import make_call  # noqa: E402

from qa_pipeline.rescore import RescoreOptions, rescore  # noqa: E402
from qa_pipeline.store import Store, doc_key  # noqa: E402
from qa_pipeline.transcript import transcript_to_dict  # noqa: E402

ROWS: list[tuple[str, str, str, str, str]] = []


def row(what: str, n: str, seconds: float | str, rate: str, verdict: str) -> None:
    s = f"{seconds:.2f}" if isinstance(seconds, float) else seconds
    ROWS.append((what, n, s, rate, verdict))
    print(f"  {what}: {n}, {s} s, {rate} {verdict}", file=sys.stderr, flush=True)


def build_store(path: Path, n: int, utts: int, seed: int) -> tuple[float, list]:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    calls = []
    with Store(path) as st:
        sh = st.put_settings({"asr": {"model": "synthetic"}})
        for i in range(n):
            t = make_call(i, rng, utts)
            calls.append(t)
            doc = transcript_to_dict(t)
            doc["call"]["agent_id"] = f"A{i % 40:03d}"
            st.put_transcript(doc, audio_sha=doc_key(doc), settings_hash_=sh, commit=False)
        st.db.commit()
    return time.perf_counter() - t0, calls


def bench_rules_only(args: argparse.Namespace, work: Path) -> None:
    store = work / "bench.sqlite"
    built, calls = build_store(store, args.calls, args.utts, args.seed)
    size = store.stat().st_size / 2**20
    print(f"store: {args.calls} calls built in {built:.1f} s ({size:.0f} MiB)", file=sys.stderr)

    # the rule engine alone, one core (as bench_rules.py), on the first 2,000 calls
    from qa_pipeline.rules import load_pack, score_transcript

    pack = load_pack()
    sample = calls[: min(2000, len(calls))]
    t0 = time.perf_counter()
    for t in sample:
        score_transcript(pack, t)
    dt = time.perf_counter() - t0
    cps = len(sample) / dt
    row(
        "rule engine alone (1 core, in memory)",
        f"{len(sample)} calls",
        dt,
        f"{cps:,.0f} calls/s",
        f"target 5,000: {'PASS' if cps >= 5000 else 'FAIL'}",
    )
    del calls, sample

    for workers in args.workers:
        s = rescore(
            RescoreOptions(
                store=store,
                out=work / f"out-{workers}",
                resume=False,
                workers=workers,
                progress=False,
            )
        )
        row(
            f"rescore in-process, {workers} worker{'s' if workers > 1 else ''}",
            f"{s.calls} calls",
            s.seconds,
            f"{s.calls / s.seconds:,.0f} calls/s (scoring {s.score_seconds:.2f} s)",
            f"target 10 s: {'PASS' if s.seconds <= 10 else 'FAIL'}",
        )
    cmd = [
        sys.executable, "-m", "qa_pipeline.rescore", "--store", str(store),
        "--out", str(work / "out-cli"), "--no-resume", "-q", "--json",
    ]  # fmt: skip
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    dt = time.perf_counter() - t0
    summary = json.loads(res.stdout)
    row(
        f"python -m qa_pipeline.rescore (default workers={summary['workers']})",
        f"{summary['calls']} calls",
        dt,
        f"{summary['calls'] / dt:,.0f} calls/s",
        f"target 10 s: {'PASS' if dt <= 10 else 'FAIL'}",
    )


def make_calls(workdir: Path, n: int, seed: int) -> list[tuple[Path, float]]:
    """Dual-channel calls from the real clips: alternating turns, silence between them.
    Returns each file with its speech share per channel (clip time / 2 / duration)."""
    from qa_pipeline.audio import load_call

    clips = sorted((SPEECH / "zh").glob("*"))
    audio = [load_call(c).channels[0] for c in clips]
    rng = random.Random(seed)
    out = []
    for k in range(n):
        order = rng.sample(range(len(audio)), len(audio))[:8]
        placements, t, ch = [], 0.5, 0
        for i in order:
            a = audio[i]
            placements.append((ch, t, a))
            t += len(a) / 16000 + rng.uniform(0.3, 0.6) * len(a) / 16000 * 0.45
            ch = 1 - ch
        dur = t + 1.0
        data = np.zeros((int(dur * 16000), 2), np.float32)
        data += np.random.default_rng(k).standard_normal(data.shape).astype(np.float32) * 1e-3
        for c, st, a in placements:
            i = int(st * 16000)
            data[i : i + len(a), c] += a
        p = workdir / f"call-{k:02d}.wav"
        sf.write(str(p), np.clip(data, -1, 1), 16000, subtype="PCM_16")
        (workdir / f"call-{k:02d}.json").write_text(
            json.dumps({"call": {"agent_id": f"A{k % 3}", "started_at": "2026-03-02T10:00:00"}}),
            encoding="utf-8",
        )
        per_channel = sum(len(a) for _, _, a in placements) / 16000 / 2 / dur
        out.append((p, per_channel))
    return out


def bench_asr(args: argparse.Namespace, work: Path) -> None:
    d = work / "audio"
    d.mkdir()
    import shutil

    for c in sorted((SPEECH / "zh").glob("*")):
        shutil.copy(c, d / c.name)
    calls = make_calls(d, args.asr_calls, args.seed)
    files = sorted(p for p in d.iterdir() if p.suffix in (".wav", ".flac"))
    audio_s = sum(sf.info(str(p)).duration for p in files)
    speech = [frac for _, frac in calls]
    print(
        f"audio: {len(files)} files ({len(calls)} dual-channel calls, "
        f"{100 * sum(speech) / max(len(speech), 1):.0f} % speech per channel), {audio_s:.0f} s",
        file=sys.stderr,
    )

    t0 = time.perf_counter()
    s = rescore(RescoreOptions(inputs=[d], store=work / "asr.sqlite", out=work / "out-asr",
                               resume=False, progress=False))  # fmt: skip
    ours = time.perf_counter() - t0
    assert s.transcribed == len(files), (s.transcribed, [e.message for e in s.errors])
    row(
        "rescore, full ASR (transcribe_paths, 2×1 threads, beam 5)",
        f"{len(files)} files, {audio_s:.0f} s audio",
        ours,
        f"{audio_s / ours:.1f}× real time (ASR stage {audio_s / s.asr_seconds:.1f}×)",
        "",
    )
    t0 = time.perf_counter()
    s2 = rescore(RescoreOptions(inputs=[d], store=work / "asr.sqlite", out=work / "out-asr2",
                                resume=False, progress=False))  # fmt: skip
    again = time.perf_counter() - t0
    row(
        "rescore again (all cached: hash + rules only)",
        f"{s2.cached} cached",
        again,
        f"{audio_s / again:.0f}× real time",
        "PASS" if s2.transcribed == 0 else "FAIL",
    )
    if args.skip_plain:
        return
    from faster_whisper import WhisperModel, decode_audio

    from qa_pipeline.asr.model import resolve_model

    model = WhisperModel(
        str(resolve_model("embedded:whisper-base").path),
        device="cpu",
        compute_type="int8",
        cpu_threads=2,
    )
    t0 = time.perf_counter()
    for p in files:
        if sf.info(str(p)).channels == 2:
            chans = decode_audio(str(p), split_stereo=True)
        else:
            chans = (decode_audio(str(p)),)
        for ch in chans:
            segs, _ = model.transcribe(ch, language="zh", beam_size=5)
            list(segs)
    plain = time.perf_counter() - t0
    ratio = plain / ours
    row(
        "plain faster-whisper loop (per file/channel, 2 threads, beam 5)",
        f"{len(files)} files, {audio_s:.0f} s audio",
        plain,
        f"{audio_s / plain:.1f}× real time",
        "",
    )
    row(
        "speed-up of rescore over the plain loop",
        "",
        "",
        f"{ratio:.2f}×",
        f"target 3×: {'PASS' if ratio >= 3 else 'FAIL'}",
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--utts", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    ap.add_argument("--asr-calls", type=int, default=4)
    ap.add_argument("--skip-rules", action="store_true")
    ap.add_argument("--skip-asr", action="store_true")
    ap.add_argument("--skip-plain", action="store_true")
    args = ap.parse_args()
    print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-rescore-") as tmp:
        work = Path(tmp)
        if not args.skip_rules:
            bench_rules_only(args, work)
        if not args.skip_asr:
            if (SPEECH / "zh").is_dir():
                bench_asr(args, work)
            else:
                print(f"skipping ASR: {SPEECH / 'zh'} not found", file=sys.stderr)
    widths = [max(len(r[i]) for r in ROWS + [("run", "input", "seconds", "rate", "result")])
              for i in range(5)]  # fmt: skip
    head = ("run", "input", "seconds", "rate", "result")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in ROWS:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
