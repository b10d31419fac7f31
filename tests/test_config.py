from pathlib import Path

import pytest

from qa_pipeline.config import load_config
from qa_pipeline.errors import ConfigError
from qa_pipeline.messages import Role


def test_defaults() -> None:
    cfg = load_config()
    assert cfg.asr.model == "embedded:whisper-base"
    assert cfg.asr.language == "zh"
    assert cfg.audio.channels == (Role.AGENT, Role.CUSTOMER)


def test_repo_default_config_is_valid() -> None:
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
    assert cfg == load_config()


def _problems(f: Path, text: str) -> list[tuple[int, str]]:
    """Load ``text`` from file ``f``: every problem reported, as (line, message)."""
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert str(f) in str(e.value)
    return [(loc.line, m) for loc, m in e.value.problems]


def test_every_error_reported_with_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    msgs = _problems(f, "asr:\n  beam_size: 0\n  colour: blue\nvad:\n  aggressiveness: 9\n")
    assert len(msgs) == 3
    assert any(line == 2 and "beam_size" in m for line, m in msgs)
    assert any(line == 3 and "colour" in m for line, m in msgs)
    assert any(line == 5 and "aggressiveness" in m for line, m in msgs)


def test_duplicate_key_rejected(tmp_path: Path) -> None:
    f = tmp_path / "dup.yaml"
    f.write_text("asr:\n  beam_size: 1\n  beam_size: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'beam_size'") as e:
        load_config(f)
    assert e.value.problems[0][0].line == 3


def test_unbounded_fallback_rejected(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("asr:\n  temperatures: [0.0, 0.2, 0.4, 0.6, 0.8]\n")
    with pytest.raises(ConfigError, match="temperatures"):
        load_config(f)


def test_not_yaml(tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_text("asr: [unclosed\n")
    with pytest.raises(ConfigError, match=r"x\.yaml:\d"):
        load_config(f)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_asr_window_options(tmp_path: Path) -> None:
    # recorded calls default to the project's decode in a 30 s window (issue #13: shorter
    # windows lost accuracy on an AMX CPU's int8 kernels)
    assert (load_config().asr.window, load_config().asr.min_window_seconds) == ("fitted", 30.0)
    cfg = load_config(overrides={"asr": {"window": "fitted", "min_window_seconds": 20}})
    assert cfg.asr.window == "fitted" and cfg.asr.min_window_seconds == 20.0
    assert load_config(overrides={"asr": {"window": "full"}}).asr.window == "full"
    msgs = _problems(tmp_path / "w.yaml", "asr:\n  window: tight\n  min_window_seconds: 45\n")
    assert len(msgs) == 2
    assert any(line == 2 and "asr.window" in m and "'fitted'" in m for line, m in msgs)
    assert any(line == 3 and "min_window_seconds" in m and "30" in m for line, m in msgs)
    for bad in (0, -5, "long"):
        with pytest.raises(ConfigError, match="min_window_seconds"):
            load_config(overrides={"asr": {"min_window_seconds": bad}})
