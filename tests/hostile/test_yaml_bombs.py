"""YAML bombs and deep nesting in a serve config and in a rule pack: real ``qa-pipeline``
processes refuse them with one error line, in bounded time and memory. (Before the
loaders were bounded, the config bomb hung ``serve`` for more than 60 s and deep nesting
ended in a ``RecursionError`` traceback.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.hostile

REPO = Path(__file__).resolve().parents[2]


def billion_laughs(indent: str = "") -> str:
    """Nine anchors, each a list of nine aliases of the previous: 9**9 strings expanded."""
    lines = [f'{indent}a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{indent}{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines)


CASES = {
    "config-bomb": (
        "serve",
        billion_laughs() + "\nsources: [{type: websocket, port: 0, auth: none}]\n",
        "an alias bomb",
    ),
    "config-deep-lists": ("serve", "sources: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested"),
    "config-deep-maps": ("serve", "live: " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n", "nested"),
    "config-recursive": ("serve", "sources: &a [*a]\n", "an alias bomb"),
    "pack-bomb": (
        "rules",
        'name: x\nversion: "1"\nx:\n' + billion_laughs("  ") + "\nrules:\n"
        "  - {id: R1, description: d, forbid: {keyword: *i}}\n",
        "an alias bomb",
    ),
    "pack-deep": ("rules", "name: x\nrules: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_yaml_bomb_refused_in_one_line(case: str, tmp_path: Path) -> None:
    command, text, why = CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text, encoding="utf-8")
    if command == "serve":
        argv = ["serve", "-c", str(path)]
    else:
        cfg = tmp_path / "serve.yaml"  # the pack named by a serve config: refused at start
        cfg.write_text(
            "sources: [{type: websocket, port: 0, auth: none}]\n"
            f"rules: {{pack: {path}}}\nmetrics: {{enabled: false}}\n",
            encoding="utf-8",
        )
        argv = ["serve", "-c", str(cfg)]
    t = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "qa_pipeline.cli", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - t
    lines = [x for x in err.splitlines() if x.strip()]
    assert proc.returncode == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert path.name in lines[0] and why in lines[0], lines[0]
    assert "Traceback" not in err and not out
    assert elapsed < 20, f"{case}: {elapsed:.1f} s"


def test_loader_bounds_in_process() -> None:
    """The bounds themselves: the bomb is refused before anything is built, in well under a
    second and a few MB; a pack as deep and large as real ones loads."""
    import resource

    from qa_pipeline.errors import ConfigError
    from qa_pipeline.rules import load_pack
    from qa_pipeline.yamlsrc import load_yaml_text

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_yaml_text(billion_laughs(), "bomb.yaml")
    with pytest.raises(ConfigError, match="nested deeper than 64"):
        load_yaml_text("a: " + "[" * 65 + "]" * 65, "deep.yaml")
    assert time.perf_counter() - t < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KB
    assert load_yaml_text("a: " + "[" * 63 + "]" * 63, "ok.yaml")  # 64 levels: fine
    assert load_yaml_text("a: &x [1, 2]\nb: *x\n", "alias.yaml")["b"] == [1, 2]  # aliases fine
    assert load_pack(None).rules  # the default pack loads
