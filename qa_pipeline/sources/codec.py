"""Audio codecs of the telephony wire formats: the one place bytes become float32."""

from __future__ import annotations

import numpy as np

from ..messages import Samples


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    values = np.where(sign != 0, -magnitude, magnitude)
    return (values / 32768.0).astype(np.float32)


_ULAW = _ulaw_table()


def ulaw_decode(data: bytes) -> Samples:
    """G.711 μ-law bytes -> float32 in [-1, 1]."""
    return _ULAW[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(samples: Samples) -> bytes:
    """float32 -> G.711 μ-law bytes (for test clients and the benchmark)."""
    pcm = np.clip(np.asarray(samples, dtype=np.float64) * 32768.0, -32635, 32635).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    mag = np.abs(pcm) + 0x84
    exponent = np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    out = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return out.astype(np.uint8).tobytes()


def slin16_decode(data: bytes) -> Samples:
    """16-bit signed little-endian PCM -> float32. An odd trailing byte is an error."""
    if len(data) % 2:
        raise ValueError(f"16-bit PCM payload has an odd length ({len(data)} bytes)")
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def slin16_encode(samples: Samples) -> bytes:
    return (np.clip(np.asarray(samples), -1.0, 32767 / 32768) * 32768.0).astype("<i2").tobytes()
