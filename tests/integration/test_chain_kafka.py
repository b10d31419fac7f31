"""The whole distributed chain through the real broker (``scripts/kafka.sh``): ``qa-pipeline
ingest`` (paced: the calls are live while processes die) → TWO ``asr-worker`` processes
(STUB decoder) → TWO ``evaluate`` processes (with a webhook notifier to a receiver in this
test), on topics of four partitions. Mid-stream one ASR worker and one evaluator that own
calls in progress are SIGKILLed, then the broker is stopped and started again on the same
data directory. The evaluator killed is the one owning fewer calls, so the survivor keeps
open calls through the takeover's rebalance (where kafka-python keeps its fetch position
and the stage must seek back to the calls' first records).

Checked afterwards, from the output topics read from the beginning by an independent
consumer: every call has exactly one scorecard after de-duplication by event id (none
lost, none duplicated), equal (verdicts, findings, score, grade) to scoring the same
recording in-process with the same settings and the same stub (``Pipeline(cfg,
engine=StubEngine())``, ``asr.verify: false``); a finding's ``decided_at`` may only be
earlier (the evaluator decides clock rules on the watermarks: see ``evaluate_stage``); the
findings and alerts after de-duplication are exactly the in-process findings and critical
findings; the webhook got exactly one notification per critical finding after
de-duplication by event id (receivers must de-duplicate: a crash between the evaluator's
flush and its changelog write posts that batch again; the raw duplicates are printed); the
survivors exit 0 on SIGTERM. (slow) The same with the real decoder
(the configured Whisper model in the workers and in-process) on one call.

The default rule pack has no critical rule that the stub's fixed sentences can break, so
the pack here is the default pack plus two critical rules on stub sentences (banned agent
phrases, ``critical``): what is tested is the plumbing of critical findings, not the pack.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka.partitioner.default import murmur2
from test_evaluate_kafka import _read_events, _webhook
from test_ingest_kafka import PARTITIONS, create_topic, read_topic

from qa_pipeline.sinks.base import Event
from qa_pipeline.wire import WireUtterance, decode

ROOT = Path(__file__).resolve().parents[2]
#: (scenario, rate, encoding): 8 kHz μ-law and 16 kHz PCM, 22-35 s of call each
STUB_CALLS = (
    ("no_closing", 8000, "ulaw"),
    ("i_dont_know", 16000, "pcm16"),
    ("missing_greeting", 8000, "ulaw"),
    ("over_promise", 8000, "ulaw"),
    ("complaint_no_apology", 16000, "pcm16"),
)
#: the real decoder: one call (36 s, 8 kHz μ-law) whose agent breaks a critical rule
WHISPER_CALLS = (("stonewalling", 8000, "ulaw"),)


@dataclass(frozen=True)
class Variant:
    decoder: str  # asr-worker --decoder
    calls: tuple[tuple[str, int, str], ...]
    pace: float  # x real time
    done: int  # what a victim must have done before it is killed (see the test)
    min_critical: int
    wait_s: float  # for the scorecards once the ingest is over


VARIANTS = {
    # the longest call takes about 18 s to ingest
    "stub": Variant("stub", STUB_CALLS, pace=2, done=3, min_critical=2, wait_s=120),
    # Whisper decodes slower than real time here: the call takes 36 s to ingest
    "whisper": Variant("whisper", WHISPER_CALLS, pace=1, done=1, min_critical=1, wait_s=300),
}
#: critical rules on two of the stub's sentences (see the module docstring)
EXTRA_RULES = """\
# test-only: critical rules the stub decoder's fixed sentences can break
rules:
  - id: T-VAGUE-PROMISE
    description: (test) 不说“会尽快处理”而不给时限
    severity: critical
    weight: 10
    scope: {role: agent}
    forbid:
      fuzzy: [我们会尽快处理]
  - id: T-SELF-BLAME
    description: (test) 坐席不说“服务太差了”
    severity: critical
    weight: 10
    scope: {role: agent}
    forbid:
      fuzzy: [你们的服务太差了]
