"""The import-layers contract (``[tool.importlinter]`` in pyproject.toml): the tree keeps it,
and lint-imports does break on each kind of wrong import it is there to stop, checked on a
copy of the package with one import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package and its pyproject.toml, to break on purpose."""
    shutil.copytree(
        REPO / "qa_pipeline",
        tmp_path / "qa_pipeline",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.c"),
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(tree: Path, module: str, line: str) -> None:
    path = tree / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_tree_keeps_the_contracts() -> None:
    r = lint(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 kept, 0 broken" in r.stdout


def test_the_copy_keeps_them_too(tree: Path) -> None:
    r = lint(tree)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("module", "line", "importer", "imported"),
    [
        # a stage importing a later stage
        ("vad", "from .sinks.base import Event", "vad", "sinks"),
        # the ASR stage reading the rule pack (the arrow that ran back up before)
        ("asr.bias", "from ..rules import RulePack", "asr", "rules"),
        # the ASR normalising its own decode (the text step's work, done once after it)
        ("asr.engine", "from ..text import normalise", "asr", "text"),
        # the text step reading the rule pack
        ("text", "from .rules import RulePack", "text", "rules"),
        # a stage importing an app
        ("sources.replay", "from .. import pipeline", "sources", "pipeline"),
        # a stage importing the assembled config instead of its own section
        ("rules.runtime.scoring", "from ...config import PipelineConfig", "rules", "config"),
        # the ground importing a stage
        ("messages", "from .vad import VadConfig", "messages", "vad"),
    ],
)
def test_a_wrong_way_import_breaks_the_layers(
    tree: Path, module: str, line: str, importer: str, imported: str
) -> None:
    add_import(tree, f"qa_pipeline.{module}", line)
    r = lint(tree)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Apps above stages, stages in flow order, ground below BROKEN" in r.stdout
    assert f"qa_pipeline.{importer} is not allowed to import qa_pipeline.{imported}" in r.stdout


RULES_LAYERS = "Inside rules: language, runtime, operators, pack, each above the last"


@pytest.mark.parametrize(
    ("module", "line", "importer", "imported"),
    [
        # the language importing the runtime: the semantics depending on the evaluator
        ("rules.lang.schema", "from ..runtime import engine as _engine", "lang", "runtime"),
        # the reader compiling the pack again (what lang/loader.py did before the split)
        ("rules.lang.loader", "from ..ops.compiler import Compiler", "lang", "ops"),
        # the runtime importing an operator's compile step
        ("rules.runtime.scoring", "from ..ops import compiler as _c", "runtime", "ops"),
    ],
)
def test_a_wrong_way_import_breaks_the_rules_layers(
    tree: Path, module: str, line: str, importer: str, imported: str
) -> None:
    add_import(tree, f"qa_pipeline.{module}", line)
    r = lint(tree)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{RULES_LAYERS} BROKEN" in r.stdout
    assert "Apps above stages, stages in flow order, ground below KEPT" in r.stdout
    assert (
        f"qa_pipeline.rules.{importer} is not allowed to import qa_pipeline.rules.{imported}"
        in r.stdout
    )


STORE_LAYERS = "Inside store: its command, the Store, migrations and row shapes, the ground"


def test_a_wrong_way_import_breaks_the_store_layers(tree: Path) -> None:
    # a connection reaching up into the Store: the backends stay below the shared logic
    add_import(tree, "qa_pipeline.store.postgres", "from .base import Store as _Store")
    r = lint(tree)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{STORE_LAYERS} BROKEN" in r.stdout
    assert "qa_pipeline.store.postgres is not allowed to import qa_pipeline.store.base" in r.stdout


def test_a_circle_breaks_the_acyclic_contract(tree: Path) -> None:
    # fitted -> engine, while engine builds the fitted decoder: the circle that was broken
    add_import(tree, "qa_pipeline.asr.fitted", "from .engine import AsrEngine as _Engine")
    r = lint(tree)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "No import circles between sibling modules BROKEN" in r.stdout
    assert "qa_pipeline.asr" in r.stdout and ".fitted -> .engine" in r.stdout


def test_a_module_with_no_layer_breaks_the_contract(tree: Path) -> None:
    (tree / "qa_pipeline" / "unplaced.py").write_text('"""Not in any layer."""\n')
    r = lint(tree)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "qa_pipeline.unplaced" in r.stdout
