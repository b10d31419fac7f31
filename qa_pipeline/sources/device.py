"""A local audio input via pyaudio (optional: ``pip install pyaudio``), for a desk or a demo.

The whole session is one call (``device-<time>``); a mono device is one ``agent`` channel,
a stereo one agent + customer. pyaudio calls back on its own thread: the callback only
copies the bytes and hands them to the event loop with
:func:`asyncio.run_coroutine_threadsafe`; decoding and everything after run on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

import numpy as np

from ..messages import AudioChunk, CallInfo, Role
from .base import CallHandler, EndReason
from .codec import slin16_decode

log = logging.getLogger("qa_pipeline.sources.device")

INSTALL_HINT = (
    "the device source needs pyaudio (and the PortAudio library): "
    "apt-get install portaudio19-dev && pip install pyaudio==0.2.14"
)


def import_pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return pyaudio


class DeviceSource:
    """Captures one call from a local input device."""

    def __init__(
        self,
        *,
        name: str = "device",
        device: str | None = None,
        sample_rate: int = 16000,
        channels: int = 1,
        chunk_ms: int = 20,
        pyaudio_module: Any = None,
    ) -> None:
        self.name = name
        self.device = device
        self.rate = sample_rate
        self.channels = channels
        self.frames_per_buffer = sample_rate * chunk_ms // 1000
        self._pa_mod = pyaudio_module
        self._pa: Any = None
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handler: CallHandler | None = None
        self.call_id = ""
        self._pos = 0
        self._ended = False
        self.roles: tuple[Role, ...] = (
            (Role.AGENT,) if channels == 1 else (Role.AGENT, Role.CUSTOMER)
        )

    def _device_index(self) -> int | None:
        if self.device is None or self.device == "default":
            return None
        if self.device.isdigit():
            return int(self.device)
        for i in range(self._pa.get_device_count()):
            info = self._pa.get_device_info_by_index(i)
            if self.device in str(info.get("name", "")) and info.get("maxInputChannels", 0) > 0:
                return i
        raise ValueError(f"no input device matching {self.device!r}")

    async def start(self, handler: CallHandler) -> None:
        pa_mod = self._pa_mod or import_pyaudio()
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        self._pa = pa_mod.PyAudio()
        self.call_id = f"device-{datetime.now():%Y%m%d-%H%M%S}"
        info = CallInfo(
            call_id=self.call_id, started_at=datetime.now(), channels=self.roles, source=self.name
        )
        if not handler.call_started(info, self.rate, source=self.name):
            return
        self._t0 = time.monotonic()
        self._stream = self._pa.open(
            format=pa_mod.paInt16,
            channels=self.channels,
            rate=self.rate,
            input=True,
            input_device_index=self._device_index(),
            frames_per_buffer=self.frames_per_buffer,
            stream_callback=self._callback,
        )
        self._stream.start_stream()

    def _callback(
        self, in_data: bytes | None, frame_count: int, time_info: Any, status: int
    ) -> tuple[None, int]:
        """pyaudio's thread: hand the bytes to the loop, nothing else."""
        loop = self._loop
        if loop is not None and in_data and not self._ended:
            asyncio.run_coroutine_threadsafe(self._deliver(bytes(in_data)), loop)
        return (None, 0)  # paContinue

    async def _deliver(self, data: bytes) -> None:
        if self._ended or self._handler is None:
            return
        samples = slin16_decode(data)
        frames = samples.reshape(-1, self.channels)
        start = self._pos / self.rate
        self._pos += len(frames)
        for ch in range(self.channels):
            self._handler.audio(
                AudioChunk(
                    self.call_id,
                    ch,
                    self.roles[ch],
                    start,
                    self.rate,
                    np.ascontiguousarray(frames[:, ch]),
                )
            )

    async def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop_stream()
            self._stream.close()
        if self._pa is not None:
            self._pa.terminate()
        if not self._ended and self._handler is not None and self.call_id:
            self._ended = True
            self._handler.call_ended(self.call_id, EndReason.SHUTDOWN)
