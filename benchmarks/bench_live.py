"""Live service latency and capacity: N concurrent calls over the WebSocket source.

Each call is dual-channel 8 kHz μ-law made from the real Mandarin clips
(``../shared/data/speech``, each cut to at most 7 s): agent and customer take turns with
short gaps, about 40 % speech per channel. A separate client process streams the calls
as Twilio Media Streams messages (20 ms per track, paced in real time, calls started a few
seconds apart) into the service in this process. A benchmark rule pack fires a finding on
every utterance, so every utterance gives one end-of-utterance -> finding latency (from
the moment the VAD closed the utterance to the finding being emitted; the VAD's
``stop_ms`` hangover comes on top).

Prints, per ASR mode and N: finding latency p50/p95/max, EoU -> transcript p95, ASR RTF
(decode seconds / audio seconds), utterances decoded / dropped, mean batch size, service
CPU (% of one core, both cores = 200 %), client CPU, peak RSS; then the largest N with
p95 <= 1.0 s per mode beside that mode's pooled CER on the shared clips (capacity is bought
with accuracy; ``serve``'s default mode is marked). ``--cer`` prints only the CER of each
mode. Capacity needs a quiet machine: figures taken while other work shares the cores are
not comparable with those in ``benchmarks/README.md``.

    .venv/bin/python benchmarks/bench_live.py                       # default sweep
    .venv/bin/python benchmarks/bench_live.py --modes fitted:5 --ns 8,16,24 --seconds 60
    .venv/bin/python benchmarks/bench_live.py --cer --modes full:5,fitted:5,fitted:1

``--parity`` replays the untuned accuracy corpus (``qa_pipeline/samples/corpus.py``, cached
under ``.cache/corpus/seed-S/``) through the live service in its default mode (``serve``'s
defaults, WebSocket source on 127.0.0.1, one service per company name, each configured
with nothing but it, as ``bench_accuracy.py`` configures the recorded path) and scores
every call's live scorecard against the corpus labels and against the recorded path's
(``Pipeline.score``) for the same call: live and recorded accuracy, the gap in points,
per-rule disagreements, and each path's CER on the corpus turns. Calls stream as Twilio
μ-law 8 kHz (a 16 kHz or PCM corpus call is what a telephone line carries: the recorded
path scores the original file), ``--concurrency`` calls at a time at ``--speed`` x real
time. Recorded transcripts are kept in ``.cache/bench-live-store`` (same audio, same
settings: no second ASR pass).

    .venv/bin/python benchmarks/bench_live.py --parity --seed 2 [--calls 40] [--ids A,B]
        [--concurrency 8] [--speed 1.0] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"
FRAME_MS = 20
RATE = 8000
BENCH_TOKEN = "bench-media-token"  # the clients present it (?token=), as the source requires

BENCH_PACK = """\
name: bench
version: "1"
rules:
  - id: BENCH-EVERY
    description: 每句话都触发（仅用于基准测试）
    severity: minor
    weight: 0
    forbid: {regex: '.'}
    max_findings: 1000000
