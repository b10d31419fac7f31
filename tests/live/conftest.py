"""Helpers for the live-service tests: calls made of the real clips (the in-memory sink
is ``qa_pipeline.testing.Recorder``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PACK = """\
name: live-test
version: "1"
rules:
  - id: LIVE-BAN
    description: 坐席不说“交易”（测试规则）
    severity: critical
    weight: 20
    scope: {role: agent}
    forbid: {keyword: [交易]}
"""

# A banned word said early by the agent; the customer answers.
BAN_CLIP = "zh/aishell1_BAC009S0764W0121.wav"  # 甚至出现交易几乎停滞的情况 (4.2 s)
ANSWER_CLIP = "zh/aishell2_IT0011W0001.wav"  # 换一首歌 (2 s)


def clip8k(speech_dir: Path, name: str) -> np.ndarray:
    import soxr

    from qa_pipeline.audio import load_call

    a = load_call(speech_dir / name).channels[0]
    return soxr.resample(a, 16000, 8000).astype(np.float32)


def two_channel(
    placements: list[tuple[int, float, np.ndarray]], seconds: float, rate: int = 8000
) -> np.ndarray:
    rng = np.random.default_rng(3)
    out = (rng.standard_normal((2, int(seconds * rate))) * 1e-3).astype(np.float32)
    for ch, t, a in placements:
        i = int(t * rate)
        out[ch, i : i + len(a)] += a[: out.shape[1] - i]
    return np.clip(out, -1, 1)


@pytest.fixture(scope="session")
def ban_call(speech_dir: Path) -> np.ndarray:
    """9 s: agent says the banned word at 0.3-4.5 s, customer answers at 5 s."""
    return two_channel(
        [(0, 0.3, clip8k(speech_dir, BAN_CLIP)), (1, 5.0, clip8k(speech_dir, ANSWER_CLIP))], 9.0
    )


@pytest.fixture()
def pack_path(tmp_path: Path) -> Path:
    p = tmp_path / "pack.yaml"
    p.write_text(PACK, encoding="utf-8")
    return p
