"""What tests and benchmarks share: synthetic calls, one recording sink, one fake decoder,
and a harness that drives one stage in-process (``run_stage``).

Importable without pytest, so ``benchmarks/`` use the same pieces as ``tests/``.
"""

from __future__ import annotations

from .calls import Turn, default_company, make_call, make_calls, transcript
from .decoder import FakeDecoder, TextFor
from .harness import run_stage, wait_for
from .recorder import Recorder

__all__ = [
    "FakeDecoder",
    "Recorder",
    "TextFor",
    "Turn",
    "default_company",
    "make_call",
    "make_calls",
    "run_stage",
    "transcript",
    "wait_for",
]
