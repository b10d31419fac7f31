"""Live audio sources: each turns a wire format on a transport into typed call events.

Wire formats (pure, no I/O) are kept apart from transports:

============================  ==========================  ==================================
source                        wire format                 transport
============================  ==========================  ==================================
Twilio Media Streams          :mod:`.twilio`              :mod:`.websocket` (``websockets``)
Asterisk AudioSocket          :mod:`.audiosocket` codec   :mod:`.audiosocket` asyncio TCP
local audio device            (PCM from pyaudio)          :mod:`.device` (pyaudio, optional)
file replay                   (any audio file)            :mod:`.replay` (real-time pacing)
============================  ==========================  ==================================

Every source reports to a :class:`~.base.CallHandler`: ``call_started`` (a
:class:`~qa_pipeline.messages.CallInfo` and the audio rate), ``audio``
(:class:`~qa_pipeline.messages.AudioChunk`, float32 at the source rate, call clock),
``call_error`` (a counted problem with that call only) and ``call_ended``. Codec decoding
(μ-law, 16-bit PCM) happens once, here at the edge (:mod:`.codec`); resampling happens once,
in the call session.
"""

from .base import CallHandler, EndReason, Source, SourceError

__all__ = ["CallHandler", "EndReason", "Source", "SourceError"]
