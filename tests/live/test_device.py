"""The device source's thread -> event-loop handoff, with a fake pyaudio stream."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np

from qa_pipeline.sources.base import EndReason
from qa_pipeline.sources.device import INSTALL_HINT, DeviceSource, import_pyaudio
from qa_pipeline.testing import Recorder


class FakeStream:
    def __init__(self, callback: Any, frames: int) -> None:
        self.callback = callback
        self.frames = frames
        self.thread: threading.Thread | None = None
        self.running = False

    def start_stream(self) -> None:
        self.running = True

        def feed() -> None:  # pyaudio calls back on its own thread
            for i in range(5):
                pcm = (np.full(self.frames, i * 100, dtype="<i2")).tobytes()
                self.callback(pcm, self.frames, {}, 0)

        self.thread = threading.Thread(target=feed)
        self.thread.start()

    def stop_stream(self) -> None:
        assert self.thread is not None
        self.thread.join()

    def close(self) -> None:
        self.running = False


class FakePyAudio:
    paInt16 = 8

    class PyAudio:
        def open(self, **kw: Any) -> FakeStream:
            assert kw["input"] and kw["rate"] == 16000
            return FakeStream(kw["stream_callback"], kw["frames_per_buffer"])

        def terminate(self) -> None:
            pass


def test_callback_hands_audio_to_the_loop() -> None:
    rec = Recorder(strict=True)

    async def main() -> int:
        src = DeviceSource(pyaudio_module=FakePyAudio, chunk_ms=20)
        await src.start(rec)
        for _ in range(100):
            if len(rec.chunks) == 5:
                break
            await asyncio.sleep(0.01)
        await src.stop()
        return threading.get_ident()

    loop_ident = asyncio.run(main())
    assert rec.threads == {loop_ident}  # delivered on the loop, not pyaudio's thread
    assert [c.start for c in rec.chunks] == [0.0, 0.02, 0.04, 0.06, 0.08]
    assert abs(float(rec.chunks[1].samples[0]) - 100 / 32768) < 1e-6
    assert [r for _, r in rec.ended] == [EndReason.SHUTDOWN]


def test_missing_pyaudio_has_an_install_hint(monkeypatch: Any) -> None:
    import builtins

    real = builtins.__import__

    def fake(name: str, *a: Any, **k: Any) -> Any:
        if name == "pyaudio":
            raise ImportError("no pyaudio")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    try:
        import_pyaudio()
    except ImportError as e:
        assert str(e) == INSTALL_HINT
    else:
        raise AssertionError("expected ImportError")
