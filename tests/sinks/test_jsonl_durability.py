"""The JSONL sink keeps what it says it keeps: a line per event reaches the OS at once, a
killed writer loses nothing it emitted, a full disk or file-size limit drops events with a
reason (and the file stays whole lines), files rotate by size and by day."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from qa_pipeline.metrics import PipelineMetrics
from qa_pipeline.sinks import FanOut, JsonlSink, JsonlSinkConfig, events_for_call
from qa_pipeline.sinks import jsonl as jsonl_mod

ROOT = Path(__file__).resolve().parents[2]
CALLS_DIR = Path(__file__).parent / "data" / "calls"
LoadCall = Callable[[str], Any]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _run_child(code: str, timeout: float = 60) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def test_each_event_is_in_the_file_when_emit_returns(tmp_path: Path, call_data: LoadCall) -> None:
    t, findings, sc = call_data("call-001")
    sink = JsonlSink(JsonlSinkConfig(directory=str(tmp_path), layout="single"))
    try:
        for i, e in enumerate(events_for_call(t, findings, sc), 1):
            sink.emit(e)  # no flush: another reader sees the line already
            assert len(_lines(tmp_path / "events.jsonl")) == i
    finally:
        sink.close()


# A child process that emits events through a FanOut (JSONL + Kafka spool) under a file
# size limit (RLIMIT_FSIZE, SIGXFSZ ignored: writes past it fail with EFBIG) and reports
# its accounting and metrics as JSON.
_LIMITED = """
import json, resource, signal, sys
from pathlib import Path
from prometheus_client import CollectorRegistry
from qa_pipeline.metrics import PipelineMetrics
from qa_pipeline.sinks import FanOut, JsonlSink, JsonlSinkConfig, events_for_call
from qa_pipeline.sinks.kafka import KafkaSink, KafkaSinkConfig, SpoolConfig
from qa_pipeline.transcript import transcript_from_dict

out, limit, n_calls = Path(sys.argv[1] if len(sys.argv) > 1 else {out!r}), {limit}, {n}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
reg = CollectorRegistry()
m = PipelineMetrics(reg)
jsonl = JsonlSink(JsonlSinkConfig(directory=str(out / "events"), layout="single",
                                  fsync="never"), observer=m)
kafka = KafkaSink(KafkaSinkConfig(bootstrap_servers=("127.0.0.1:1",),
                  spool=SpoolConfig(directory=str(out / "spool"), sync="normal")),
                  m, start=False)
doc = json.loads(Path({call!r}).read_text(encoding="utf-8"))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
fan = FanOut([("jsonl", jsonl), ("kafka", kafka)], m)
for _ in range(n_calls):
    fan.emit_all(events_for_call(transcript_from_dict(doc)))
spooled = len(kafka.spool)
fan.close()
def metric(sink, reason):
    return reg.get_sample_value("qa_events_dropped_total", {{"sink": sink, "reason": reason}})
print(json.dumps({{"accepted": fan.accepted, "dropped": fan.dropped,
    "jsonl_written": jsonl.written, "jsonl_dropped": jsonl.dropped, "spooled": spooled,
    "metric": {{f"{{s}}/{{r}}": metric(s, r) for s, d in fan.dropped.items() for r in d}}}}))
"""


def test_file_size_limit_drops_with_reason_and_counts_add_up(tmp_path: Path) -> None:
    limit = 48 * 1024
    got = _run_child(
        _LIMITED.format(out=str(tmp_path), limit=limit, n=30, call=str(CALLS_DIR / "call-001.json"))
    )
    acc = got["accepted"]
    assert acc["jsonl"] == acc["kafka"] > 100
    # JSONL: every event written or dropped with its reason, never just "an error"
    dropped = got["dropped"]["jsonl"]
    assert set(dropped) == {"file_too_large"} and dropped["file_too_large"] > 0
    assert got["jsonl_written"] + dropped["file_too_large"] == acc["jsonl"]
    assert got["jsonl_dropped"] == dropped
    assert got["metric"]["jsonl/file_too_large"] == dropped["file_too_large"]
    # the file holds exactly the written events, as whole lines, under the limit
    f = tmp_path / "events" / "events.jsonl"
    assert f.stat().st_size <= limit
    assert len(_lines(f)) == got["jsonl_written"]
    # the Kafka spool cannot grow past the limit either: its losses are counted too
    k = got["dropped"]["kafka"]
    assert k and set(k) <= {"disk_full", "spool_error"}
    assert got["spooled"] + sum(k.values()) == acc["kafka"]
    assert all(got["metric"][f"kafka/{r}"] == v for r, v in k.items())


def test_full_disk_drops_with_reason(
    tmp_path: Path, call_data: LoadCall, caplog: pytest.LogCaptureFixture
) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    (tmp_path / "events.jsonl").symlink_to("/dev/full")  # every write: ENOSPC
    t, findings, sc = call_data("call-002")
    events = events_for_call(t, findings, sc)
    reg = CollectorRegistry()
    fan = FanOut([("jsonl", JsonlSink(JsonlSinkConfig(directory=str(tmp_path), layout="single")))],
                 PipelineMetrics(reg))  # fmt: skip
    with caplog.at_level("WARNING"):
        fan.emit_all(events)
    fan.close()
    assert fan.dropped["jsonl"] == {"disk_full": len(events)}
    got = reg.get_sample_value("qa_events_dropped_total", {"sink": "jsonl", "reason": "disk_full"})
    assert got == len(events)
    msgs = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(msgs) == 1 and "jsonl" in msgs[0] and "disk_full" in msgs[0]


_WRITER = """
import json, sys, time
from pathlib import Path
from qa_pipeline.sinks import JsonlSink, JsonlSinkConfig, events_for_call
from qa_pipeline.transcript import transcript_from_dict

