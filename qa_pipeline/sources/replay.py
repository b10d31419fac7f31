"""File replay: recorded calls played into the service at ``speed`` x real time.

Each file is decoded once (:func:`qa_pipeline.audio.load_call`, 16 kHz per channel), its
metadata read from the sidecar JSON, and its channels sent in ``chunk_ms`` pieces paced on
the monotonic clock (no drift: each chunk waits for its own due time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from ..audio import load_call
from ..callinfo import read_call_info
from ..errors import QAError
from ..messages import AudioChunk, CallInfo, Role, Samples, replace
from .base import CallHandler, EndReason

log = logging.getLogger("qa_pipeline.sources.replay")


class ReplaySource:
    def __init__(
        self,
        files: Sequence[str | Path],
        *,
        name: str = "replay",
        speed: float = 1.0,
        chunk_ms: int = 20,
        loop: bool = False,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.name = name
        self.files = [Path(f) for f in files]
        self.speed = speed
        self.chunk_ms = chunk_ms
        self.loop = loop
        self._tasks: set[asyncio.Task[None]] = set()
        self.done = asyncio.Event()

    async def start(self, handler: CallHandler) -> None:
        for i, f in enumerate(self.files):
            t = asyncio.create_task(self._play(handler, f, i), name=f"replay-{f.name}")
            self._tasks.add(t)
            t.add_done_callback(self._finished)
        if not self.files:
            self.done.set()

    def _finished(self, t: asyncio.Task[None]) -> None:
        self._tasks.discard(t)
        if not self._tasks:
            self.done.set()

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def _play(self, h: CallHandler, path: Path, index: int) -> None:
        rnd = 0
        while True:
            try:
                audio = await asyncio.to_thread(load_call, path)
                info = read_call_info(path)
            except QAError as e:
                h.call_error(None, "bad_file", str(e), source=self.name)
                return
            if rnd:
                info = replace(info, call_id=f"{info.call_id}-{rnd}")
            info = _with_roles(info, audio.roles, self.name)
            if not h.call_started(info, audio.sample_rate, source=self.name):
                return
            reason = EndReason.EOF
            try:
                await self._pace(h, info.call_id, audio.channels, audio.roles, audio.sample_rate)
            except asyncio.CancelledError:
                reason = EndReason.SHUTDOWN
                raise
            finally:
                h.call_ended(info.call_id, reason)
            rnd += 1
            if not self.loop:
                return

    async def _pace(
        self,
        h: CallHandler,
        call_id: str,
        channels: tuple[Samples, ...],
        roles: tuple[Role, ...],
        rate: int,
    ) -> None:
        step = rate * self.chunk_ms // 1000
        n = len(channels[0]) if channels else 0
        t0 = time.monotonic()
        for i in range(0, n, step):
            due = t0 + (i / rate) / self.speed
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for ch, samples in enumerate(channels):
                h.audio(AudioChunk(call_id, ch, roles[ch], i / rate, rate, samples[i : i + step]))


def _with_roles(info: CallInfo, roles: tuple[Role, ...], source: str) -> CallInfo:
    return replace(info, channels=tuple(roles), source=info.source or source)