"""


def _pack(folder: Path) -> Path:
    shutil.copytree(ROOT / "configs" / "rules", folder)
    (folder / "zz_test_critical.yaml").write_text(EXTRA_RULES, encoding="utf-8")
    return folder


def _base_config(pack: Path) -> dict[str, Any]:
    return {"asr": {"verify": False}, "rules": {"pack": str(pack)}}


def _eval_config(path: Path, base: dict[str, Any], bootstrap: str, tag: str, hook: str) -> Path:
    topics = {k: f"{tag}.{k}" for k in ("findings", "alerts", "scorecards", "transcripts")}
    cfg = {
        **base,
        "sinks": {
            "jsonl": None,
            "kafka": {
                "bootstrap_servers": [bootstrap],
                "topics": topics | {"utterances": f"{tag}.events"},
                "spool": {"directory": str(path.parent / f"spool-{path.stem}"), "sync": "normal"},
            },
        },
        "notify": {
            "triggers": {"critical_findings": True, "score_below": None},
            "notifiers": [{"type": "webhook", "url": hook, "unsigned": True}],
        },
    }
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


def _start(args: list[str], log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "qa_pipeline.cli", "--log-level", "info", *args],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        cwd=log.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _worker_partitions(log: Path) -> set[int] | None:
    """The worker's partitions as of its last assignment (None: none yet)."""
    lines = [x for x in log.read_text(errors="replace").splitlines() if "assigned [" in x]
    if not lines:
        return None
    return {int(p) for p in re.findall(r"-(\d+)'", lines[-1])}


def _eval_partitions(log: Path) -> set[int]:
    """The evaluator's partitions now, from its ``partition N assigned/revoked`` lines."""
    parts: set[int] = set()
    for m in re.finditer(r"partition (\d+) (assigned|revoked)", log.read_text(errors="replace")):
        (parts.add if m[2] == "assigned" else parts.discard)(int(m[1]))
    return parts


def _wait(pred: Any, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-1500:]}" for p in logs)
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.2)


