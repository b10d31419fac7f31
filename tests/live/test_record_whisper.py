"""(slow, heavy) ``live.record`` with the real model: a generated call where the customer
reads a mobile number is replayed into the live service with recording on; the kept file
has the number's words beeped (placed by word timing on the ASR slot, not the whole turn)
and plain faster-whisper decoding the kept file again recovers no run of four digits of
the number, while the same window of the call as sent still gives them (the check can
fail). The fast sibling without a model is ``test_record.py``."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from qa_pipeline.audio import load_call
from qa_pipeline.testing import Recorder, wait_for

TOOLS_MISSING = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.heavy,
    pytest.mark.skipif(
        bool(TOOLS_MISSING),
        reason=f"{' and '.join(TOOLS_MISSING)} not installed (apt-get install -y espeak-ng sox)",
    ),
]


def test_serve_keeps_the_recording_with_the_number_beeped(engine: Any, tmp_path: Path) -> None:
    from privacy.test_audio_redact_call import _make_call, _plain, _runs_of_four
    from prometheus_client import CollectorRegistry

    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.live.service import LiveService
    from qa_pipeline.sinks import FanOut

    src = tmp_path / "call-number.wav"
    lo, hi = _make_call(src, 16000)
    cfg = load_serve_config(
        None,
        {
            "sources": [{"type": "replay", "files": [str(src)], "speed": 8.0}],
            "live": {"beam_size": 5, "record": {"enabled": True, "dir": str(tmp_path / "rec")}},
            "retention": {"interval_s": None},
        },
    )
    mem = Recorder()
    svc = LiveService(
        cfg,
        engine=engine,
        sinks=FanOut([("memory", mem)]),
        metrics=LiveMetrics(CollectorRegistry()),
    )

    async def run() -> None:
        await svc.start()
        await asyncio.wait_for(svc.sources[0].done.wait(), 120)
        await wait_for(lambda: svc.recordings, 120)
        await svc.shutdown()

    asyncio.run(run())
    (kept,) = svc.recordings
    said = [
        e.payload
        for _, e in mem.of("utterance", kept.call_id)
        if e.payload["channel"] == 1 and e.payload["start"] < hi and e.payload["end"] > lo
    ]
    # the premise: the live decode heard a mobile number there (masked in its text)
    assert any(x["kind"] == "mobile" for u in said for x in u.get("entities") or ()), said
    assert kept.how == "words" and {s.channel for s in kept.spans} == {1}, kept
    (u,) = said
    assert all(s.start > u["start"] + 1.0 for s in kept.spans), kept  # not 我的手机号是

    sent, red = load_call(src), load_call(kept.path)
    assert sf.info(str(kept.path)).channels == 2
    assert red.duration == pytest.approx(sent.duration, abs=0.03)
    window = slice(round((lo - 0.5) * 16000), round((hi + 0.5) * 16000))
    heard_before = _plain(engine, sent.channels[1][window])
    assert _runs_of_four(heard_before), heard_before
    heard = _plain(engine, red.channels[1][window])
    assert _runs_of_four(heard) == [], heard
    assert np.array_equal(
        sf.read(str(kept.path), dtype="int16")[0][:, 0], sf.read(str(src), dtype="int16")[0][:, 0]
    )  # the agent's leg as sent
    print(f"kept {kept.path.name}: {len(kept.spans)} span(s); redacted heard as {heard!r}")