"""


def load_clips(max_s: float = 7.0) -> list[tuple[str, np.ndarray, str]]:
    """(name, 8 kHz float32 audio, reference text) of the Mandarin clips."""
    import soxr

    from qa_pipeline.audio import load_call

    out = []
    for line in (SPEECH / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        if m.get("lang") != "zh":
            continue
        a = load_call(SPEECH / m["audio"]).channels[0]
        a8 = soxr.resample(a, 16000, RATE).astype(np.float32)[: int(max_s * RATE)]
        out.append((m["audio"], a8, m["text"]))
    return out


def build_call(clips: list[Any], seconds: float, seed: int) -> np.ndarray:
    """(2, n) float32: turns alternate agent/customer, ~40 % speech per channel."""
    rng = random.Random(seed)
    n = int(seconds * RATE)
    out = (np.random.default_rng(seed).standard_normal((2, n)) * 10 ** (-60 / 20)).astype(
        np.float32
    )
    t = rng.uniform(0.3, 1.5)
    ch = rng.randrange(2)
    while True:
        _, audio, _ = clips[rng.randrange(len(clips))]
        i = int(t * RATE)
        if i + len(audio) > n:
            break
        out[ch, i : i + len(audio)] += audio
        # speech fraction per channel 0.4 => gaps are 1/4 of the mean turn
        t += len(audio) / RATE + rng.uniform(0.7, 1.3) * 0.25 * len(audio) / RATE + 0.3
        ch = 1 - ch
    return np.clip(out, -1, 1)


def call_messages(call_id: str, audio: np.ndarray) -> list[str]:
    from qa_pipeline.sources.codec import ulaw_encode
    from qa_pipeline.sources.twilio import TwilioSerializer

    ser = TwilioSerializer(f"MZ{call_id}", call_id)
    step = RATE * FRAME_MS // 1000
    agent, customer = ulaw_encode(audio[0]), ulaw_encode(audio[1])
    msgs = [ser.connected(), ser.start({"call_id": call_id})]
    for i in range(0, audio.shape[1] - step + 1, step):
        ts = i * 1000 // RATE
        msgs.append(ser.media("outbound", ts, agent[i : i + step]))
        msgs.append(ser.media("inbound", ts, customer[i : i + step]))
    msgs.append(ser.stop())
    return msgs


def _client_main(url: str, calls: list[list[str]], stagger: float, q: Any) -> None:
    """Client process: stream every call in real time, report its own CPU."""

    async def one(msgs: list[str], delay: float) -> None:
        from websockets.asyncio.client import connect

        await asyncio.sleep(delay)
        async with connect(url, compression=None, max_queue=None) as ws:
            await ws.send(msgs[0])
            await ws.send(msgs[1])
            t0 = time.monotonic()
            media = msgs[2:-1]
            for k in range(0, len(media), 2):
                due = t0 + (k // 2) * FRAME_MS / 1000
                d = due - time.monotonic()
                if d > 0:
                    await asyncio.sleep(d)
                await ws.send(media[k])
                await ws.send(media[k + 1])
            await ws.send(msgs[-1])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 30)

    async def main() -> None:
        await asyncio.gather(*(one(m, i * stagger) for i, m in enumerate(calls)))

    c0 = time.process_time()
    w0 = time.monotonic()
    asyncio.run(main())
    q.put((time.process_time() - c0, time.monotonic() - w0))


def _rss_mb() -> tuple[float, float]:
    vals = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            k, v = line.split(":")
            vals[k] = int(v.split()[0]) / 1024
    return vals.get("VmRSS", 0.0), vals.get("VmHWM", 0.0)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def run_point(
    engine: Any,
    mode: str,
    beam: int,
    n: int,
    seconds: float,
    args: Any,
    clips: list[Any],
    tmp: Path,
) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.live.service import LiveService

    cfg = load_serve_config(
        None,
        {
            "sources": [{"type": "websocket", "port": 0, "auth": "token", "token": BENCH_TOKEN}],
            "live": {
                "window": mode,
                "beam_size": beam,
                "max_batch": args.max_batch,
                "timestamps_cut": args.timestamps_cut,
                "min_window_s": args.min_window,
            },
            "vad": {"stop_ms": args.stop_ms},
            "rules": {"pack": str(tmp / "bench.yaml")},
            "sinks": {"jsonl": {"directory": str(tmp / f"ev-{mode}-{beam}-{n}")}},
            "shutdown_timeout_s": 120,
        },
    )
    metrics = LiveMetrics(CollectorRegistry(), keep_samples=True)
    svc = LiveService(cfg, engine=engine, metrics=metrics)
    await svc.start()
    port = svc.sources[0].bound_port  # type: ignore[attr-defined]
    calls = [call_messages(f"c{n}-{i}", build_call(clips, seconds, 1000 * n + i)) for i in range(n)]
    q: Any = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(
        target=_client_main,
        args=(f"ws://127.0.0.1:{port}/media?token={BENCH_TOKEN}", calls, args.stagger, q),
    )
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.monotonic()
    proc.start()
    await asyncio.to_thread(proc.join)
    # all calls sent their stop: wait for the last scorecards
    t_end = time.monotonic() + 120
    while (svc.sessions or svc.scored < n) and time.monotonic() < t_end:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    wall = time.monotonic() - w0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu, client_wall = q.get(timeout=10) if not q.empty() else (float("nan"), wall)
    rss, hwm = _rss_mb()
    assert svc.worker is not None
    dropped = sum(svc.worker.dropped.values())
    decoded = svc.worker.decoded
    await svc.shutdown(10)
    lat = metrics.finding_latencies
    tl = metrics.transcript_latencies
    cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall
    (batch,) = list(metrics.batch_size.collect())
    bs = [s.value for s in batch.samples if s.name.endswith("_sum")]
    bc = [s.value for s in batch.samples if s.name.endswith("_count")]
    return {
        "mode": f"{mode}/b{beam}",
        "n": n,
        "findings": len(lat),
        "p50": pct(lat, 50),
        "p95": pct(lat, 95),
        "max": max(lat) if lat else float("nan"),
        "t_p95": pct(tl, 95),
        "rtf": metrics.asr_seconds / metrics.asr_audio_seconds if metrics.asr_audio_seconds else 0,
        "decoded": decoded,
        "dropped": dropped,
        "batch": (bs[0] / bc[0]) if bc and bc[0] else 0.0,
        "cpu": 100 * cpu,
        "client_cpu": 100 * client_cpu / max(client_wall, 1e-9),
        "rss": rss,
        "hwm": hwm,
        "errors": svc.call_errors,
        "calls": svc.scored,
    }


def cer_table(engine: Any, modes: list[tuple[str, int]], args: Any) -> dict[str, float]:
    from qa_pipeline.evaluation import cer_counts, pooled
    from qa_pipeline.live.decoder import DecodeOptions, LiveDecoder
    from qa_pipeline.messages import Role, SpeechSegment

    sys.path.insert(0, str(REPO / "tests"))
    from audio_helpers import read_clip

    man = [json.loads(x) for x in (SPEECH / "manifest.jsonl").read_text().splitlines()]
    man = [m for m in man if m.get("lang") == "zh"]
    segs = []
    for m in man:
        a = read_clip(SPEECH, m["audio"])
        segs.append(SpeechSegment("cer", 0, Role.AGENT, 0.0, len(a) / 16000, a))
    print(f"\nCER on the {len(man)} shared Mandarin clips (16 kHz, one utterance each)")
    print(f"{'mode':<14}{'pooled CER':>11}{'wall s':>8}")
    out = {}
    for mode, beam in modes:
        d = LiveDecoder(
            engine,
            DecodeOptions(
                window=mode,
                beam_size=beam,
                min_window_s=args.min_window,
                timestamps_cut=args.timestamps_cut,
            ),
        )
        t0 = time.perf_counter()
        res = [r for s in segs for r in d.decode([s])]
        counts = [cer_counts(m["text"], r.text) for m, r in zip(man, res, strict=True)]
        out[f"{mode}/b{beam}"] = pooled(counts)
        print(
            f"{mode + '/b' + str(beam):<14}{pooled(counts):>11.3f}{time.perf_counter() - t0:>8.1f}",
            flush=True,
        )
    return out


# -- parity: the corpus replayed live vs the recorded path ------------------------------

Result = tuple[dict[str, str], list[dict[str, Any]]]
"""A call's verdicts (rule id -> verdict) and utterances (channel, start, end, text)."""


