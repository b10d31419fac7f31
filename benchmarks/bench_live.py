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
p95 <= 1.0 s per mode. ``--cer`` prints the pooled CER of each mode on the shared clips.

    .venv/bin/python benchmarks/bench_live.py                       # default sweep
    .venv/bin/python benchmarks/bench_live.py --modes fitted:5 --ns 8,16,24 --seconds 60
    .venv/bin/python benchmarks/bench_live.py --cer --modes full:5,fitted:5,fitted:1
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


def cer_table(engine: Any, modes: list[tuple[str, int]], args: Any) -> None:
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
        print(
            f"{mode + '/b' + str(beam):<14}{pooled(counts):>11.3f}{time.perf_counter() - t0:>8.1f}",
            flush=True,
        )


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
    args = ap.parse_args()
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
    print("\nlargest N with finding-latency p95 <= 1.0 s (no drops):")
    for k, v in best.items():
        print(f"  {k:<10} {v}")


if __name__ == "__main__":
    main()
