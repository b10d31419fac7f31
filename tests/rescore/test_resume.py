"""A killed and resumed run gives the same result as an uninterrupted one."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from .synth import changed_pack, fill_store, make_call

REPO = Path(__file__).resolve().parents[2]
N = 2500


def _cmd(store: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "qa_pipeline.rescore", "--store", str(store), "--out", str(out),
        "-q", *extra,
    ]  # fmt: skip


def _committed(store: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM results").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_killed_and_resumed_run_equals_uninterrupted(tmp_path: Path) -> None:
    rng = random.Random(5)
    calls = [
        make_call(i, rng, n_utts=16, agent_new=i % 9 == 0, agent_old=i % 13 == 0) for i in range(N)
    ]
    store_a = tmp_path / "a.sqlite"
    fill_store(store_a, calls)
    store_b = tmp_path / "b.sqlite"
    shutil.copy(store_a, store_b)
    pack = changed_pack(tmp_path)
    from qa_pipeline.rules import default_pack_path

    extra = ("--rules", str(pack), "--baseline", str(default_pack_path()), "--workers", "2")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    # uninterrupted
    ref = subprocess.run(
        _cmd(store_a, tmp_path / "ref", *extra), cwd=REPO, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert ref.returncode == 0, ref.stderr

    # killed (the whole process group, workers included) after some chunks are committed
    proc = subprocess.Popen(
        _cmd(store_b, tmp_path / "run", *extra), cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while _committed(store_b) < 300 and time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    done = _committed(store_b)
    assert 300 <= done < 2 * N, f"kill came too late ({done} results committed)"
    assert not (tmp_path / "run" / "results.jsonl").exists()

    # resumed
    res = subprocess.run(
        _cmd(store_b, tmp_path / "run", *extra, "--json"), cwd=REPO, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    import json

    summary = json.loads(res.stdout)
    assert summary["reused"] >= 300 // 2 and summary["calls"] == N

    for name in ("results.jsonl", "results.csv", "results.xlsx", "diff.jsonl", "report.html"):
        a = (tmp_path / "ref" / name).read_bytes()
        b = (tmp_path / "run" / name).read_bytes()
        assert a == b, f"{name} differs between the uninterrupted and the resumed run"
    diff = (tmp_path / "ref" / "diff.jsonl").read_text(encoding="utf-8")
    assert '"type":"rule","rule_id":"OVER-PROMISE"' in diff
