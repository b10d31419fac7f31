"""``serve`` writes every ended call to the store (``store:``): its redacted transcript and
utterance rows, its call row and its scorecard as a result of the live run, incomplete calls
marked so; a store that is down does not stop the service, and its calls are written once
it is back. Real clips through the real VAD and rule engine, a scripted decoder (no
model), both backends."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from qa_pipeline.messages import AudioChunk, CallInfo, Role
from qa_pipeline.sinks import FanOut
from qa_pipeline.sources.base import EndReason
from qa_pipeline.store import Store
from qa_pipeline.testing import FakeDecoder, Recorder

MOBILE = "13912345678"
SAID = {Role.AGENT: "您好，这笔交易已经办好了", Role.CUSTOMER: f"我的手机号是{MOBILE}"}


def make_service(
    monkeypatch: pytest.MonkeyPatch, pack_path: Path, target: str | None, **kw: Any
) -> tuple[Any, Recorder]:
    import qa_pipeline.live.service as service_mod
    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics

    monkeypatch.setattr(service_mod, "LiveDecoder", FakeDecoder(lambda s, _: SAID[s.role]))
    cfg = load_serve_config(
        None,
        {
            "sources": [],
            "live": {"warmup": False},
            "rules": {"pack": str(pack_path)},
            "metrics": {"enabled": False},
            "store": target,
        },
    )
    engine: Any = type("Engine", (), {"config": type("C", (), {"workers": 1})()})()
    rec = Recorder()
    svc = service_mod.LiveService(
        cfg,
        engine=engine,
        metrics=LiveMetrics(CollectorRegistry()),
        sinks=FanOut([("rec", rec)]),
        sources=[],
        **kw,
    )
    return svc, rec


async def play(svc: Any, call_id: str, audio: np.ndarray, end: EndReason) -> None:
    """One call into the service as a source hands it in: 200 ms frames of both legs."""
    call = CallInfo(
        call_id,
        agent_id="a7",
        metadata=(("team", "t1"), ("caller", MOBILE)),
    )
    assert svc.call_started(call, 8000, source="test")
    for i in range(0, audio.shape[1], 1600):
        for ch, role in enumerate((Role.AGENT, Role.CUSTOMER)):
            svc.audio(AudioChunk(call_id, ch, role, i / 8000, 8000, audio[ch, i : i + 1600]))
        await asyncio.sleep(0)
    svc.call_ended(call_id, end)


async def until(pred: Any, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while not pred():
        assert time.monotonic() < deadline, "not within the time limit"
        await asyncio.sleep(0.02)


def rows(target: str) -> dict[str, Any]:
    with Store(target, readonly=True) as s:
        q = s.execute
        return {
            "results": q(
                "SELECT r.call_id, r.run_id, r.score, r.complete, u.role FROM results r "
                "JOIN runs u ON u.run_id = r.run_id ORDER BY r.call_id"
            ).fetchall(),
            "failed": q(
                "SELECT call_id FROM verdicts WHERE rule_id = 'LIVE-BAN' AND verdict = 'failed' "
                "ORDER BY call_id"
            ).fetchall(),
            "utterances": q(
                "SELECT call_id, idx, role, text FROM utterances ORDER BY call_id, idx"
            ).fetchall(),
            "calls": q(
                "SELECT call_id, agent_id, team, started_epoch, call, source FROM calls "
                "ORDER BY call_id"
            ).fetchall(),
        }


def test_serve_writes_every_ended_call(
    store_url: str, monkeypatch: pytest.MonkeyPatch, pack_path: Path, ban_call: np.ndarray
) -> None:
    svc, rec = make_service(monkeypatch, pack_path, store_url)

    async def main() -> None:
        await svc.start()
        await asyncio.gather(
            play(svc, "c1", ban_call, EndReason.STOP),
            play(svc, "c2", ban_call, EndReason.DISCONNECT),
            play(svc, "c3", ban_call, EndReason.TIMEOUT),  # cut short: incomplete
        )
        await until(lambda: svc.scored == 3)
        await svc.shutdown(10)

    t0 = time.time()
    asyncio.run(asyncio.wait_for(main(), 60))
    assert svc.store.counts.written == 3 and svc.store.counts.dropped_total == 0
    got = rows(store_url)
    run_id = f"live:{svc.pack.name}:{svc.pack.version}"
    cards = {e.call_id: e.payload for _, e in rec.of("scorecard")}
    assert [tuple(r) for r in got["results"]] == [
        (c, run_id, round(cards[c]["score"], 2), int(cards[c]["complete"]), "active")
        for c in ("c1", "c2", "c3")
    ]
    assert [r[3] for r in got["results"]] == [1, 1, 0]
    assert [r[0] for r in got["failed"]] == ["c1", "c2", "c3"]  # the banned word, as rows
    # the transcript: every utterance the service emitted, redacted, as rows
    emitted = sorted(
        (e.call_id, e.payload["index"], e.payload["role"], e.payload["text"])
        for _, e in rec.of("utterance")
    )
    assert [tuple(r) for r in got["utterances"]] == emitted
    assert {r[0] for r in emitted} == {"c1", "c2", "c3"}
    assert {r[2] for r in emitted} == {"agent", "customer"}
    assert all(MOBILE not in r[3] for r in emitted)
    for call_id, agent, team, started, call, source in got["calls"]:
        assert (agent, team, source) == ("a7", "t1", "test"), call_id
        assert t0 - 5 <= started <= time.time()  # the start the service gave it
        assert MOBILE not in call
    # the current scores: the complete calls only
    with Store(store_url, readonly=True) as s:
        assert [r["call_id"] for r in s.current_results(agent_id="a7")] == ["c1", "c2"]
    assert svc.record_store() == store_url  # kept recordings' rows go beside the calls
    # retention applies to what serve wrote (retention.store not set: the serve store)
    with Store(store_url) as s:
        s.execute("UPDATE calls SET started_at = '2020-01-01T00:00:00+00:00' WHERE call_id = 'c1'")
        s.commit()
    report = svc.purge()
    assert not report.errors
    assert report.total("scorecards") == 1 and report.total("transcripts") >= 1
    assert [r[0] for r in rows(store_url)["results"]] == ["c2", "c3"]


def test_store_down_at_first_serve_keeps_serving_then_writes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pack_path: Path,
    ban_call: np.ndarray,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from qa_pipeline.rules import load_pack
    from qa_pipeline.store.writer import LiveRun, StoreWriter

    caplog.set_level(logging.INFO)
    blocker = tmp_path / "db"
    blocker.write_text("a file where the store's directory should be")
    target = str(blocker / "qa-store.sqlite")
    registry = CollectorRegistry()
    writer = StoreWriter(
        target,
        LiveRun.for_pack(load_pack(pack_path), "serve"),
        backoff_s=(0.05, 0.3),
        registry=registry,
    )
    svc, rec = make_service(monkeypatch, pack_path, None, store=writer)

    async def main() -> None:
        await svc.start()
        await asyncio.gather(*(play(svc, f"d{i}", ban_call, EndReason.STOP) for i in range(3)))
        await until(lambda: svc.scored == 3)  # scored and sent on, the store down
        assert len(rec.of("scorecard")) == 3
        await until(lambda: not writer.up)
        assert writer.pending == 3
        assert registry.get_sample_value("qa_store_up") == 0
        blocker.unlink()
        blocker.mkdir()
        await until(lambda: writer.up and writer.pending == 0)
        await svc.shutdown(10)

    asyncio.run(asyncio.wait_for(main(), 60))
    assert f"store {target}: cannot write" in caplog.text
    assert writer.counts.written == 3 and writer.counts.dropped_total == 0
    assert registry.get_sample_value("qa_store_writes_total") == 3
    assert [r[0] for r in rows(target)["results"]] == ["d0", "d1", "d2"]


def test_serve_store_setting_and_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` writes to out/qa-store.sqlite when the config does not say, ``--store``
    overrides, ``store: null`` turns it off; a value that is not a store is a config error
    naming it."""
    from typer.testing import CliRunner

    import qa_pipeline.live.cli as serve_cli
    from qa_pipeline.cli import app

    seen: list[Any] = []
    monkeypatch.setattr(serve_cli, "_prepare", lambda cfg: seen.append(cfg.store) or cfg)

    async def no_run(service: Any) -> int:
        return 0

    monkeypatch.setattr(serve_cli, "run_service", no_run)
    monkeypatch.chdir(tmp_path)
    base = tmp_path / "base.yaml"
    base.write_text("sources: []\n", encoding="utf-8")
    off = tmp_path / "off.yaml"
    off.write_text("store: null\nsources: []\n", encoding="utf-8")
    runner = CliRunner()
    for args in (
        ["--config", str(base)],
        ["--config", str(base), "--store", "postgresql://qa@db/qa"],
        ["--config", str(off)],
    ):
        res = runner.invoke(app, ["serve", *args])
        assert res.exit_code == 0, res.output
    assert seen == ["out/qa-store.sqlite", "postgresql://qa@db/qa", None]

    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: mysql://qa@db/qa\nsources: []\nmetrics: {enabled: false}\n")
    res = runner.invoke(app, ["serve", "--config", str(bad)])
    assert res.exit_code == 2
    assert "mysql://qa@db/qa: not a store" in res.output