def corpus_line_audio(path: Path) -> np.ndarray:
    """(2, n) float32 at 8 kHz: the call as a Twilio line carries it (before μ-law)."""
    import soundfile as sf
    import soxr

    a, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != RATE:
        a = soxr.resample(a, rate, RATE)
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32).T)


def corpus_custom(side: dict[str, Any]) -> dict[str, str]:
    """The call's metadata as the ``<Parameter>``s of a Twilio ``<Stream>``."""
    call = side["call"]
    keys = ("call_id", "direction", "started_at", "agent_id")
    out = {k: str(call[k]) for k in keys if call.get(k)}
    out.update({str(k): str(v) for k, v in (call.get("metadata") or {}).items()})
    return out


async def stream_call(
    url: str, call_id: str, audio: np.ndarray, custom: dict[str, str], speed: float
) -> None:
    """One call over the WebSocket: both tracks every 20 ms of call time / ``speed``
    (messages made as they are sent: a call's JSON built up front stalls the other calls)."""
    from websockets.asyncio.client import connect

    from qa_pipeline.sources.codec import ulaw_encode
    from qa_pipeline.sources.twilio import TwilioSerializer

    ser = TwilioSerializer(f"MZ{call_id}", call_id)
    step = RATE * FRAME_MS // 1000
    agent, customer = ulaw_encode(audio[0]), ulaw_encode(audio[1])
    async with connect(
        url, compression=None, max_queue=None, open_timeout=300, ping_interval=None
    ) as ws:
        await ws.send(ser.connected())
        await ws.send(ser.start(custom))
        t0 = time.monotonic()
        for k, i in enumerate(range(0, audio.shape[1] - step + 1, step)):
            d = t0 + k * FRAME_MS / 1000 / speed - time.monotonic()
            if d > 0:
                await asyncio.sleep(d)
            elif k % 50 == 0:
                await asyncio.sleep(0)  # behind the pace: still let the other calls send
            ts = i * 1000 // RATE
            await ws.send(ser.media("outbound", ts, agent[i : i + step]))
            await ws.send(ser.media("inbound", ts, customer[i : i + step]))
        await ws.send(ser.stop())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), 3600)


