"""Helpers of the hostile-client suite: calls made of the real clips, a Twilio client
paced in real time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

# the live tests' clips and call builders (tests/ is on the path)
from live.conftest import ANSWER_CLIP as ANSWER_CLIP
from live.conftest import BAN_CLIP as BAN_CLIP
from live.conftest import clip8k as clip8k
from live.conftest import two_channel as two_channel

from qa_pipeline.sources.codec import ulaw_encode
from qa_pipeline.sources.twilio import TwilioSerializer
from qa_pipeline.testing import wait_for as wait_for

TOKEN = "hostile-suite-media-token"
FRAME = 160  # 20 ms at 8 kHz
CHARS = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工"
    "也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小"
    "物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形"
)


def ban_call_audio(speech_dir: Path) -> np.ndarray:
    """9 s, 8 kHz, 2 channels: the agent says the banned word at 0.3-4.5 s, the customer
    answers at 5 s (the real clips, read in place)."""
    return two_channel(
        [(0, 0.3, clip8k(speech_dir, BAN_CLIP)), (1, 5.0, clip8k(speech_dir, ANSWER_CLIP))], 9.0
    )


async def send_twilio_call(
    url: str,
    call_id: str,
    audio: np.ndarray,
    *,
    speed: float | None,
    token: str = TOKEN,
    agent_id: str = "7",
    step_s: float = 0.02,
) -> tuple[int | None, str]:
    """Stream a 2-channel 8 kHz call as Twilio media at ``speed`` x real time (None: as
    fast as the socket takes it), timestamps ``step_s`` apart per 20 ms frame, then
    ``stop``. Returns the close code and reason the service sent."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    ser = TwilioSerializer(f"MZ{call_id}", f"CA{call_id}")
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    try:
        await ws.send(ser.connected())
        await ws.send(ser.start({"call_id": call_id, "agent_id": agent_id}))
        agent, customer = ulaw_encode(audio[0]), ulaw_encode(audio[1])
        t0 = time.monotonic()
        for k, i in enumerate(range(0, audio.shape[1] - FRAME + 1, FRAME)):
            ts = int(k * step_s * 1000)
            await ws.send(ser.media("outbound", ts, agent[i : i + FRAME]))
            await ws.send(ser.media("inbound", ts, customer[i : i + FRAME]))
            if speed is not None:
                delay = t0 + (k + 1) * 0.02 / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif k % 25 == 0:
                await asyncio.sleep(0)
        await ws.send(ser.stop())
        await asyncio.wait_for(ws.wait_closed(), 30)
    except ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason or ""
