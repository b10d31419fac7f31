"""The live path against the recorded one: a side that hangs up is seen live as it is in a
recording, and (slow) a corpus call replayed live over the WebSocket source gets the
recorded path's verdicts."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa_pipeline.audio import channel_end
from qa_pipeline.config import VadConfig
from qa_pipeline.live.session import CallSession, ChannelInput
from qa_pipeline.messages import AudioChunk, CallInfo, Role, Utterance
from qa_pipeline.rules import load_pack
from qa_pipeline.verify import rule_hint

RATE = 8000
CHUNK = RATE // 50  # 20 ms


def _line(seconds: float, silent_from: float | None, seed: int) -> np.ndarray:
    """Line noise at -60 dBFS, digital silence from ``silent_from`` on (that side hung up)."""
    a = np.random.default_rng(seed).standard_normal(int(seconds * RATE)).astype(np.float32)
    a *= 10 ** (-60 / 20)
    if silent_from is not None:
        a[int(silent_from * RATE) :] = 0.0
    return a


def _feed(inp: ChannelInput | CallSession, channels: list[np.ndarray]) -> None:
    for i in range(0, len(channels[0]), CHUNK):
        for ch, a in enumerate(channels):
            inp.push(AudioChunk("c", ch, Role.UNKNOWN, i / RATE, RATE, a[i : i + CHUNK]))


@pytest.mark.parametrize("silent_from", [None, 7.7, 9.7])
def test_channel_end_live_is_the_recordings(silent_from: float | None) -> None:
    a = _line(10.0, silent_from, 1)
    inp = ChannelInput(VadConfig(), call_id="c", channel=0, role=Role.AGENT, sample_rate=RATE)
    _feed(inp, [a])
    assert inp.end == pytest.approx(channel_end(a, RATE), abs=1e-6)
    assert inp.end == pytest.approx(10.0 if silent_from in (None, 9.7) else silent_from, abs=1e-3)


def test_agent_hanging_up_first_is_seen_live() -> None:
    """CLOSE-HANGUP: the agent's side goes digitally silent 2 s before the customer's (a
    line whose audio goes on after a hang-up); live it used to see both sides end together."""
    pack = load_pack(settings={"company_name": "华夏"})
    verdicts = {}
    for agent_silent in (None, 8.0):
        cards: list[Any] = []
        s = CallSession(
            CallInfo("c", channels=(Role.AGENT, Role.CUSTOMER)),
            RATE,
            vad=VadConfig(),
            pack=pack,
            emit=cards.append,
            metrics=_NoMetrics(),
            source="test",
        )
        _feed(s, [_line(10.0, agent_silent, 1), _line(10.0, None, 2)])
        assert s.flush() == []  # line noise only: nothing for the ASR
        # (a rule pack judges no call without speech: one utterance, as the ASR gives it)
        s.evaluator.feed(Utterance("c", 0, 1, Role.CUSTOMER, 1.0, 2.0, "你好", "你好"))
        card = s.end()
        assert card.extras and dict(card.extras)["audio_seconds"] == 10.0
        verdicts[agent_silent] = {v.rule_id: v.verdict.value for v in card.verdicts}
    assert verdicts[None]["CLOSE-HANGUP"] == "passed"
    assert verdicts[8.0]["CLOSE-HANGUP"] == "failed"


def test_live_decodes_in_the_recorded_paths_timestamp_mode(engine: Any) -> None:
    """Recorded calls decode in Whisper's timestamp mode (``asr.timestamps``, measured lower
    CER); the live fitted window ignored it (shared clips, beam 1: CER 0.309, 0.276 with it)."""
    from qa_pipeline.live.decoder import DecodeOptions, LiveDecoder

    assert engine.config.timestamps
    for ts in (True, False):
        eng = engine.with_options(timestamps=ts)
        d = LiveDecoder(eng, DecodeOptions())
        assert d._fitted_decoder().opts.timestamps is ts
        assert eng._fitted is not None and eng._fitted.opts.timestamps is ts  # recorded


REPO = Path(__file__).resolve().parents[2]
TOOLS_MISSING = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
# a seed-1 corpus call (the development seed, not the one figures are reported on): 52 s,
# 8 kHz, babble on the agent's line, the agent hangs up first
PARITY_CALL = "corpus-1-029"


@pytest.mark.slow
@pytest.mark.skipif(bool(TOOLS_MISSING), reason=f"{' and '.join(TOOLS_MISSING)} not installed")
def test_corpus_call_replayed_live_gets_the_recorded_verdicts(engine: Any, tmp_path: Path) -> None:
    """The call streamed in real time as a Twilio line (μ-law 8 kHz, its metadata as stream
    parameters) into ``serve``'s default mode, and scored from the file by ``Pipeline``,
    both with the verification of required phrases (``asr.verify``, on by default)."""
    from qa_pipeline.samples import corpus as cp

    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_live

    (path,) = cp.generate_corpus(tmp_path, cp.DEFAULT_CALLS, cp.DEFAULT_SEED, ids=[PARITY_CALL])
    side = cp.read_sidecar(path)
    # both paths verify required phrases they missed (asr.verify: live at the call's end)
    recorded = bench_live.recorded_results(engine, [path], None)[path.stem]
    live, stats = asyncio.run(
        asyncio.wait_for(bench_live.live_results(engine, [path], 1, 1.0), 300)
    )
    assert stats["errors"] == 0 and not stats["dropped"]
    got, want = live[path.stem][0], recorded[0]
    differ = {r: (want[r], got.get(r)) for r in want if got.get(r) != want[r]}
    print(f"{len(want) - len(differ)}/{len(want)} verdicts as recorded; differ: {differ}")
    assert got["CLOSE-HANGUP"] == want["CLOSE-HANGUP"] == side["expected"]["CLOSE-HANGUP"]
    # without verification the two agree on every verdict; with it they may differ on the
    # rules it can change (required phrases) and nowhere else: it decodes the turns each
    # path heard (live: beam 1, utterances not joined into turns), so it is given other
    # audio cuts and other texts to beat. Measured on this call: live passes CONFIRM-SAT
    # (right) and leaves OPEN-GREET uncertain where recorded passes it
    pack = load_pack(settings={"company_name": side["company"]})
    verifiable = {r.id for r in pack.rules if rule_hint(pack, r.id) is not None}
    assert set(differ) <= verifiable, differ
    # and live gets as many verdicts right against the labels as recorded, give or take
    # one (one of 32 is 3 points; the parity target is 2 points over the whole corpus)
    labels = side["expected"]

    def right(verdicts: dict[str, str]) -> int:
        return sum(verdicts.get(r) == v for r, v in labels.items())

    print(f"right against the labels: live {right(got)}, recorded {right(want)} of {len(labels)}")
    assert right(got) >= right(want) - 1
    # and live verification lets no failure pass that the recorded path does not: its bar
    # is the best reading of the audio, not the live decoder's beam-1 one (that let 您好 in
    # for the 早上好 said in the afternoon: OPEN-TIME, labelled failed, passed live)
    wrongly = [r for r, v in labels.items() if v == "failed" and got[r] == "passed" != want[r]]
    assert not wrongly, wrongly


class _NoMetrics:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None
