"""The mypyc-compiled rule engine gives exactly what its Python sources give.

``setup.py`` compiles the engine's hot modules when a C compiler is available; the sources
run when it is not (or with ``QA_PIPELINE_PURE_PYTHON=1``). CI sets
``QA_PIPELINE_EXPECT_COMPILED=1`` (scripts/test), so a build that silently fell back to
pure Python fails there instead of only running slower.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import qa_pipeline.rules as rules

ROOT = Path(__file__).resolve().parents[2]

_SCORE = """
import json, random
from qa_pipeline.messages import to_dict
from qa_pipeline.testing import make_call
from qa_pipeline.rules import ENGINE, load_pack, score_transcript
pack = load_pack()
rng = random.Random(23)
cards = []
for i in range(400):
    company = "华夏" if rng.random() < 0.7 else "华冠"
    call = make_call(i, rng, rng.choice([1, 3, 10, 40, 60, 120]), company)
    cards.append(to_dict(score_transcript(pack, call)))
print(json.dumps({"engine": ENGINE, "cards": cards}, ensure_ascii=False, sort_keys=True))
"""


def _run(pure: bool) -> dict[str, object]:
    env = dict(os.environ)
    env.pop("QA_PIPELINE_PURE_PYTHON", None)
    if pure:
        env["QA_PIPELINE_PURE_PYTHON"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", _SCORE],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_compiled_engine_equals_python_sources() -> None:
    compiled = rules.ENGINE.startswith("compiled")
    if not compiled:
        if os.environ.get("QA_PIPELINE_EXPECT_COMPILED") == "1":
            pytest.fail(f"the rule engine should be compiled here, but runs as {rules.ENGINE}")
        pytest.skip(f"rule engine not compiled in this install ({rules.ENGINE})")
    fast, pure = _run(pure=False), _run(pure=True)
    assert fast["engine"] == "compiled (mypyc)"
    assert str(pure["engine"]).startswith("pure Python")
    assert fast["cards"] == pure["cards"]


def test_pure_python_switch_loads_the_sources() -> None:
    """``QA_PIPELINE_PURE_PYTHON=1`` (and a stale build) import the .py files."""
    code = (
        "import qa_pipeline.rules as r, qa_pipeline.rules.runtime.engine as e;"
        "print(r.ENGINE); print(e.__file__)"
    )
    env = dict(os.environ, QA_PIPELINE_PURE_PYTHON="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0].startswith("pure Python")
    assert out[1].endswith("engine.py")