doc = json.loads(Path({call!r}).read_text(encoding="utf-8"))
sink = JsonlSink(JsonlSinkConfig(directory={out!r}, layout="single"))
n = 0
while True:
    for e in events_for_call(transcript_from_dict(doc)):
        sink.emit(e)
        n += 1
    print(n, flush=True)
    time.sleep(0.01)
"""


def test_kill_9_loses_nothing_emitted(tmp_path: Path) -> None:
    """The default sink (fsync once a second) killed with SIGKILL: every event the writer
    had reported emitted is in the file, as whole lines, and the file was never empty for
    long (it grows while the writer runs)."""
    code = textwrap.dedent(_WRITER.format(call=str(CALLS_DIR / "call-001.json"), out=str(tmp_path)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    path = tmp_path / "events.jsonl"
    try:
        reported = 0
        deadline = time.monotonic() + 30
        while reported < 2000 and time.monotonic() < deadline:
            reported = int(proc.stdout.readline())
            if reported > 500:
                assert path.stat().st_size > 0  # lines reach the file while it runs
        assert reported >= 2000
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    lines = _lines(path)  # every line parses: no torn line
    assert len(lines) >= reported
    ids = [x["event_id"] for x in lines]
    assert len(set(ids)) == len(ids)  # each pass over the call is a new session


def test_fsync_policies(
    tmp_path: Path, call_data: LoadCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(jsonl_mod.os, "fsync", spy)
    t, findings, sc = call_data("call-001")
    events = events_for_call(t, findings, sc)

    def run(policy: str, wait: float) -> int:
        synced.clear()
        cfg = JsonlSinkConfig(
            directory=str(tmp_path / policy), layout="single", fsync=policy,  # type: ignore[arg-type]
            fsync_interval_s=0.1,
        )  # fmt: skip
        sink = JsonlSink(cfg)
        for e in events:
            sink.emit(e)
        time.sleep(wait)
        n = len(synced)
        sink.close()
        return n

    assert run("every_event", 0.0) == len(events)
    assert 1 <= run("interval", 0.5) <= 6  # the background thread, not once per event
    assert run("never", 0.3) == 0


def test_rotation_by_size_keeps_the_newest(tmp_path: Path, call_data: LoadCall) -> None:
    t, findings, sc = call_data("call-001")
    cfg = JsonlSinkConfig(
        directory=str(tmp_path), layout="single", rotate_max_bytes=4096, keep_rotated=3,
        fsync="never",
    )  # fmt: skip
    sink = JsonlSink(cfg)
    emitted = []
    for _ in range(8):
        for e in events_for_call(t, findings, sc):
            sink.emit(e)
            emitted.append(e.event_id)
    sink.close()
    rotated = sorted(p for p in tmp_path.iterdir() if p.name != "events.jsonl")
    assert sink.rotations > 3 and len(rotated) == 3
    today = datetime.now().date().isoformat()
    assert all(p.name.startswith(f"events.{today}.") for p in rotated)
    for p in [*rotated, tmp_path / "events.jsonl"]:
        assert 0 < p.stat().st_size <= 4096
    # what is kept is the newest events, in order, none lost between the files
    kept = [x["event_id"] for p in [*rotated, tmp_path / "events.jsonl"] for x in _lines(p)]
    assert kept == emitted[-len(kept) :]


def test_rotation_by_day(tmp_path: Path, call_data: LoadCall) -> None:
    t, findings, sc = call_data("call-002")
    events = events_for_call(t, findings, sc)
    old = tmp_path / "finding.jsonl"
    old.write_text(json.dumps({"old": 1}) + "\n")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    now = [datetime.now()]
    sink = JsonlSink(JsonlSinkConfig(directory=str(tmp_path), fsync="never"), clock=lambda: now[0])
    for e in events:
        sink.emit(e)
    then = datetime.fromtimestamp(two_days_ago).date().isoformat()
    assert _lines(tmp_path / f"finding.{then}.001.jsonl") == [{"old": 1}]
    now[0] += timedelta(days=1)  # midnight passes: each file rotates at its next write
    for e in events:
        sink.emit(e)
    sink.close()
    today = (now[0] - timedelta(days=1)).date().isoformat()
    for kind in ("utterance", "finding", "scorecard"):
        assert len(_lines(tmp_path / f"{kind}.{today}.001.jsonl")) == len(
            _lines(tmp_path / f"{kind}.jsonl")
        )
