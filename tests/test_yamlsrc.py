"""One YAML loader with line numbers for every file the project reads (config, rule packs,
fixtures, notify config), and one way of reporting a validation error at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

import qa_pipeline.config as config_module
from qa_pipeline.config import load_config
from qa_pipeline.errors import ConfigError
from qa_pipeline.notify.config import load_notify_config
from qa_pipeline.rules import load_pack


def _problems(fn: object, *args: object, **kw: object) -> list[tuple[int, str]]:
    with pytest.raises(ConfigError) as e:
        fn(*args, **kw)  # type: ignore[operator]
    return [(loc.line, msg) for loc, msg in e.value.problems]


def test_config_and_rule_pack_report_a_duplicate_key_alike(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("asr:\n  beam_size: 1\n  beam_size: 2\n")
    pack = tmp_path / "p.yaml"
    pack.write_text("pack: {name: p, version: '1'}\nrules: []\nrules: []\n")
    assert _problems(load_config, cfg) == [(3, "duplicate key 'beam_size' (first at line 2)")]
    assert _problems(load_pack, pack) == [(3, "duplicate key 'rules' (first at line 2)")]


def test_config_has_no_line_table_keyed_by_object_ids() -> None:
    assert not hasattr(config_module, "_LINES")


def test_overrides_keep_the_lines_of_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("vad:\n  aggressiveness: 2\nasr:\n  beam_size: -3\n")
    got = _problems(load_config, f, overrides={"vad": {"aggressiveness": 2}})
    assert [line for line, _ in got] == [4] and got[0][1].startswith("asr.beam_size: ")


def test_config_reports_an_unknown_key_and_a_times_stays_text(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("asr:\n  language: zh\n  colour: 07:30\n")
    assert _problems(load_config, f) == [(3, "asr.colour: unknown key")]


def test_notify_config_errors_name_the_line_inside_the_section(tmp_path: Path) -> None:
    f = tmp_path / "n.yaml"
    f.write_text("notify:\n  queue_max: 10\n  retry:\n    wat: 1\n")
    assert _problems(load_notify_config, f) == [(4, "notify.retry.wat: unknown key")]
