from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from qa_pipeline.metrics import PipelineMetrics
from qa_pipeline.sinks import Spool, SpoolError


def _rec(i: int, size: int = 10) -> tuple[str, str, bytes]:
    return ("finding", f"call-{i % 3}", str(i).encode().ljust(size, b"."))


def test_ordered_peek_ack_and_persistence(tmp_path: Path) -> None:
    sp = Spool(tmp_path, sync="normal")
    for i in range(10):
        assert sp.append(*_rec(i))
    assert len(sp) == 10
    batch = sp.peek(4)
    assert [int(r.value.rstrip(b".")) for r in batch] == [0, 1, 2, 3]
    assert sp.ack(batch[-1].id) == 4
    assert len(sp) == 6 and sp.size_bytes == sum(r.size for r in sp.peek(100))
    sp.close()
    sp = Spool(tmp_path, sync="normal")  # reopen: same content, same order
    rest = sp.peek(100)
    assert [int(r.value.rstrip(b".")) for r in rest] == list(range(4, 10))
    sp.append(*_rec(10))
    assert sp.peek(100)[-1].id > rest[-1].id  # ids never reused
    sp.close()


def test_drop_oldest_is_bounded_and_counted(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    m = PipelineMetrics(reg)
    sp = Spool(tmp_path, max_events=5, overflow="drop_oldest", observer=m, name="k")
    for i in range(8):
        sp.append(*_rec(i))
    assert [int(r.value.rstrip(b".")) for r in sp.peek(100)] == [3, 4, 5, 6, 7]
    assert sp.dropped == {"overflow_drop_oldest": 3}
    assert (
        reg.get_sample_value(
            "qa_events_dropped_total", {"sink": "k", "reason": "overflow_drop_oldest"}
        )
        == 3
    )
    assert reg.get_sample_value("qa_spool_events", {"sink": "k"}) == 5
    assert reg.get_sample_value("qa_spool_bytes", {"sink": "k"}) == sp.size_bytes
    sp.close()


def test_reject_new_and_byte_bound(tmp_path: Path) -> None:
    sp = Spool(tmp_path, max_events=100, max_bytes=100, overflow="reject_new")
    kept = [sp.append(*_rec(i, size=25)) for i in range(5)]  # 25 + 6 bytes each
    assert kept == [True, True, True, False, False]
    assert sp.size_bytes <= 100 and len(sp) == 3
    assert sp.dropped == {"overflow_reject_new": 2}
    assert not sp.append("finding", "c", b"x" * 200)  # bigger than the spool
    sp.close()


def test_drop_oldest_by_bytes_and_too_large(tmp_path: Path) -> None:
    sp = Spool(tmp_path, max_events=100, max_bytes=100, overflow="drop_oldest")
    for i in range(5):
        sp.append(*_rec(i, size=25))
    assert len(sp) == 3 and sp.size_bytes <= 100
    assert [int(r.value.rstrip(b".")) for r in sp.peek(10)] == [2, 3, 4]
    assert not sp.append("finding", "c", b"x" * 200)
    assert sp.dropped == {"overflow_drop_oldest": 2, "too_large": 1}
    assert sp.append_many([_rec(i, size=25) for i in range(10, 15)]) == 3
    assert [int(r.value.rstrip(b".")) for r in sp.peek(10)] == [12, 13, 14]
    sp.close()


def test_one_owner_per_directory(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    with pytest.raises(SpoolError, match="in use"):
        Spool(tmp_path)
    sp.close()
    Spool(tmp_path).close()


WRITER = textwrap.dedent(
    """
    import sys
    from qa_pipeline.sinks.spool import Spool
    sp = Spool(sys.argv[1], sync=sys.argv[2])
    i = 0
    while True:
        sp.append("utterance", "call-%d" % (i % 4), b"event-%08d" % i)
        print(i, flush=True)  # printed only after the commit returned
        i += 1
    """
)


@pytest.mark.parametrize("sync", ["full", "normal"])
def test_survives_sigkill_mid_write(tmp_path: Path, sync: str) -> None:
    """A writer killed with SIGKILL loses nothing it had committed, and order is kept."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), sync],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    committed = -1
    deadline = time.monotonic() + 30
    while committed < 300 and time.monotonic() < deadline:
        committed = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for line in proc.stdout:  # commits acknowledged before the kill landed
        committed = int(line)
    assert committed >= 300
    sp = Spool(tmp_path)  # the lock died with the process
    values = [r.value for r in sp.peek(1_000_000)]
    assert len(values) >= committed + 1
    assert values[: committed + 1] == [b"event-%08d" % i for i in range(committed + 1)]
    assert len(sp) == len(values)
    sp.close()