def _replay_main(
    jobs: list[tuple[str, str, dict[str, str]]], concurrency: int, speed: float
) -> None:
    """Client process: replay (url, wav, custom) calls, ``concurrency`` at a time; a call
    that fails is reported and the others go on."""

    async def run_all() -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one(url: str, wav: str, custom: dict[str, str]) -> None:
            async with sem:
                cid = custom["call_id"]
                try:
                    await stream_call(url, cid, corpus_line_audio(Path(wav)), custom, speed)
                except Exception as exc:
                    print(f"client: call {cid} failed: {exc!r}", file=sys.stderr, flush=True)

        await asyncio.gather(*(one(*j) for j in jobs))

    asyncio.run(run_all())


def recorded_results(
    engine: Any, paths: list[Path], store_dir: Path | None, *, verify: bool = True
) -> dict[str, Result]:
    """Each call through ``Pipeline.score`` (default config + its company name), as
    ``bench_accuracy.py`` scores it. Stored transcripts (same audio, same settings) are
    reused. ``verify=False``: without the verification decode (the live path's is off
    with ``live.verify_keep_s: 0``)."""
    from qa_pipeline.config import load_config
    from qa_pipeline.pipeline import Pipeline
    from qa_pipeline.samples.corpus import read_sidecar
    from qa_pipeline.store import Store

    store = Store(store_dir) if store_dir is not None else None
    out = {}
    for k, p in enumerate(paths, 1):
        company = read_sidecar(p)["company"]
        overrides: dict[str, Any] = {"rules": {"settings": {"company_name": company}}}
        if not verify:
            overrides["asr"] = {"verify": False}
        cfg = load_config(overrides=overrides)
        t0 = time.perf_counter()
        res = Pipeline(cfg, engine=engine).score(p, store=store)
        assert res.scorecard is not None
        cached = " (stored)" if res.stats.cached else ""
        print(
            f"recorded {k}/{len(paths)} {p.stem} {time.perf_counter() - t0:.1f} s{cached}",
            file=sys.stderr,
            flush=True,
        )
        out[p.stem] = (
            {v.rule_id: v.verdict.value for v in res.scorecard.verdicts},
            [
                {"channel": u.channel, "start": u.start, "end": u.end, "text": u.text}
                for u in res.transcript.utterances
            ],
        )
    return out


