"""Synthetic sample calls with known turn timing (espeak-ng Mandarin + sox).

``qa-pipeline samples`` renders every scenario of ``scenarios.yaml`` into a dual-channel
8 kHz WAV (channel 0 = agent, channel 1 = customer) and a JSON sidecar with the real
turn times and the verdicts the rules are expected to reach.
"""

from __future__ import annotations

from .generate import (
    GENERATOR_VERSION,
    SampleError,
    Scenario,
    Turn,
    generate_call,
    generate_samples,
    load_scenarios,
)

__all__ = [
    "GENERATOR_VERSION",
    "SampleError",
    "Scenario",
    "Turn",
    "generate_call",
    "generate_samples",
    "load_scenarios",
]
