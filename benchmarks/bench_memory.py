"""Live service memory over thousands of short calls: does RSS stay flat once the bounded
caches are full?

The real service runs in this process (WebSocket source on 127.0.0.1, media token auth,
the real VAD, the default rule pack, the session/worker/metrics machinery); only Whisper is
replaced by a stub decoder that answers at once with a plausible sentence per utterance.
By default every utterance's text is **unique** (a number in it), as real ASR output
mostly is, so per-text caches fill as they would in production (``--texts pool``: a few
recurring sentences, caches stay small). A separate client process streams the calls as
Twilio Media Streams messages (``--frame-ms`` of audio per message, as fast as the service
takes them), ``--concurrency`` calls at a time. Each call is two short real Mandarin
clips (``../shared/data/speech``): the agent speaks, the customer answers, about 4 s.

After ``--warmup`` calls and after each further ``--step`` calls (counted by scorecards
emitted) the service process is measured: ``gc.collect()``, then RSS (psutil if installed,
else ``/proc/self/status`` VmRSS), tracked Python objects, and the sizes of what the
service keeps: open sessions, recent scorecards, the rule pack's text-analysis cache, the
ASR queue. Prints a table and the RSS growth per 1,000 calls after the warm-up, against
the target (issue 14: <= 5 MB per 1,000 calls once the bounded caches are full). The text
cache is set small (``--text-cache 1000``) so that it is full after the warm-up; each text
costs about 3 KB, so the service's default of 10,000 adds about 27 MB more, once. The
fuzzy-window memo (``fuzzy_memo``, at most 4,096 stretches per fuzzy phrase of the pack)
still fills slowly over tens of thousands of calls.

    .venv/bin/python benchmarks/bench_memory.py                    # 3,000 calls
    .venv/bin/python benchmarks/bench_memory.py --calls 3000 --warmup 1000 --step 500
    .venv/bin/python benchmarks/bench_memory.py --jsonl            # with the JSONL sink
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"
RATE = 8000
TOKEN = "bench-memory-token"
TARGET_MB_PER_1000 = 5.0

AGENT_LINES = (
    "您好，工号{n}为您服务，请问有什么可以帮您",
    "好的，您的订单号是{n}，我帮您查询一下",
    "抱歉让您久等了，这个问题已经为您登记，编号{n}",
    "感谢您的来电，祝您生活愉快，再见",
)
CUSTOMER_LINES = (
    "我想问一下第{n}号订单什么时候发货",
    "你们这个交易怎么还没有到账",
    "好的，谢谢，我的电话是{n}",
    "嗯，那就这样吧",
)


def rss_mb() -> float:
    try:
        psutil = importlib.import_module("psutil")  # optional: not a dependency
        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stub_text(unique: bool) -> Any:
    """The stub decoder's text (no model, an answer at once). ``unique``: each utterance's
    text carries a number of its own (production-like: ASR output rarely repeats exactly);
    else a small pool of sentences recurs."""
    from qa_pipeline.messages import Role

    def text(s: Any, k: int) -> str:
        lines = AGENT_LINES if s.role is Role.AGENT else CUSTOMER_LINES
        return lines[k % len(lines)].format(n=k if unique else 7)

    return text


class CountingSink:
    """Counts events; keeps nothing (the benchmark measures the service, not a sink)."""

    def __init__(self) -> None:
        self.events = 0
        self.scorecards = 0

    def emit(self, event: Any) -> None:
        self.events += 1
        if event.kind.value == "scorecard":
            self.scorecards += 1

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def call_audio() -> list[np.ndarray]:
    """A few (2, n) 8 kHz calls: an agent clip, then a customer clip, each cut to 1.5 s
    (about 4 s a call: the VAD, the costliest part of a call here, runs on both channels)."""
    import soxr

    from qa_pipeline.audio import load_call

    clips = []
    for line in (SPEECH / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        if m.get("lang") == "zh":
            a = load_call(SPEECH / m["audio"]).channels[0]
            clips.append(soxr.resample(a, 16000, RATE).astype(np.float32)[: int(1.5 * RATE)])
        if len(clips) == 6:
            break
    calls = []
    rng = np.random.default_rng(5)
    for i in range(len(clips)):
        a, b = clips[i], clips[(i + 1) % len(clips)]
        n = int(0.2 * RATE) + len(a) + int(0.4 * RATE) + len(b) + int(0.4 * RATE)
        out = (rng.standard_normal((2, n)) * 1e-3).astype(np.float32)
        i0 = int(0.2 * RATE)
        out[0, i0 : i0 + len(a)] += a
        i1 = i0 + len(a) + int(0.4 * RATE)
        out[1, i1 : i1 + len(b)] += b
        calls.append(np.clip(out, -1, 1))
    return calls


def media_messages(audio: np.ndarray, frame_ms: int) -> list[str]:
    from qa_pipeline.sources.codec import ulaw_encode
    from qa_pipeline.sources.twilio import TwilioSerializer

    ser = TwilioSerializer("MZbench", "CAbench")
    step = RATE * frame_ms // 1000
    agent, customer = ulaw_encode(audio[0]), ulaw_encode(audio[1])
    msgs = []
    for i in range(0, audio.shape[1] - step + 1, step):
        ts = i * 1000 // RATE
        msgs.append(ser.media("outbound", ts, agent[i : i + step]))
        msgs.append(ser.media("inbound", ts, customer[i : i + step]))
    return msgs


def _client_main(url: str, n: int, concurrency: int, frame_ms: int, q: Any) -> None:
    """Client process: ``n`` calls, ``concurrency`` at a time, each as fast as it goes."""
    from websockets.asyncio.client import connect

    from qa_pipeline.sources.twilio import TwilioSerializer

    templates = [media_messages(a, frame_ms) for a in call_audio()]
    refused = 0

    async def one(i: int) -> None:
        nonlocal refused
        ser = TwilioSerializer(f"MZ{i}", f"CA{i}")
        async with connect(
            url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, compression=None
        ) as ws:
            await ws.send(ser.connected())
            await ws.send(ser.start({"call_id": f"m{i}", "agent_id": f"a{i % 50}"}))
            for msg in templates[i % len(templates)]:
                await ws.send(msg)
            await ws.send(ser.stop())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 30)
            if ws.close_code != 1000:
                refused += 1

    async def main() -> None:
        it = iter(range(n))

        async def lane() -> None:
            for i in it:
                await one(i)

        await asyncio.gather(*(lane() for _ in range(concurrency)))

    c0, w0 = time.process_time(), time.monotonic()
    asyncio.run(main())
    q.put((time.process_time() - c0, time.monotonic() - w0, refused))


def kept(svc: Any) -> dict[str, int]:
    """Sizes of what the service keeps, the things that could grow with calls."""
    sizes = svc.pack.index.cache_sizes()
    return {
        "sessions": len(svc.sessions),
        "scorecards": len(svc.scorecards),
        "text_cache": sizes["texts"],
        "fuzzy_memo": sizes["fuzzy_windows"],
        "verdicts": len(svc.pack.verdict_cache),
        "asr_queued": svc.worker.depth if svc.worker is not None else 0,
    }


async def run(args: argparse.Namespace, tmp: Path) -> tuple[list[dict[str, Any]], Any]:
    from prometheus_client import CollectorRegistry

    import qa_pipeline.live.service as service
    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.live.service import LiveService
    from qa_pipeline.sinks import FanOut, build_sinks
    from qa_pipeline.sinks.config import SinksConfig
    from qa_pipeline.testing import FakeDecoder

    stub = FakeDecoder(stub_text(args.texts == "unique"), tokens=12)
    service.LiveDecoder = stub  # type: ignore[misc,assignment]
    live: dict[str, Any] = {"warmup": False, "max_speed": 0.0, "max_batch": 16}
    if args.text_cache:
        live["text_cache"] = args.text_cache
    cfg = load_serve_config(
        None,
        {
            "sources": [{"type": "websocket", "port": 0, "auth": "token", "token": TOKEN}],
            "live": live,
            "shutdown_timeout_s": 30,
        },
    )
    metrics = LiveMetrics(CollectorRegistry())
    counter = CountingSink()
    sinks: list[tuple[str, Any]] = [("count", counter)]
    if args.jsonl:
        jcfg = SinksConfig.from_mapping({"jsonl": {"directory": str(tmp / "events")}})
        sinks += build_sinks(jcfg, metrics).sinks
    engine: Any = type("E", (), {"config": type("C", (), {"workers": 1, "beam_size": 1})})()
    svc = LiveService(cfg, engine=engine, sinks=FanOut(sinks), metrics=metrics)
    await svc.start()
    url = f"ws://127.0.0.1:{svc.sources[0].bound_port}/media"  # type: ignore[attr-defined]
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    proc = ctx.Process(
        target=_client_main, args=(url, args.calls, args.concurrency, args.frame_ms, q)
    )
    t0 = time.monotonic()
    proc.start()
    rows: list[dict[str, Any]] = []
    marks = [args.warmup + k * args.step for k in range(10_000)]
    marks = [m for m in marks if m <= args.calls]
    try:
        while marks:
            if counter.scorecards >= marks[0]:
                gc.collect()
                rows.append(
                    {
                        "calls": counter.scorecards,
                        "wall_s": round(time.monotonic() - t0, 1),
                        "rss_mb": round(rss_mb(), 1),
                        "objects": len(gc.get_objects()),
                        **kept(svc),
                    }
                )
                print(_row(rows[-1]), flush=True)
                marks.pop(0)
                continue
            if not proc.is_alive() and not svc.sessions and q.qsize():
                break  # the client is done (refused calls leave fewer scorecards)
            if time.monotonic() - t0 > args.limit_s:
                print(f"stopped at the time limit ({args.limit_s:.0f} s)", file=sys.stderr)
                break
            await asyncio.sleep(0.05)
    finally:
        if proc.is_alive():
            proc.join(60 if not marks else 1)
        if proc.is_alive():
            proc.terminate()
        client = q.get(timeout=5) if q.qsize() else None
        await svc.shutdown()
    return rows, client


HEAD = (
    "calls",
    "wall_s",
    "rss_mb",
    "objects",
    "sessions",
    "scorecards",
    "text_cache",
    "fuzzy_memo",
    "verdicts",
)


def _row(r: dict[str, Any]) -> str:
    return "  ".join(f"{r[k]:>10}" for k in HEAD)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=1000, help="calls before the first sample")
    ap.add_argument("--step", type=int, default=1000, help="calls between samples")
    ap.add_argument("--concurrency", type=int, default=8, help="calls open at once")
    ap.add_argument("--frame-ms", type=int, default=200, help="audio per media message")
    ap.add_argument("--texts", choices=("unique", "pool"), default="unique")
    ap.add_argument(
        "--text-cache",
        type=int,
        default=1000,
        help="live.text_cache: small by default so that it is full after the warm-up "
        "(0 = the service's default, 10,000: full after ~8,000 calls here)",
    )
    ap.add_argument("--jsonl", action="store_true", help="also write events to JSONL files")
    ap.add_argument("--limit-s", type=float, default=300.0, help="stop sampling after this")
    ap.add_argument("--json", type=Path, help="write the samples here")
    args = ap.parse_args()
    if not (SPEECH / "manifest.jsonl").exists():
        print(f"needs the speech clips in {SPEECH}", file=sys.stderr)
        return 2
    import logging

    logging.basicConfig(level=logging.WARNING)  # a line per call at INFO is not the point
    print("  ".join(f"{k:>10}" for k in HEAD), flush=True)
    with tempfile.TemporaryDirectory() as d:
        rows, client = asyncio.run(run(args, Path(d)))
    if client is not None:
        cpu, wall, refused = client
        print(f"client: {wall:.0f} s wall, {cpu:.0f} s CPU, {refused} call(s) not closed 1000")
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        per = (last["rss_mb"] - first["rss_mb"]) / (last["calls"] - first["calls"]) * 1000
        worst = max(
            (b["rss_mb"] - a["rss_mb"]) / (b["calls"] - a["calls"]) * 1000
            for a, b in zip(rows, rows[1:], strict=False)
        )
        verdict = "meets" if per <= TARGET_MB_PER_1000 else "MISSES"
        print(
            f"RSS growth after {first['calls']} calls: {per:+.2f} MB per 1,000 calls "
            f"(worst step {worst:+.2f}); target <= {TARGET_MB_PER_1000:g}: {verdict}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