async def live_results(
    engine: Any,
    paths: list[Path],
    concurrency: int,
    speed: float,
    live: dict[str, Any] | None = None,
) -> tuple[dict[str, Result], dict[str, Any]]:
    """Replay the calls into ``serve``'s default mode: one service per company name (each
    configured with nothing else, its decoder biased as ``serve`` biases it), one loaded
    model shared by all. Returns each call's verdicts and utterances, and run stats."""
    from prometheus_client import CollectorRegistry

    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.live.service import LiveService
    from qa_pipeline.rules import load_pack
    from qa_pipeline.rules.terms import pack_terms
    from qa_pipeline.samples.corpus import read_sidecar
    from qa_pipeline.sinks import FanOut
    from qa_pipeline.testing import Recorder

    sides = {p.stem: read_sidecar(p) for p in paths}
    services: dict[str, tuple[LiveService, Recorder, set[str]]] = {}
    for company in sorted({s["company"] for s in sides.values()}):
        cfg = load_serve_config(
            None,
            {
                "sources": [
                    {"type": "websocket", "port": 0, "auth": "token", "token": BENCH_TOKEN}
                ],
                "rules": {"settings": {"company_name": company}},
                "live": dict(live or {}),
                "metrics": {"enabled": False},
                "shutdown_timeout_s": 600,
            },
        )
        pack = load_pack(cfg.rules.pack, cfg.rules.settings or None)
        sink = Recorder()
        svc = LiveService(
            cfg,
            engine=engine.with_bias(tuple(pack_terms(pack, cfg.asr.bias))),
            pack=pack,
            sinks=FanOut([("collect", sink)]),
            metrics=LiveMetrics(CollectorRegistry()),
        )
        await svc.start()
        ids = {k for k, s in sides.items() if s["company"] == company}
        services[company] = (svc, sink, ids)
    jobs = []
    for p in paths:
        svc = services[sides[p.stem]["company"]][0]
        port = svc.sources[0].bound_port  # type: ignore[attr-defined]
        url = f"ws://127.0.0.1:{port}/media?token={BENCH_TOKEN}"
        jobs.append((url, str(p), corpus_custom(sides[p.stem])))
    proc = mp.get_context("spawn").Process(target=_replay_main, args=(jobs, concurrency, speed))
    w0 = time.monotonic()
    proc.start()
    await asyncio.to_thread(proc.join)
    # every call has sent its stop (or failed): wait for the ASR backlog and the scorecards
    t_end = time.monotonic() + 3600
    while time.monotonic() < t_end and any(s.sessions for s, _, _ in services.values()):  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    stats: dict[str, Any] = {
        "wall_s": time.monotonic() - w0,
        "errors": 0,
        "dropped": {},
        "client_rc": proc.exitcode,
    }
    out: dict[str, Result] = {}
    for svc, sink, _ in services.values():
        stats["errors"] += svc.call_errors
        assert svc.worker is not None
        for k, v in svc.worker.dropped.items():
            stats["dropped"][k] = stats["dropped"].get(k, 0) + v
        for call_id, card in svc.scorecards.items():
            out[call_id] = (
                {v.rule_id: v.verdict.value for v in card.verdicts},
                [e.payload for _, e in sink.of("utterance", call_id)],
            )
        await svc.shutdown(10)
    return out, stats


def turn_cer(side: dict[str, Any], utts: list[dict[str, Any]]) -> tuple[int, int]:
    """Per channel, the script of its turns against the text of its utterances, in call
    order (where the utterances begin and end does not matter, what was written does)."""
    from qa_pipeline.evaluation import cer_counts

    errs = total = 0
    for ch in (0, 1):
        ref = "".join(t["text"] for t in side["turns"] if t["channel"] == ch)
        hyp = "".join(
            u["text"] for u in sorted(utts, key=lambda u: u["start"]) if u["channel"] == ch
        )
        e, n = cer_counts(ref, hyp)
        errs, total = errs + e, total + n
    return errs, total


def parity(args: Any) -> dict[str, Any]:
    from qa_pipeline.asr.engine import AsrEngine
    from qa_pipeline.config import load_config
    from qa_pipeline.live.config import LiveConfig
    from qa_pipeline.samples.corpus import generate_corpus

    paths = generate_corpus(args.corpus_root, args.calls, args.seed)
    if args.ids:
        want = set(args.ids.split(","))
        paths = [p for p in paths if p.stem in want]
    import yaml

    over = {k: yaml.safe_load(v) for k, _, v in (a.partition("=") for a in args.live)}
    live_cfg = LiveConfig(**over)
    base = AsrEngine(load_config().asr)
    print(
        f"{len(paths)} corpus calls, seed {args.seed}; live: "
        + ("serve's default mode" if not over else f"serve with live: {over}")
        + f" (window "
        f"{live_cfg.window}, min {live_cfg.min_window_s:.0f} s, beam {live_cfg.beam_size}), "
        f"{args.concurrency} calls at a time at {args.speed:g}x real time; recorded: "
        f"Pipeline.score (window {base.config.window}, min "
        f"{base.config.min_window_seconds:.0f} s, beam {base.config.beam_size})",
        flush=True,
    )
    store = None if args.no_store else REPO / ".cache" / "bench-live-store"
    rec = recorded_results(base, paths, store)
    live, stats = asyncio.run(live_results(base, paths, args.concurrency, args.speed, over))
    return report_parity(paths, rec, live, stats, args)