def _partition(call_id: str) -> int:
    """kafka-python's default partitioner (murmur2 of the key), as ingest's producer uses."""
    return (murmur2(call_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def _card(d: dict[str, Any]) -> tuple[dict[str, Any], list[float | None]]:
    """The scorecard without the findings' ``decided_at`` (returned apart) and without
    ``extras`` (counters of the path that made it: compared separately)."""
    d = json.loads(json.dumps(d))
    d.pop("extras")
    times = [f.pop("decided_at") for f in d["findings"]]
    return d, times


# the Whisper variant is heavy (about 80 s; scripts/test -m heavy): the real decoder's
# utterances are compared with the in-process path's in test_asr_worker_kafka.py
@pytest.mark.parametrize(
    "variant", ["stub", pytest.param("whisper", marks=[pytest.mark.slow, pytest.mark.heavy])]
)
def test_chain_ingest_asr_evaluate_with_kills_and_a_broker_restart(
    kafka_server: Any, tmp_path: Path, variant: str
) -> None:
    from qa_pipeline.asr.stub import StubEngine
    from qa_pipeline.config import load_config
    from qa_pipeline.messages import to_dict
    from qa_pipeline.pipeline import Pipeline
    from qa_pipeline.samples.generate import generate_call

    t_start = time.monotonic()
    bootstrap = kafka_server.bootstrap
    tag = f"chain{os.getpid()}"
    segments, utterances = f"{tag}.segments", f"{tag}.asr.utterances"
    create_topic(bootstrap, segments)
    create_topic(bootstrap, utterances)

    # the calls, and what the in-process pipeline makes of them with the same settings
    base = _base_config(_pack(tmp_path / "pack"))
    base_path = tmp_path / "pipeline.json"
    base_path.write_text(json.dumps(base), encoding="utf-8")
    v = VARIANTS[variant]
    wavs = [generate_call(sc, tmp_path / "calls", rate=r, encoding=e) for sc, r, e in v.calls]
    cfg = load_config(base_path)
    assert cfg.asr.verify is False
    # the same engine as the workers': the stub, or the configured Whisper model
    stub = StubEngine() if v.decoder == "stub" else None
    pipe = Pipeline(cfg, engine=stub)  # type: ignore[arg-type]
    expected: dict[str, dict[str, Any]] = {}
    utterances_of: dict[str, int] = {}
    for wav in wavs:
        res = pipe.score(wav)
        assert res.scorecard is not None
        expected[res.transcript.call.call_id] = to_dict(res.scorecard)
        utterances_of[res.transcript.call.call_id] = len(res.transcript.utterances)
    crit = {
        c: [f for f in card["findings"] if f["severity"] == "critical"]
        for c, card in expected.items()
    }
    n_crit = sum(map(len, crit.values()))
    assert n_crit >= v.min_critical, f"the calls should hold critical findings: {crit}"
    parts_of = {c: _partition(c) for c in expected}

    # the stages: two ASR workers, two evaluators
    server, hooks = _webhook()
    hook = f"http://127.0.0.1:{server.server_port}/qa"
    wlogs = [tmp_path / f"w{i}" / "worker.log" for i in (0, 1)]
    elogs = [tmp_path / f"e{i}" / "evaluate.log" for i in (0, 1)]
    for log in wlogs + elogs:
        log.parent.mkdir()
    wargs = ["asr-worker", "--config", str(base_path), "--kafka", bootstrap, "--input", segments]
    wargs += ["--output", utterances, "--group", f"{tag}-asr", "--decoder", v.decoder]
    wargs += ["--max-records", "8", "--session-timeout-ms", "6000"]
    workers = [_start(wargs, log) for log in wlogs]
    evaluators = []
    for log in elogs:
        ecfg = _eval_config(log.parent / "eval.json", base, bootstrap, tag, hook)
        eargs = ["evaluate", "--config", str(ecfg), "--kafka", bootstrap, "--topic", utterances]
        eargs += ["--group", f"{tag}-eval", "--changelog", f"{tag}.emitted"]
        eargs += ["--idle-timeout", "120", "--session-timeout", "6"]
        evaluators.append(_start(eargs, log))
    procs = workers + evaluators
    ingest: subprocess.Popen[str] | None = None
    kills = 0
    restart_s = 0.0
    try:
        _wait(
            lambda: (
                all(_worker_partitions(w) for w in wlogs)
                and sum(len(_worker_partitions(w) or ()) for w in wlogs) == PARTITIONS
                and all(_eval_partitions(e) for e in elogs)
                and sum(len(_eval_partitions(e)) for e in elogs) == PARTITIONS
            ),
            90,
            "both workers and both evaluators sharing the four partitions",
            wlogs + elogs,
        )
        # the victims: the worker owning the most calls, the evaluator owning the fewest
        # (but some), so that the survivor keeps calls open through the takeover
        w_parts = [_worker_partitions(w) or set() for w in wlogs]
        e_parts = [_eval_partitions(e) for e in elogs]

        def owned(parts: set[int]) -> int:
            return sum(p in parts for p in parts_of.values())

        wv = max((0, 1), key=lambda i: owned(w_parts[i]))
        ev = min((0, 1), key=lambda i: owned(e_parts[i]) or len(parts_of) + 1)
        assert owned(w_parts[wv]) and owned(e_parts[ev]), (parts_of, w_parts, e_parts)

        t_ingest = time.monotonic()
        iargs = ["ingest", *map(str, wavs), "--config", str(base_path), "--kafka", bootstrap]
        iargs += ["--topic", segments, "--pace", str(v.pace)]
        ingest = _start(iargs, tmp_path / "ingest.log")

        def victim_decoded(rs: list[Any]) -> bool:
            """The victim worker published ``done`` utterances of its calls."""
            mine = [
                r for r in rs
                if parts_of.get(r.key.decode()) in w_parts[wv]
                and dict(r.headers).get("type") == b"utterance"
            ]  # fmt: skip
            return len(mine) >= v.done

        def victim_emitted(rs: list[Any]) -> bool:
            """The victim evaluator emitted ``done`` events of a call of its still open."""
            latest = {r.key: json.loads(r.value) for r in rs}
            return any(
                parts_of.get(k.decode()) in e_parts[ev]
                and not e["closed"]
                and e["emitted"] >= v.done
                for k, e in latest.items()
            )

        # the evaluator first (the worker's death would stall its calls for the session
        # timeout), then the worker, then the broker, all while the calls are live
        read_topic(bootstrap, f"{tag}.emitted", victim_emitted, timeout=60)
        assert ingest.poll() is None, "the calls should still be live"
        evaluators[ev].send_signal(signal.SIGKILL)
        evaluators[ev].wait(timeout=10)
        kill_at = [time.monotonic() - t_ingest]
        read_topic(bootstrap, utterances, victim_decoded, timeout=60)
        workers[wv].send_signal(signal.SIGKILL)
        workers[wv].wait(timeout=10)
        kill_at.append(time.monotonic() - t_ingest)
        kills = 2
        assert ingest.poll() is None, "the calls should still be live at the broker restart"
        t_stop = time.monotonic()
        kill_at.append(t_stop - t_ingest)
        kafka_server.stop()  # same data directory: started again below
        kafka_server.start()
        restart_s = time.monotonic() - t_stop
        out, _ = ingest.communicate(timeout=120)
        assert ingest.returncode == 0, (tmp_path / "ingest.log").read_text()[-3000:]
        ingest_s = time.monotonic() - t_ingest
        summary = json.loads(out.strip().splitlines()[-1])["ingest"]
        assert summary["calls_delivered"] == len(wavs) and summary["calls_undelivered"] == 0

        topics = [f"{tag}.{k}" for k in ("findings", "alerts", "scorecards")]

        def done(events: list[Event]) -> bool:
            return {e.call_id for e in events if e.kind.value == "scorecard"} >= set(expected)

        events = _read_events(bootstrap, topics, done, timeout=v.wait_s)
        time.sleep(2)  # any late duplicate, then everything once more
        events = _read_events(bootstrap, topics, lambda ev: len(ev) >= len(events), 30)
        # the stage topic: one utterance message per segment after de-duplication
        raw = read_topic(
            bootstrap,
            utterances,
            lambda rs: sum(dict(r.headers).get("type") == b"leg_end" for r in rs) >= 2 * len(wavs),
            timeout=60,
        )
        utt_keys = [
            (m.call_id, m.channel, m.seq)
            for m in (decode(r.value) for r in raw)
            if isinstance(m, WireUtterance)
        ]
        assert len(set(utt_keys)) == summary["segments"], "every segment decoded, none lost"
        asr_dups = len(utt_keys) - len(set(utt_keys))
        time.sleep(1)  # the last webhook posts
        # the survivors took the victims' partitions: all four, and the evaluator took
        # over a call the victim had left open with events already emitted
        assert _worker_partitions(wlogs[1 - wv]) == set(range(PARTITIONS))
        assert _eval_partitions(elogs[1 - ev]) == set(range(PARTITIONS))
        took = re.findall(
            r"assigned \(changelog: (\d+) call\(s\), (\d+) closed\)",
            elogs[1 - ev].read_text(errors="replace"),
        )
        assert any(int(n) > int(c) for n, c in took), took
        # calls the survivor kept open through a rebalance (re-read from their start)
        kept_open = sum(
            int(n)
            for n in re.findall(r"revoked \((\d+) open", elogs[1 - ev].read_text(errors="replace"))
        )
        outs: dict[int, dict[str, Any]] = {}
        for i, p in enumerate(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                outs[i] = json.loads(p.communicate(timeout=60)[0].strip().splitlines()[-1])
                assert p.returncode == 0, (wlogs + elogs)[i].read_text()[-3000:]
    finally:
        for p in [*procs, *([ingest] if ingest else [])]:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        server.shutdown()
    elapsed = time.monotonic() - t_start

    # exactly one of each event after de-duplication by id; a duplicate is the same event
    by_id: dict[str, Event] = {}
    for e in events:
        by_id.setdefault(e.event_id, e)
        assert by_id[e.event_id].payload == e.payload
    raw_dups = len(events) - len(by_id)
    cards: dict[str, list[dict[str, Any]]] = defaultdict(list)
    findings: dict[str, list[dict[str, Any]]] = defaultdict(list)
    alerts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in by_id.values():
        {"scorecard": cards, "finding": findings, "alert": alerts}[e.kind.value][e.call_id].append(
            e.payload
        )
    assert {c: len(v) for c, v in cards.items()} == dict.fromkeys(expected, 1), "one card each"
    earlier = 0
    for call, want in expected.items():
        got = cards[call][0]
        assert got["complete"] is True, got["incomplete_reasons"]
        g, g_at = _card(got)
        w, w_at = _card(want)
        assert g == w, f"{call}: the chain's scorecard differs from the in-process one"
        for a, b in zip(g_at, w_at, strict=True):  # clock rules: decided on the watermarks
            if a is None or b is None:
                assert a is None and b is None, (call, a, b)
                continue
            assert a <= b + 1e-9, (call, a, b)
            earlier += a < b - 1e-9
        # the findings and alerts emitted: the scorecard's findings, each once
        key = lambda f: json.dumps({k: v for k, v in f.items() if k != "decided_at"})  # noqa: E731
        assert sorted(map(key, findings[call])) == sorted(map(key, want["findings"])), call
        assert sorted(map(key, alerts[call])) == sorted(map(key, crit[call])), call
        # the counters: the same, and the evaluator's own (utterances fed, ASR losses)
        g_x, w_x = dict(got["extras"]), dict(want["extras"])
        assert g_x.pop("asr_dropped") == 0
        assert g_x.pop("utterances") == utterances_of[call]
        assert g_x == w_x, call

    # the webhook: one notification per critical finding after de-duplication by event id
    # (which the docs ask of receivers); a second post of one is possible only if the
    # evaluator died between its sinks' flush and the changelog's acknowledgement
    notified = [h for h in hooks if h["type"] == "critical_finding"]
    per_id = Counter(h["event"]["event_id"] for h in notified)
    alert_ids = {e.event_id for e in by_id.values() if e.kind.value == "alert"}
    assert set(per_id) == alert_ids and len(alert_ids) == n_crit
    hook_dups = sum(n - 1 for n in per_id.values())
    assert max(per_id.values()) <= 2, per_id
    print(  # noqa: T201 - the figures of the run, for the report
        f"\nchain: {len(expected)} calls, {summary['segments']} segments -> {len(utt_keys)} "
        f"utterance messages ({asr_dups} re-decoded), {len(events)} events "
        f"read ({raw_dups} raw duplicate(s)), {n_crit} critical findings -> {len(notified)} "
        f"webhook posts ({hook_dups} duplicate(s)), {earlier} clock finding(s) decided "
        f"earlier, {kills} kills and the broker stop at "
        f"{', '.join(f'{t:.1f}' for t in kill_at)} s of ingest ({kept_open} call(s) "
        f"open on the surviving evaluator through a rebalance), broker restart {restart_s:.1f} s, ingest {ingest_s:.1f} s, "
        f"total {elapsed:.1f} s; survivors {list(outs.values())}"
    )
