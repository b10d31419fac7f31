"""What a stored transcript is keyed by: the settings that produced it and its content
hash; the JSON text forms the store writes (backend-independent, no database here)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..asr.config import AsrConfig
from ..audio import AudioConfig
from ..config import PipelineConfig


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: equal data gives equal text (and hash)."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def compact_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def asr_settings(config: AsrConfig) -> dict[str, object]:
    """``AsrEngine(config).settings`` computed without loading the model.

    The model's identity comes from the configuration: the embedded model's published
    checksum (``EMBEDDED_SHA256``), or a custom directory's path (checked, not loaded).
    """
    from ..asr.engine import decode_settings, pick_device
    from ..asr.model import EMBEDDED_NAME, EMBEDDED_SHA256, resolve_model

    if config.model in (EMBEDDED_NAME, "embedded"):
        name: str = EMBEDDED_NAME
        sha: str | None = EMBEDDED_SHA256
    else:
        info = resolve_model(config.model, config.cache_dir)  # a directory: checks, no load
        name, sha = info.name, info.sha256
    compute = config.compute_type
    if compute == "default":
        compute = "float16" if pick_device(config.device) == "cuda" else "int8"
    return {
        "model": name,
        "model_sha256": sha,
        "compute_type": compute,
        **decode_settings(config),
    }


def transcript_settings(
    config: PipelineConfig, engine_settings: dict[str, object] | None = None
) -> dict[str, Any]:
    """Everything that determines a recording's transcript: ASR settings (from the config,
    or a loaded engine's ``settings``), VAD settings and channel roles."""
    out: dict[str, Any] = {
        "asr": engine_settings if engine_settings is not None else asr_settings(config.asr),
        "vad": config.vad.model_dump(mode="json"),
        "channels": [r.value for r in config.audio.channels],
    }
    a, d = config.audio, AudioConfig()
    if (a.mono_roles, a.mono_split_ms) != (d.mono_roles, d.mono_split_ms):
        # mono calls are cut differently; the default adds nothing, so transcripts stored
        # before roles were inferred are still found (they carry no 'roles' field)
        out["mono"] = [a.mono_roles, a.mono_split_ms]
    return out


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(settings).encode()).hexdigest()[:20]


def doc_key(doc: dict[str, Any]) -> str:
    """Cache key of a transcript that has no audio here (imported document)."""
    return "doc:" + hashlib.sha256(canonical_json(doc).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredCall:
    call_id: str
    audio_sha256: str
    settings_hash: str

    @property
    def transcript_key(self) -> str:
        return f"{self.audio_sha256}:{self.settings_hash}"