def report_parity(
    paths: list[Path],
    rec: dict[str, Result],
    live: dict[str, Result],
    stats: dict[str, Any],
    args: Any,
) -> dict[str, Any]:
    from collections import Counter

    from qa_pipeline.evaluation import pooled
    from qa_pipeline.samples.corpus import read_sidecar

    right: Counter[str] = Counter()
    unc: Counter[str] = Counter()
    total = agree = 0
    per_rule: dict[str, Counter[str]] = {}
    disagreements: list[str] = []
    cer: dict[str, list[tuple[int, int]]] = {"recorded": [], "live": []}
    missing = [p.stem for p in paths if p.stem not in live]
    calls = []
    for p in paths:
        if p.stem not in live:
            continue
        side = read_sidecar(p)
        rv, ru = rec[p.stem]
        lv, lu = live[p.stem]
        cer["recorded"].append(turn_cer(side, ru))
        cer["live"].append(turn_cer(side, lu))
        for rule, want in side["expected"].items():
            r, lg = rv.get(rule, "missing"), lv.get(rule, "missing")
            total += 1
            right["recorded"] += r == want
            right["live"] += lg == want
            unc["recorded"] += r == "uncertain"
            unc["live"] += lg == "uncertain"
            agree += r == lg
            c = per_rule.setdefault(rule, Counter())
            c["recorded"] += r == want
            c["live"] += lg == want
            if r != lg:
                c["differ"] += 1
                disagreements.append(f"{p.stem} {rule}: label {want}, recorded {r}, live {lg}")
        calls.append({"call_id": p.stem, "expected": side["expected"], "recorded": rv,
                      "live": lv, "recorded_utterances": ru, "live_utterances": lu})  # fmt: skip
    n = max(total, 1)
    acc = {k: right[k] / n for k in ("recorded", "live")}
    print(
        f"\n{len(calls)} calls replayed, {total} verdicts; live run {stats['wall_s']:.0f} s, "
        f"call errors {stats['errors']}, ASR drops {dict(stats['dropped']) or 0}"
        + (f"; NO LIVE SCORECARD: {', '.join(missing)}" if missing else "")
    )
    print(f"{'':10}{'right':>14}{'accuracy':>10}{'uncertain':>11}{'CER on turns':>14}")
    for k in ("recorded", "live"):
        print(f"{k:10}{right[k]:>8}/{total:<5}{acc[k]:>10.1%}{unc[k]:>11}{pooled(cer[k]):>14.3f}")
    gap = 100 * (acc["live"] - acc["recorded"])
    print(
        f"gap (live - recorded): {gap:+.1f} points; the two paths give the same verdict "
        f"{agree}/{total} = {agree / n:.1%}"
    )
    if disagreements:
        print("\nper rule where the paths differ (right vs the label: recorded / live; differ):")
        for rule, c in per_rule.items():
            if c["differ"]:
                print(f"  {rule:14} {c['recorded']:3d} / {c['live']:3d}   {c['differ']:3d}")
        print("\ndisagreements:")
        for d in disagreements:
            print("  " + d)
    doc = {
        "seed": args.seed, "recorded_accuracy": acc["recorded"], "live_accuracy": acc["live"],
        "gap_points": gap, "agree": agree, "verdicts": total, "missing": missing,
        "cer": {k: pooled(v) for k, v in cer.items()}, "stats": stats, "calls": calls,
    }  # fmt: skip
    if getattr(args, "json", None):
        args.json.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--modes",
        default="fitted:5,fitted:1,full:1",
        help="window:beam list (window = full | fitted)",
    )
    ap.add_argument("--ns", default="4,8,12,16,24,32", help="concurrent calls per point")
    ap.add_argument("--full-ns", default="2,4,6,8", help="N for the full-window mode")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each call")
    ap.add_argument("--stagger", type=float, default=0.25, help="seconds between call starts")
    ap.add_argument("--max-batch", type=int, default=4)
    ap.add_argument("--min-window", type=float, default=10.0)
    ap.add_argument("--stop-ms", type=int, default=500, help="VAD end-of-utterance hangover")
    ap.add_argument(
        "--timestamps-cut",
        action="store_true",
        help="fitted: decode with timestamps, cut at the utterance's end",
    )
    ap.add_argument("--cer", action="store_true", help="only print the CER of each mode")
    ap.add_argument(
        "--parity",
        action="store_true",
        help="replay the untuned corpus live (serve's default mode) vs the recorded path",
    )
    ap.add_argument("--seed", type=int, default=2, help="--parity: corpus seed")
    ap.add_argument("--calls", type=int, default=40, help="--parity: corpus size")
    ap.add_argument("--ids", default="", help="--parity: only these call ids (comma-separated)")
    ap.add_argument("--corpus-root", type=Path, default=REPO / ".cache" / "corpus")
    ap.add_argument("--concurrency", type=int, default=8, help="--parity: calls at a time")
    ap.add_argument("--speed", type=float, default=1.0, help="--parity: replay rate, x real time")
    ap.add_argument("--no-store", action="store_true", help="--parity: no transcript cache")
    ap.add_argument(
        "--live",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--parity: a live: setting instead of serve's default (YAML value), "
        "e.g. --live beam_size=5 --live min_window_s=15 (the recorded path's decode)",
    )
    ap.add_argument("--json", type=Path, help="--parity: per-call verdicts and transcripts")
    args = ap.parse_args()
    if args.parity:
        import logging

        logging.basicConfig(level=logging.WARNING)
        parity(args)
        return
    if not (SPEECH / "manifest.jsonl").is_file():
        sys.exit(f"needs the shared speech clips in {SPEECH}")
    import logging

    logging.basicConfig(level=logging.WARNING)
    from qa_pipeline.asr.engine import AsrEngine
    from qa_pipeline.config import AsrConfig

    modes = [(m.split(":")[0], int(m.split(":")[1])) for m in args.modes.split(",")]
    engine = AsrEngine(AsrConfig(workers=2, threads_per_worker=1))
    if args.cer:
        cer_table(engine, modes, args)
        return
    clips = load_clips()
    print(
        f"{os.cpu_count()} CPUs; {len(clips)} clips; calls of {args.seconds:.0f} s, "
        f"VAD stop_ms {args.stop_ms} (not in the latencies), max_batch {args.max_batch}, "
        f"min_window {args.min_window:.0f} s",
        flush=True,
    )
    hdr = (
        f"{'mode':<10}{'N':>4}{'utts':>6}{'p50':>7}{'p95':>7}{'max':>7}{'tx p95':>8}"
        f"{'RTF':>7}{'batch':>6}{'drop':>5}{'CPU%':>6}{'cli%':>6}{'RSS MB':>8}{'err':>5}"
    )
    best: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        (tmp / "bench.yaml").write_text(BENCH_PACK, encoding="utf-8")
        for mode, beam in modes:
            print("\n" + hdr, flush=True)
            ns = [int(x) for x in (args.full_ns if mode == "full" else args.ns).split(",")]
            key = f"{mode}/b{beam}"
            best[key] = 0
            for n in ns:
                r = asyncio.run(run_point(engine, mode, beam, n, args.seconds, args, clips, tmp))
                print(
                    f"{r['mode']:<10}{n:>4}{r['findings']:>6}{r['p50']:>7.2f}{r['p95']:>7.2f}"
                    f"{r['max']:>7.2f}{r['t_p95']:>8.2f}{r['rtf']:>7.3f}{r['batch']:>6.2f}"
                    f"{r['dropped']:>5}{r['cpu']:>6.0f}{r['client_cpu']:>6.0f}"
                    f"{r['hwm']:>8.0f}{r['errors']:>5}",
                    flush=True,
                )
                if r["p95"] <= 1.0 and r["dropped"] == 0:
                    best[key] = n
                if r["p95"] > 2.0 or r["dropped"]:
                    break
    # capacity is bought with accuracy: each mode's CER beside its lines
    cer = cer_table(engine, modes, args)
    from qa_pipeline.live.config import LiveConfig

    d = LiveConfig()
    default = f"{d.window}/b{d.beam_size}" if args.min_window == d.min_window_s else ""
    print("\nlargest N with finding-latency p95 <= 1.0 s (no drops), and the mode's CER:")
    for k, v in best.items():
        mark = "  <- serve's default mode" if k == default else ""
        print(f"  {k:<10} {v:>4} lines   CER {cer[k]:.3f} (shared zh clips){mark}")
    print("  verdicts of the default mode vs the recorded path: --parity")


if __name__ == "__main__":
    main()
